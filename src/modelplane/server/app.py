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
from modelplane.errors import BadRequest, ModelplaneError, NotFound
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
        if gateway.metrics is not None:
            await gateway.metrics.refresh()
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

    async def admin_health(request: Request) -> Response:
        gateway = holder["gateway"]
        try:
            require_admin(gateway.runtime, request.headers.get("authorization"))
        except ModelplaneError as exc:
            return error_response(exc)
        breakers = {view.key: view for view in await gateway.invoker.breakers.views()}
        deployments = [
            {
                "deployment": d.key,
                "model": model.name,
                "provider": d.provider.name,
                "ready": d.provider.ready,
                "breaker": (breakers[d.key].state if d.key in breakers else "closed"),
                "window_requests": breakers[d.key].requests if d.key in breakers else 0,
                "window_failures": breakers[d.key].failures if d.key in breakers else 0,
                "opened_at": breakers[d.key].opened_at if d.key in breakers else None,
            }
            for model in gateway.runtime.models.values()
            for d in model.deployments
        ]
        return json_response({"status": "ok", "config_version": gateway.runtime.version, "deployments": deployments})

    async def admin_reload(request: Request) -> Response:
        gateway = holder["gateway"]
        try:
            require_admin(gateway.runtime, request.headers.get("authorization"))
            await reload(gateway, env or {})
        except ModelplaneError as exc:
            return error_response(exc)
        return json_response({"version": gateway.runtime.version})

    async def admin_escalations(request: Request) -> Response:
        gateway = holder["gateway"]
        try:
            require_admin(gateway.runtime, request.headers.get("authorization"))
            status, limit = escalation_query(request.query_params.get("status"), request.query_params.get("limit"))
            data = await gateway.store.escalations(status, limit)
        except ModelplaneError as exc:
            return error_response(exc)
        return json_response({"object": "list", "data": data})

    async def admin_resolve(request: Request) -> Response:
        gateway = holder["gateway"]
        escalation_id = request.path_params["id"]
        try:
            require_admin(gateway.runtime, request.headers.get("authorization"))
            resolution = resolution_of(await request.body())
            if not await gateway.store.resolve_escalation(escalation_id, resolution):
                raise NotFound(f"no open escalation {escalation_id!r}", code="escalation_not_found")
            resolved = await gateway.store.escalation(escalation_id)
        except ModelplaneError as exc:
            return error_response(exc)
        return json_response(resolved)

    routes = [
        Route("/v1/models", models, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/admin/config", admin_config, methods=["GET"]),
        Route("/admin/reload", admin_reload, methods=["POST"]),
        Route("/admin/health", admin_health, methods=["GET"]),
        Route("/admin/escalations", admin_escalations, methods=["GET"]),
        Route("/admin/escalations/{id}/resolve", admin_resolve, methods=["POST"]),
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


def escalation_query(status: str | None, limit: str | None) -> tuple[str | None, int]:
    """`?status=open|resolved|all&limit=N` as arguments for `LedgerStore.escalations`."""
    if status not in (None, "open", "resolved", "all"):
        raise BadRequest("status must be open, resolved or all", param="status")
    try:
        count = 100 if limit is None else int(limit)
    except ValueError:
        count = 0
    if not 1 <= count <= 1000:
        raise BadRequest("limit must be a whole number from 1 to 1000", param="limit")
    return (None if status == "all" else status or "open"), count


def resolution_of(body: bytes) -> str:
    """The `resolution` text of a resolve request."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest('the body must be JSON: {"resolution": "what was done"}') from exc
    resolution = data.get("resolution") if isinstance(data, dict) else None
    if not isinstance(resolution, str) or not resolution.strip():
        raise BadRequest("resolution must be a non-empty string", param="resolution")
    return resolution


def json_response(data: object, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")
