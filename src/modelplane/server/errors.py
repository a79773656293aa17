"""Errors in OpenAI's JSON shape; the only place exceptions become HTTP answers."""

from __future__ import annotations

import logging
import math

import orjson
from starlette.responses import Response

from modelplane.errors import (
    ConfigError,
    MethodNotAllowed,
    ModelplaneError,
    ProviderError,
    RateLimited,
    RequestError,
    UsageError,
    http_status,
)

log = logging.getLogger("modelplane.server")


def error_response(exc: ModelplaneError, headers: dict[str, str] | None = None) -> Response:
    status = http_status(exc)
    extra = dict(headers or {})
    if exc.serving_id is not None:
        extra["x-modelplane-serving"] = exc.serving_id
    if isinstance(exc, RequestError):
        error = {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}
        if isinstance(exc, RateLimited):
            extra["retry-after"] = _seconds(exc.retry_after)
        elif isinstance(exc, MethodNotAllowed):
            extra["allow"] = ", ".join(exc.allow)
    elif isinstance(exc, ProviderError):
        error = {"message": exc.message, "type": "upstream_error", "param": None, "code": str(exc.error_class)}
        if exc.retry_after is not None:
            extra["retry-after"] = _seconds(exc.retry_after)
    elif isinstance(exc, ConfigError | UsageError):
        error = {"message": str(exc), "type": "invalid_request_error", "param": None, "code": "invalid_config"}
    else:
        log.error("unexpected error: %s", exc)
        error = {"message": "internal error", "type": "server_error", "param": None, "code": None}
    return Response(orjson.dumps({"error": error}), status, extra, media_type="application/json")


def _seconds(retry_after: float) -> str:
    return str(max(1, math.ceil(retry_after)))  # whole seconds, never early


def internal_error() -> Response:
    """For a bug: the client gets a plain OpenAI-shaped 500, the log gets the traceback."""
    log.exception("internal error while serving")
    body = {"error": {"message": "internal error", "type": "server_error", "param": None, "code": None}}
    return Response(orjson.dumps(body), 500, media_type="application/json")
