"""Every error modelplane raises, in one module.

    ModelplaneError
    ├── ConfigError            the config file is wrong (carries every issue with its path)
    ├── UsageError             the user asked for something impossible (bad flag, missing file)
    ├── LedgerError            the ledger database refused a write
    ├── RequestError           a client request that cannot be served (mapped to an HTTP status)
    │   ├── BadRequest           400  malformed JSON, wrong field type
    │   ├── Unauthorized         401  missing or unknown API key
    │   ├── Forbidden            403  the key may not use this
    │   ├── NotFound             404  unknown feature, model, escalation or endpoint
    │   ├── MethodNotAllowed     405  a known endpoint asked with the wrong method (`allow` lists the right ones)
    │   ├── PayloadTooLarge      413  body over the configured limit
    │   └── RateLimited          429  over a key's rate limit or a tenant's / feature's budget
    └── ProviderError          an upstream call failed; `error_class` says how (adapters classify)
        ├── InvalidOutput        an answer failed the feature's validation, repair and re-asks
        └── CircuitOpen          not called at all: every deployment's breaker is open   503 + retry-after

Errors are mapped to OpenAI's error JSON only at the HTTP edge (server/errors.py) and to
exit code 2 plus a one-line hint only at the CLI edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class ModelplaneError(Exception):
    """Base of every modelplane error. `serving_id` is set when the error ended a serving."""

    serving_id: str | None = None


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config file, located by its dotted path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(ModelplaneError):
    """The config is invalid; `issues` lists every problem found, not just the first."""

    def __init__(self, issues: list[ConfigIssue], source: str = "config") -> None:
        self.issues = issues
        self.source = source
        lines = "\n".join(f"  {issue}" for issue in issues)
        super().__init__(f"{source}: {len(issues)} error(s)\n{lines}")


class UsageError(ModelplaneError):
    """The user's input was wrong; `hint` says how to fix it."""

    def __init__(self, message: str, hint: str = "") -> None:
        self.hint = hint
        super().__init__(message)


class LedgerError(ModelplaneError):
    """The ledger database refused a write; the batch was rolled back.

    `permanent` means the records themselves were refused (a duplicate id, a bad value):
    writing them again cannot succeed, so the writer sets them aside instead of retrying.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class RequestError(ModelplaneError):
    """A request the gateway refuses; carries the HTTP status and OpenAI error type/code."""

    status: int = 400
    type: str = "invalid_request_error"
    code: str | None = None
    error_class: str = "bad_request"  # what the ledger records

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param


class BadRequest(RequestError):
    status = 400


class Unauthorized(RequestError):
    status = 401
    error_class = "unauthorized"
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(RequestError):
    status = 403
    error_class = "forbidden"
    type = "permission_error"


class NotFound(RequestError):
    status = 404
    error_class = "not_found"
    code = "model_not_found"


class MethodNotAllowed(RequestError):
    """A known endpoint asked with a method it does not answer; `allow` lists the ones it does."""

    status = 405
    error_class = "method_not_allowed"
    code = "method_not_allowed"

    def __init__(self, message: str, allow: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allow = allow


class PayloadTooLarge(RequestError):
    status = 413
    error_class = "payload_too_large"
    code = "request_too_large"


class RateLimited(RequestError):
    """Over a rate limit or a budget; `retry_after` (seconds) says when the window that refused rolls over.

    `type` follows OpenAI: `requests` or `tokens` for a per-minute limit, `insufficient_quota` for a budget.
    """

    status = 429
    error_class = "rate_limited"
    code = "rate_limit_exceeded"

    def __init__(
        self, message: str, retry_after: float, *, error_type: str = "requests", code: str | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after
        self.type = error_type


class ErrorClass(StrEnum):
    """How an upstream call failed. Adapters classify; the resilience layer decides."""

    RATE_LIMIT = "rate_limit"
    TIMEOUT = "timeout"
    AUTH = "auth"
    BAD_REQUEST = "bad_request"
    CONTEXT_LENGTH = "context_length"
    SERVER_ERROR = "server_error"
    CONNECTION = "connection"
    BAD_RESPONSE = "bad_response"
    STREAM_CUT = "stream_cut"
    INVALID_OUTPUT = "invalid_output"  # the answer failed the feature's validation, repair and re-asks
    CIRCUIT_OPEN = "circuit_open"  # not called: every deployment's breaker is open after repeated failures


class ProviderError(ModelplaneError):
    """An upstream call failed, classified by the adapter that made it."""

    def __init__(
        self,
        error_class: ErrorClass,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.message = message
        self.status = status
        self.retry_after = retry_after

    @property
    def client_fault(self) -> bool:
        """True when the request itself was wrong, so retrying elsewhere cannot help."""
        return self.error_class in (ErrorClass.BAD_REQUEST, ErrorClass.CONTEXT_LENGTH)


class InvalidOutput(ProviderError):
    """A model answered, but not with what the feature's validation accepts, even after repair and re-asks."""

    def __init__(self, message: str, last_output: str) -> None:
        super().__init__(ErrorClass.INVALID_OUTPUT, message)
        self.last_output = last_output


class CircuitOpen(ProviderError):
    """Open breakers kept every deployment of `models` from being called; the first probes in `retry_after` s."""

    def __init__(self, models: tuple[str, ...], retry_after: float) -> None:
        names = ", ".join(f"'{name}'" for name in models)
        breakers = "circuit breaker" if len(models) == 1 else "circuit breakers"
        super().__init__(
            ErrorClass.CIRCUIT_OPEN,
            f"{breakers} open for every deployment of {names} after repeated failures; "
            f"next try in {max(1, math.ceil(retry_after))} s",
            retry_after=retry_after,
        )
        self.models = models


_PROVIDER_STATUS = {
    ErrorClass.TIMEOUT: 504,
    ErrorClass.RATE_LIMIT: 429,
    ErrorClass.BAD_REQUEST: 400,
    ErrorClass.CONTEXT_LENGTH: 400,
    ErrorClass.CIRCUIT_OPEN: 503,  # with `retry-after`: the gateway itself holds the traffic back for a while
}


def http_status(exc: ModelplaneError) -> int:
    """The HTTP status a client sees for `exc`: upstream failures are 502, or 504 when they timed out
    (503 when open circuit breakers kept the gateway from calling at all)."""
    if isinstance(exc, RequestError):
        return exc.status
    if isinstance(exc, ConfigError | UsageError):
        return 400
    if isinstance(exc, ProviderError):
        return _PROVIDER_STATUS.get(exc.error_class, 502)
    return 500
