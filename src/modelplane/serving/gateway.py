"""The gateway's long-lived parts: the current runtime, the recorder, metrics, tracing, limits."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING

from modelplane.cache.embedder import build_embedder, parse_embedder
from modelplane.config.load import LoadedConfig
from modelplane.config.schema import Config
from modelplane.ledger.store import LedgerStore, redact_url
from modelplane.ledger.writer import LedgerWriter
from modelplane.providers.base import Provider
from modelplane.routing.shadow import ShadowRunner
from modelplane.serving.balance import Balancer
from modelplane.serving.breaker import BreakerBackend, LocalBreakers
from modelplane.serving.cache import ResponseCache
from modelplane.serving.invoke import Invoker
from modelplane.serving.limits import Counters, Limiter, LocalCounters
from modelplane.serving.record import Recorder
from modelplane.serving.retry import RetryBudget
from modelplane.serving.runtime import Runtime, build_runtime, start_providers
from modelplane.serving.state import Serving
from modelplane.telemetry.metrics import Metrics
from modelplane.telemetry.tracing import Tracing

if TYPE_CHECKING:
    from modelplane.cache.store import CacheStore
    from modelplane.embeddings.base import AsyncEmbedder, EmbedCall, Embedder

log = logging.getLogger("modelplane.gateway")


class Gateway:
    """Owns what outlives a request. `runtime` is swapped whole on reload; servings hold their own."""

    def __init__(
        self,
        runtime: Runtime,
        recorder: Recorder,
        metrics: Metrics | None,
        store: LedgerStore,
        invoker: Invoker,
        limiter: Limiter,
        cache: ResponseCache | None = None,
    ) -> None:
        self.runtime = runtime
        self.limiter = limiter
        self.store = store
        self.recorder = recorder
        self.metrics = metrics
        self.invoker = invoker
        self.cache = cache or ResponseCache(runtime.loaded.config.cache.max_bytes, _wordllama)
        self.shadows = ShadowRunner(invoker, recorder.writer, store)  # routing's sampled quality checks
        self._reload_lock = asyncio.Lock()
        self._retiring: set[asyncio.Future[None]] = set()

    @classmethod
    async def start(cls, loaded: LoadedConfig, providers: dict[str, Provider] | None = None) -> Gateway:
        """Build providers, open the ledger, start the writer. Raises UsageError/ConfigError on bad setup.

        `providers` replaces configured providers by name: the seam tests use for a fake provider.
        """
        config = loaded.config
        runtime = build_runtime(loaded, {name: (config.providers[name], p) for name, p in (providers or {}).items()})
        store = LedgerStore.from_url(loaded.ledger_url())
        await store.open()
        writer = LedgerWriter(
            store,
            queue_size=config.ledger.queue_size,
            batch_size=config.ledger.batch_size,
            flush_interval=config.ledger.flush_interval,
            spill_path=loaded.home / "ledger-spill.jsonl",
        )
        writer.start()
        metrics = Metrics() if config.telemetry.metrics else None
        if metrics is not None:
            metrics.watch_ledger(lambda: writer.depth)
        tracing = Tracing.from_config(config.telemetry)
        tracing.provider_kinds = {name: p.kind for name, p in config.providers.items()}
        invoker = _invoker(config)
        limiter = _limiter(config)
        if metrics is not None:
            metrics.watch_breakers(invoker.breakers.views)
        await start_providers(runtime)
        log.info("ledger: %s", redact_url(loaded.ledger_url()))
        recorder = Recorder(writer, metrics, tracing, limiter.charge)
        gateway = cls(runtime, recorder, metrics, store, invoker, limiter, _cache(loaded))
        gateway.cache.set_embedder(gateway._embedder)
        await gateway.cache.start()
        return gateway

    async def reload(self, loaded: LoadedConfig) -> None:
        """Swap in a new, fully validated config; unchanged providers keep their pools and weights."""
        async with self._reload_lock:
            old = self.runtime
            reuse = {name: (old.loaded.config.providers[name], p) for name, p in old.providers.items()}
            runtime = build_runtime(loaded, reuse)
            await start_providers(runtime)
            # Breakers and balancer statistics are keyed by deployment and outlive the config.
            self.invoker.retry = loaded.config.resilience.retry
            self.invoker.breakers.config = loaded.config.resilience.breaker
            self.limiter.configure(loaded.config)  # the counts so far stay
            self.runtime = runtime
            kept = set(runtime.providers.values())
            retired = [p for p in old.providers.values() if p not in kept]
            if retired:
                # In-flight servings on the old config may still hold them; close once they had time to finish.
                self._retiring.add(asyncio.ensure_future(_close_later(retired, delay=30.0)))
            log.info("config reloaded: version %s", runtime.version)

    def _embedder(self) -> Embedder | AsyncEmbedder:
        """The semantic cache's embedder as `cache.embedder` names it (built on first use)."""
        choice = parse_embedder(self.runtime.loaded.config.cache.embedder)
        return build_embedder(choice, self._embed_with(choice.arg or ""))

    def _embed_with(self, model_name: str) -> EmbedCall:
        """Texts to vectors through a configured model's /v1/embeddings, with its breakers and balancing."""

        async def call(texts: list[str]) -> list[list[float]]:
            runtime = self.runtime
            serving = Serving("embeddings")  # the lookup's own serving records the answer, not this call
            result = await self.invoker.embeddings(
                serving, runtime.models[model_name], {"input": texts}, runtime.version
            )
            data = sorted(result.body["data"], key=lambda item: int(item.get("index", 0)))
            return [item["embedding"] for item in data]

        return call

    @property
    def ready(self) -> bool:
        return all(provider.ready for provider in self.runtime.providers.values())

    async def close(self) -> None:
        """Drain the ledger, then close providers. Nothing recorded is lost."""
        await self.shadows.close()  # first: their records go through the recorder's writer
        await self.recorder.close()
        await self.limiter.aclose()  # after the recorder: the last servings are charged
        await self.cache.aclose()  # writes what is still queued
        await self.store.close()
        await self.invoker.breakers.aclose()
        for task in self._retiring:
            task.cancel()
        await asyncio.gather(*(p.aclose() for p in self.runtime.providers.values()), return_exceptions=True)


def _invoker(config: Config) -> Invoker:
    resilience = config.resilience
    breakers: BreakerBackend
    if config.redis is not None:
        from modelplane.serving.breaker_redis import RedisBreakers

        breakers = RedisBreakers.from_url(resilience.breaker, config.redis.url, config.redis.prefix)
    else:
        breakers = LocalBreakers(resilience.breaker)
    budget = RetryBudget(resilience.retry.budget_ratio, resilience.retry.budget_min_per_second)
    return Invoker(breakers, Balancer(), budget, resilience.retry, random.Random())


def _wordllama() -> Embedder:
    """The semantic cache's default embedder: wordllama, whose weights ship in its wheel (loaded on first use)."""
    from modelplane.embeddings.wordllama import WordLlamaEmbedder

    return WordLlamaEmbedder()


def _cache(loaded: LoadedConfig) -> ResponseCache:
    """The response cache and the store behind it, as `cache:` configures them.

    With no feature caching at start, no store is opened (no file, no follower); a feature that
    a reload adds caches in memory until the next restart."""
    settings, redis = loaded.config.cache, loaded.config.redis
    backing: CacheStore | None = None
    if not any(feature.cache for feature in loaded.config.features.values()):
        pass
    elif settings.backend == "sqlite":
        from modelplane.cache.store_sqlite import SqliteStore

        backing = SqliteStore(loaded.home / "cache.db", settings.max_bytes)
    elif settings.backend == "redis" and redis is not None:
        from modelplane.cache.store_redis import RedisStore

        backing = RedisStore.from_url(redis.url, redis.prefix, max_entries=max(1000, settings.max_bytes // 4096))
    label = parse_embedder(settings.embedder).label
    return ResponseCache(settings.max_bytes, _wordllama, embedder_label=label, backing=backing)


def _limiter(config: Config) -> Limiter:
    counters: Counters
    if config.redis is not None:
        from modelplane.serving.limits_redis import RedisCounters

        counters = RedisCounters.from_url(config.redis.url, config.redis.prefix)
    else:
        counters = LocalCounters()
    return Limiter(config, counters)


async def _close_later(providers: list[Provider], delay: float) -> None:
    try:
        await asyncio.sleep(delay)
    finally:
        await asyncio.gather(*(p.aclose() for p in providers), return_exceptions=True)
