"""Rate limits and budgets: checked in the admit stage, charged when a serving is recorded.

What can be limited (all optional; a caller and feature with nothing configured cost three
dict lookups on the hot path, nothing more):

    keys[i].rpm, keys[i].tpm      requests and tokens per minute, per API key
    tenants.NAME.budget           USD and tokens per day and per month, per tenant
    features.NAME.budget          the same, per feature (all its callers together)

Windows are fixed and calendar-aligned in UTC: a minute from :00 s, a day from 00:00 UTC, a
month from the 1st at 00:00 UTC. A fixed minute is one counter per window (cheap, and atomic
in Redis), at the price that a burst straddling the turn of a minute may see up to twice `rpm`
within sixty seconds. A refusal's `retry_after` is the time left in the window that refused.

Requests are *reserved* at admission: checking every limit and counting the request is one
atomic step (one Lua script in Redis), so any number of workers admit exactly `rpm` requests
a minute. Tokens and USD cannot be known before a serving ends: they are *charged* from its
ledger record (input plus output tokens of all its calls; an unpriced call adds its tokens but
no USD), and admission checks what has been charged so far. So `tpm` and budgets may be
overshot by the servings in flight when they run out: by one serving for a caller that waits
for each answer.

Requests grouped into one serving by `X-Modelplane-Serving` still count one by one against
`rpm`; budgets charge tokens and USD, which do not depend on the grouping.

Counters live in a `Counters` backend: this process's memory (`LocalCounters`), or Redis
shared by every worker (`limits_redis.RedisCounters`, which fails open when Redis is down).
Like the breakers they belong to the gateway and outlive a config reload; `configure` swaps
the limits only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from modelplane.config.schema import BudgetConfig, Config, KeyConfig
from modelplane.errors import RateLimited
from modelplane.ledger.records import ServingRecord
from modelplane.serving.auth import Caller
from modelplane.serving.state import Serving

_MARGIN = 60  # seconds a counter outlives its window, so clocks that differ a little still agree
_NANO = 1e9  # USD are counted in integer nano-dollars: sums across workers stay exact
_RANK = {"month": 0, "day": 1, "minute": 2}  # check the longest windows first: their wait is the real one

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Window:
    """One calendar window: `id` names its counters (`M29000000`, `d20250301`, `m202503`)."""

    id: str
    start: float
    end: float


def minute_window(now: float) -> Window:
    minute = int(now // 60)
    return Window(f"M{minute}", minute * 60.0, minute * 60.0 + 60.0)


def day_window(now: float) -> Window:
    at = datetime.fromtimestamp(now, UTC)
    start = datetime(at.year, at.month, at.day, tzinfo=UTC)
    return Window(f"d{start:%Y%m%d}", start.timestamp(), (start + timedelta(days=1)).timestamp())


def month_window(now: float) -> Window:
    at = datetime.fromtimestamp(now, UTC)
    start = datetime(at.year, at.month, 1, tzinfo=UTC)
    end = datetime(at.year + at.month // 12, at.month % 12 + 1, 1, tzinfo=UTC)
    return Window(f"m{start:%Y%m}", start.timestamp(), end.timestamp())


@dataclass(frozen=True, slots=True)
class Limit:
    """One configured limit: counter `field` of `scope`'s counter for the `window` must stay under `value`."""

    scope: str  # the counters' name prefix: "key:<digest>", "tenant:<name>", "feature:<name>"
    who: str  # for messages: "key 'ci'", "tenant 'acme'"
    field: str  # "requests", "tokens" or "usd_nano"
    value: int  # in the field's unit
    window: str  # "minute", "day" or "month"
    shown: str  # for messages: "60 requests per minute", "5 USD per day"


@dataclass(frozen=True, slots=True)
class Check:
    """A limit at one moment: its window's counter, how long that must live, when it rolls over."""

    limit: Limit
    counter: str
    ttl: int  # seconds
    retry_after: float
    reserve: bool  # count this request when admitted (rpm)

    def refusal(self) -> RateLimited:
        limit = self.limit
        wait = max(1, math.ceil(self.retry_after))
        if limit.window == "minute":
            message = f"rate limit exceeded: {limit.who} reached its limit of {limit.shown}; retry in {wait} s"
            return RateLimited(message, self.retry_after, error_type=limit.field)
        message = f"budget spent: {limit.who} reached its limit of {limit.shown}; it renews in {wait} s"
        return RateLimited(message, self.retry_after, error_type="insufficient_quota", code="insufficient_quota")


@dataclass(frozen=True, slots=True)
class Charge:
    """Add `amount` to counter `field` of `counter`, which must live `ttl` more seconds."""

    counter: str
    field: str
    amount: int
    ttl: int


class Counters(Protocol):
    """Where the counts live: in process, or shared by every worker."""

    async def admit(self, checks: Sequence[Check]) -> int | None:
        """Atomically: the index of the first check whose counter reached its limit, else None
        after counting one request on every `reserve` check."""

    def charge(self, charges: Sequence[Charge]) -> None:
        """Add to counters; never waits (a shared backend sends behind)."""

    async def flush(self) -> None:
        """Wait until every charge made so far has landed."""

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _Scope:
    """The limits of one key, tenant or feature, and the counters its servings are charged to."""

    name: str
    limits: tuple[Limit, ...]
    charged: tuple[tuple[str, str], ...]  # (window, field)


class Limiter:
    """The current config's limits over the gateway's counters."""

    def __init__(self, config: Config, counters: Counters, clock: Clock = time.time) -> None:
        self.counters = counters
        self._now = clock
        self._keys: dict[str, _Scope] = {}
        self._tenants: dict[str, _Scope] = {}
        self._features: dict[str, _Scope] = {}
        self._calendar = _windows(clock())
        self.configure(config)

    def configure(self, config: Config) -> None:
        """Take the limits of a (re)loaded config; the counts so far stay."""
        keys = {key.hash.removeprefix("sha256:"): key for key in config.keys}
        self._keys = {digest: _key_scope(digest, key) for digest, key in keys.items() if key.rpm or key.tpm}
        self._tenants = {
            name: _budget_scope(f"tenant:{name}", f"tenant '{name}'", tenant.budget)
            for name, tenant in config.tenants.items()
            if tenant.budget is not None and tenant.budget.limited
        }
        self._features = {
            name: _budget_scope(f"feature:{name}", f"feature '{name}'", feature.budget)
            for name, feature in config.features.items()
            if feature.budget is not None and feature.budget.limited
        }

    def _scopes(self, caller: Caller, feature: str) -> list[_Scope]:
        scopes = (self._keys.get(caller.key), self._tenants.get(caller.tenant), self._features.get(feature))
        return [scope for scope in scopes if scope is not None]

    async def admit(self, caller: Caller, feature: str) -> None:
        """Raise `RateLimited` if a limit of the caller's key, tenant or the feature is reached; else
        count the request."""
        if not (self._keys or self._tenants or self._features):
            return
        scopes = self._scopes(caller, feature)
        if not scopes:
            return
        now = self._now()
        windows = self._windows(now)
        checks = [_check(limit, windows[limit.window], now) for scope in scopes for limit in scope.limits]
        checks.sort(key=lambda check: (_RANK[check.limit.window], check.reserve))
        refused = await self.counters.admit(checks)
        if refused is not None:
            raise checks[refused].refusal()

    def charge(self, serving: Serving, record: ServingRecord) -> None:
        """Charge a recorded serving's tokens and USD to its key, tenant and feature."""
        if serving.caller is None or not (self._keys or self._tenants or self._features):
            return
        scopes = self._scopes(serving.caller, record.feature)
        tokens = record.input_tokens + record.output_tokens
        usd_nano = round(_NANO * sum(call.cost_usd for call in record.calls if call.cost_usd is not None))
        if not scopes or not (tokens or usd_nano):
            return
        now = self._now()
        windows = self._windows(now)
        amounts = {"tokens": tokens, "usd_nano": usd_nano}
        charges = [
            Charge(f"{scope.name}:{windows[window].id}", field, amounts[field], _ttl(windows[window], now))
            for scope in scopes
            for window, field in scope.charged
            if amounts[field]
        ]
        self.counters.charge(charges)

    def _windows(self, now: float) -> dict[str, Window]:
        # Every day and month turns at the turn of a minute (UTC), so the minute bounds them all.
        minute = self._calendar["minute"]
        if not minute.start <= now < minute.end:
            self._calendar = _windows(now)
        return self._calendar

    async def aclose(self) -> None:
        await self.counters.aclose()


def _windows(now: float) -> dict[str, Window]:
    return {"minute": minute_window(now), "day": day_window(now), "month": month_window(now)}


def _ttl(window: Window, now: float) -> int:
    return math.ceil(window.end - now) + _MARGIN


def _check(limit: Limit, window: Window, now: float) -> Check:
    counter = f"{limit.scope}:{window.id}"
    return Check(limit, counter, _ttl(window, now), window.end - now, reserve=limit.field == "requests")


def _key_scope(digest: str, key: KeyConfig) -> _Scope:
    name = f"key:{digest[:16]}"
    who = f"key '{key.name}'" if key.name else f"key sha256:{digest[:8]}…"
    limits = []
    if key.tpm is not None:
        limits.append(Limit(name, who, "tokens", key.tpm, "minute", f"{key.tpm} tokens per minute"))
    if key.rpm is not None:
        limits.append(Limit(name, who, "requests", key.rpm, "minute", f"{key.rpm} requests per minute"))
    return _Scope(name, tuple(limits), (("minute", "tokens"),) if key.tpm is not None else ())


def _budget_scope(name: str, who: str, budget: BudgetConfig) -> _Scope:
    limits = []
    for window in ("month", "day"):
        usd: float | None = getattr(budget, f"usd_per_{window}")
        tokens: int | None = getattr(budget, f"tokens_per_{window}")
        if usd is not None:
            limits.append(Limit(name, who, "usd_nano", round(usd * _NANO), window, f"{usd:g} USD per {window}"))
        if tokens is not None:
            limits.append(Limit(name, who, "tokens", tokens, window, f"{tokens} tokens per {window}"))
    charged = tuple((window, field) for window in ("day", "month") for field in ("tokens", "usd_nano"))
    return _Scope(name, tuple(limits), charged)


class LocalCounters:
    """Counters in this process's memory: right for one worker. Atomic because nothing here awaits."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._now = clock
        self._counts: dict[str, dict[str, int]] = {}
        self._expires: dict[str, float] = {}
        self._sweep_at = -math.inf

    async def admit(self, checks: Sequence[Check]) -> int | None:
        now = self._now()
        self._sweep(now)
        for i, check in enumerate(checks):
            if self._value(check.counter, check.limit.field, now) >= check.limit.value:
                return i
        for check in checks:
            if check.reserve:
                self._add(check.counter, check.limit.field, 1, check.ttl, now)
        return None

    def charge(self, charges: Sequence[Charge]) -> None:
        now = self._now()
        for charge in charges:
            self._add(charge.counter, charge.field, charge.amount, charge.ttl, now)

    def _value(self, counter: str, field: str, now: float) -> int:
        if self._expires.get(counter, -math.inf) <= now:
            return 0
        return self._counts[counter].get(field, 0)

    def _add(self, counter: str, field: str, amount: int, ttl: int, now: float) -> None:
        if self._expires.get(counter, -math.inf) <= now:
            self._counts[counter] = {}
        counts = self._counts[counter]
        counts[field] = counts.get(field, 0) + amount
        self._expires[counter] = now + ttl

    def _sweep(self, now: float) -> None:
        """Forget expired counters once a minute, so memory stays bounded by the live windows."""
        if now < self._sweep_at:
            return
        self._sweep_at = now + 60.0
        for counter in [c for c, expires in self._expires.items() if expires <= now]:
            del self._counts[counter], self._expires[counter]

    async def flush(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
