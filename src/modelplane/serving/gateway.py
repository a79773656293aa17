"""The gateway's long-lived parts: the current runtime, the recorder, metrics, tracing, limits."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING

from modelplane.config.load import LoadedConfig
from modelplane.config.schema import Config
from modelplane.ledger.store import LedgerStore, redact_url
from modelplane.ledger.writer import LedgerWriter
from modelplane.providers.base import Provider
from modelplane.serving.balance import Balancer
from modelplane.serving.breaker import BreakerBackend, LocalBreakers
from modelplane.serving.cache import ResponseCache
from modelplane.serving.invoke import Invoker
from modelplane.serving.limits import Counters, Limiter, LocalCounters
from modelplane.serving.record import Recorder
from modelplane.serving.retry import RetryBudget
from modelplane.serving.runtime import Runtime, build_runtime, start_providers
from modelplane.telemetry.metrics import Metrics
from modelplane.telemetry.tracing import Tracing

if TYPE_CHECKING:
    from modelplane.embeddings.base import Embedder

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
    ) -> None:
        self.runtime = runtime
        self.limiter = limiter
        self.store = store
        self.recorder = recorder
        self.metrics = metrics
        self.invoker = invoker
        self.cache = ResponseCache(runtime.loaded.config.cache.max_bytes, _default_embedder)
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
        return cls(runtime, Recorder(writer, metrics, tracing, limiter.charge), metrics, store, invoker, limiter)

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

    @property
    def ready(self) -> bool:
        return all(provider.ready for provider in self.runtime.providers.values())

    async def close(self) -> None:
        """Drain the ledger, then close providers. Nothing recorded is lost."""
        await self.recorder.close()
        await self.limiter.aclose()  # after the recorder: the last servings are charged
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


def _default_embedder() -> Embedder:
    """The semantic cache's embedder: wordllama, whose weights ship in its wheel (loaded on first use)."""
    from modelplane.embeddings.wordllama import WordLlamaEmbedder

    return WordLlamaEmbedder()


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
