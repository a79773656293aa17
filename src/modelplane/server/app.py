"""The Starlette app: routes, body limits and the gateway's lifespan. Handlers stay thin."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelplane.config.load import LoadedConfig, load_config
from modelplane.errors import ModelplaneError
from modelplane.server.errors import error_response
from modelplane.server.hotpath import HotPath, Pipeline
from modelplane.serving import pipeline
from modelplane.serving.admit import visible_features
from modelplane.serving.auth import authenticate, require_admin
from modelplane.serving.gateway import Gateway
from modelplane.telemetry.metrics import CONTENT_TYPE

log = logging.getLogger("modelplane.server")


def create_app(loaded: LoadedConfig, *, env: dict[str, str] | None = None, gateway: Gateway | None = None) -> HotPath:
    """The gateway as an ASGI app. Pass a started `gateway`, or it is started in the lifespan;
    either way the lifespan's end closes it, draining the ledger."""
    holder: dict[str, Gateway] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started = gateway or await Gateway.start(loaded)
        holder["gateway"] = app.state.gateway = started
        try:
            yield
        finally:
            await started.close()

    async def models(request: Request) -> Response:
        gateway = holder["gateway"]
        try:
            caller = authenticate(gateway.runtime, request.headers.get("authorization"))
        except ModelplaneError as exc:
            return error_response(exc)
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "modelplane"}
            for name in visible_features(gateway.runtime, caller)
        ]
        return json_response({"object": "list", "data": data})

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(request: Request) -> Response:
        gateway = holder.get("gateway")
        ready = gateway is not None and gateway.ready
        return json_response({"status": "ready" if ready else "starting"}, 200 if ready else 503)

    async def metrics(request: Request) -> Response:
        gateway = holder["gateway"]
        body = gateway.metrics.render() if gateway.metrics else b""
        return Response(body, 200, media_type=CONTENT_TYPE)

    async def admin_config(request: Request) -> Response:
        gateway = holder["gateway"]
        try:
            require_admin(gateway.runtime, request.headers.get("authorization"))
        except ModelplaneError as exc:
            return error_response(exc)
        runtime = gateway.runtime
        return json_response({"version": runtime.version, "source": runtime.loaded.source})

    async def admin_reload(request: Request) -> Response:
        gateway = holder["gateway"]
        try:
            require_admin(gateway.runtime, request.headers.get("authorization"))
            await reload(gateway, env or {})
        except ModelplaneError as exc:
            return error_response(exc)
        return json_response({"version": gateway.runtime.version})

    routes = [
        Route("/v1/models", models, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/admin/config", admin_config, methods=["GET"]),
        Route("/admin/reload", admin_reload, methods=["POST"]),
    ]
    rest = Starlette(routes=routes, lifespan=lifespan)
    serving: dict[str, Pipeline] = {"/v1/chat/completions": pipeline.chat, "/v1/embeddings": pipeline.embeddings}
    return HotPath(serving, rest, lambda: holder["gateway"], loaded.config.server.max_body_bytes)


async def reload(gateway: Gateway, env: dict[str, str]) -> None:
    """Re-read the config file the gateway started from; an invalid file leaves the old config serving."""
    current = gateway.runtime.loaded
    path = None if current.embedded else Path(current.source)
    loaded = load_config(path, home=current.home, env=env)
    await gateway.reload(loaded)


async def reload_logged(gateway: Gateway, env: dict[str, str]) -> None:
    """Reload for SIGHUP: there is no client to answer, so the outcome goes to the log."""
    try:
        await reload(gateway, env)
    except ModelplaneError as exc:
        log.error("config reload refused; the old config keeps serving:\n%s", exc)


def json_response(data: object, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")
