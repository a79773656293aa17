"""The admin API (`/admin/…`, admin key only): config, reload, health, escalations.

Each handler takes the gateway and the request and returns JSON-able data; `app.py`
checks the key and turns errors into OpenAI-shaped answers.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request

from modelplane.config.load import load_config
from modelplane.errors import BadRequest, ModelplaneError, NotFound
from modelplane.serving.gateway import Gateway

log = logging.getLogger("modelplane.server")


async def config(gateway: Gateway, request: Request) -> Any:
    runtime = gateway.runtime
    return {"version": runtime.version, "source": runtime.loaded.source}


async def health(gateway: Gateway, request: Request) -> Any:
    """Every deployment, whether its provider is ready, and its breaker."""
    breakers = {view.key: view for view in await gateway.invoker.breakers.views()}
    deployments = []
    for model in gateway.runtime.models.values():
        for d in model.deployments:
            view = breakers.get(d.key)
            deployments.append(
                {
                    "deployment": d.key,
                    "model": model.name,
                    "provider": d.provider.name,
                    "ready": d.provider.ready,
                    "breaker": view.state if view else "closed",
                    "window_requests": view.requests if view else 0,
                    "window_failures": view.failures if view else 0,
                    "opened_at": view.opened_at if view else None,
                }
            )
    return {"status": "ok", "config_version": gateway.runtime.version, "deployments": deployments}


def reloader(env: dict[str, str]) -> Any:
    async def reload_config(gateway: Gateway, request: Request) -> Any:
        await reload(gateway, env)
        return {"version": gateway.runtime.version}

    return reload_config


async def escalations(gateway: Gateway, request: Request) -> Any:
    status, limit = escalation_query(request.query_params.get("status"), request.query_params.get("limit"))
    return {"object": "list", "data": await gateway.store.escalations(status, limit)}


async def resolve(gateway: Gateway, request: Request) -> Any:
    escalation_id = request.path_params["id"]
    resolution = resolution_of(await request.body())
    if not await gateway.store.resolve_escalation(escalation_id, resolution):
        raise NotFound(f"no open escalation {escalation_id!r}", code="escalation_not_found")
    return await gateway.store.escalation(escalation_id)


async def purge_cache(gateway: Gateway, request: Request) -> Any:
    """`POST /admin/cache/purge?tenant=T&feature=F`: drop cached answers (all of them with neither)."""
    tenant, feature = request.query_params.get("tenant"), request.query_params.get("feature")
    purged = await gateway.cache.purge(tenant=tenant, feature=feature)
    return {"purged": purged, "tenant": tenant, "feature": feature, "backend": gateway.cache.backend}


async def cache_stats(gateway: Gateway, request: Request) -> Any:
    """`GET /admin/cache/stats`: entries and bytes per feature held in this gateway's memory."""
    features = [dataclasses.asdict(usage) for usage in await gateway.cache.usage()]
    return {"backend": gateway.cache.backend, "max_bytes": gateway.cache.max_bytes, "features": features}


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
