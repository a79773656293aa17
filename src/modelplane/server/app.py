"""The ASGI app: the serving endpoints on the lean hot path, the rest on Starlette, and the
gateway's lifespan. Handlers stay thin: each calls one function of the core."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelplane.config.load import LoadedConfig
from modelplane.errors import BadRequest, Forbidden, MethodNotAllowed, ModelplaneError, NotFound, Unauthorized
from modelplane.server import admin
from modelplane.server.errors import error_response
from modelplane.server.hotpath import HotPath, Pipeline
from modelplane.serving import pipeline
from modelplane.serving.admit import visible_features
from modelplane.serving.auth import authenticate, require_admin
from modelplane.serving.gateway import Gateway
from modelplane.telemetry.metrics import CONTENT_TYPE

Handler = Callable[[Gateway, Request], Awaitable[Any]]
_DASHBOARD_DAYS = 30


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

    def current() -> Gateway:
        return holder["gateway"]

    async def readyz(request: Request) -> Response:
        ready = "gateway" in holder and holder["gateway"].ready
        return json_response({"status": "ready" if ready else "starting"}, 200 if ready else 503)

    async def metrics(request: Request) -> Response:
        metrics = current().metrics
        if metrics is None:
            return Response(b"", 200, media_type=CONTENT_TYPE)
        await metrics.refresh()
        return Response(metrics.render(), 200, media_type=CONTENT_TYPE)

    async def dashboard(request: Request) -> Response:
        return await dashboard_page(current(), request)

    def admin_route(path: str, handler: Handler, method: str = "GET") -> Route:
        return Route(path, json_endpoint(current, handler, admin=True), methods=[method])

    routes = [
        Route("/v1/models", json_endpoint(current, models, admin=False), methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/dashboard", dashboard, methods=["GET"]),
        admin_route("/admin/config", admin.config),
        admin_route("/admin/reload", admin.reloader(env or {}), "POST"),
        admin_route("/admin/health", admin.health),
        admin_route("/admin/cache/purge", admin.purge_cache, "POST"),
        admin_route("/admin/cache/stats", admin.cache_stats),
        admin_route("/admin/escalations", admin.escalations),
        admin_route("/admin/escalations/{id}/resolve", admin.resolve, "POST"),
    ]
    serving: dict[str, Pipeline] = {"/v1/chat/completions": pipeline.chat, "/v1/embeddings": pipeline.embeddings}
    endpoints = [*(f"POST {path}" for path in serving), "GET /v1/models"]
    rest = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: routing_error(endpoints)})
    return HotPath(serving, rest, current, loaded.config.server.max_body_bytes)


def json_endpoint(
    gateway: Callable[[], Gateway], handler: Handler, *, admin: bool
) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint around `handler`: the admin key when asked, JSON out, errors OpenAI-shaped."""

    async def endpoint(request: Request) -> Response:
        current = gateway()
        try:
            if admin:
                require_admin(current.runtime, request.headers.get("authorization"))
            return json_response(await handler(current, request))
        except ModelplaneError as exc:
            return error_response(exc)

    return endpoint


def routing_error(endpoints: list[str]) -> Callable[[Request, Exception], Awaitable[Response]]:
    """OpenAI-shaped answers for an unknown path (404) or a known one asked with the wrong method (405)."""

    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        asked = f"{request.method} {request.url.path}"
        if exc.status_code == 405:
            allow = tuple(sorted(m.strip() for m in (exc.headers or {}).get("Allow", "").split(",") if m.strip()))
            return error_response(MethodNotAllowed(f"{asked} is not served; use {' or '.join(allow)}", allow))
        if exc.status_code == 404:
            served = ", ".join(endpoints)
            return error_response(NotFound(f"Invalid URL ({asked}): the API serves {served}", code="not_found"))
        error = BadRequest(f"{asked}: {exc.detail}")
        error.status = exc.status_code  # whatever Starlette said, in OpenAI's shape: not every one is a 400
        return error_response(error)

    return handler


async def models(gateway: Gateway, request: Request) -> Any:
    """`/v1/models`: the features the caller's tier may use, as OpenAI model objects."""
    caller = authenticate(gateway.runtime, request.headers.get("authorization"))
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "modelplane"}
        for name in visible_features(gateway.runtime, caller)
    ]
    return {"object": "list", "data": data}


async def dashboard_page(gateway: Gateway, request: Request) -> Response:
    """The report's charts over the last 30 days. Browsers get a password prompt: any user name, the admin key."""
    try:
        require_admin(gateway.runtime, _credentials(request.headers.get("authorization")))
    except ModelplaneError as exc:
        if isinstance(exc, Forbidden):
            # A browser asks for other credentials only on a 401: a 403 would strand it on a user key.
            exc = Unauthorized("the dashboard needs an admin key; the key given is not one")
        response = error_response(exc)
        response.headers["www-authenticate"] = 'Basic realm="modelplane dashboard"'
        return response
    # The report and plotly load on the first visit, not at start-up: the gateway itself never needs them.
    from modelplane.economics.charts import charts_from_report, render_page
    from modelplane.economics.report import build_report
    from modelplane.ledger.queries import ReportFilter

    since = time.time() - _DASHBOARD_DAYS * 86400
    loaded = gateway.runtime.loaded
    report = await build_report(gateway.store, loaded.config, ReportFilter(since=since), config_version=loaded.version)
    page = await asyncio.to_thread(lambda: render_page(charts_from_report(report)))
    return Response(page, 200, media_type="text/html")


def _credentials(authorization: str | None) -> str | None:
    """`Bearer KEY` as it is; HTTP Basic (a browser's prompt) as `Bearer <password>`."""
    if authorization and authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:], validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return "Bearer " + decoded.partition(":")[2]
    return authorization


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


def json_response(data: object, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")
