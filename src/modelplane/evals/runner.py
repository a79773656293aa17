"""The runner: every case and repeat of a suite, `concurrency` at a time, in one event loop.

A fixed pool of workers pulls (case, repeat) items, so 10,000 cases cost 10,000 small
coroutines' worth of work, not 10,000 tasks. Answers come from the eval cache when the same
target, parameters, messages and repeat were asked before (one query reads them all up
front), else from the gateway in-process. Assertions run as soon as an answer is in; judge
calls go through the same gateway and cache. A case whose target fails is a failed case
with its error; the run goes on.

A case passes iff every assertion with a weight > 0 passes (weight 0: reported, not
counted), or — when the case has a `threshold` — iff its score reaches it. Its score is the
weighted mean of its assertions' scores. Over repeats, `mean` is the mean score and
`pass@k` whether any of the k repeats passed (`pass^k`: all of them).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelplane.evals.assertions import Check, Output, score
from modelplane.evals.cache import Completion, EvalCache, cache_key
from modelplane.evals.judges import Judge
from modelplane.evals.results import AssertionResult, CaseResult, RunResult
from modelplane.evals.suite import Case, Suite
from modelplane.evals.target import Targets

if TYPE_CHECKING:
    from pathlib import Path

    from modelplane.config.load import LoadedConfig
    from modelplane.embeddings.base import Embedder

Progress = Callable[[CaseResult], None]
JUDGE_MAX_TOKENS = 256  # a verdict is a small JSON object; a rambling judge stops here


@dataclass(slots=True)
class RunOptions:
    concurrency: int = 8
    repeats: int | None = None  # None: the suite's
    run_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def new_run_id() -> str:
    """Sorts by time: `20250301-142233-3fa9c1`."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(3).hex()}"


async def run_suite(
    suite: Suite, targets: Targets, cache: EvalCache, options: RunOptions, progress: Progress | None = None
) -> RunResult:
    """Run `suite` against `targets`' gateway. Raises UsageError if its target or judge is not configured."""
    target = suite.target
    targets.check(target.feature, target.model)
    if suite.judge is not None:
        targets.check(None, suite.judge)
    repeats = options.repeats or suite.repeats
    fingerprint = targets.fingerprint(target.feature, target.model)
    items = [(case, repeat) for case in suite.cases for repeat in range(repeats)]
    bodies = [{"messages": case.messages, **target.params, **case.params} for case, _ in items]
    keys = [cache_key(target.label, fingerprint, body, repeat) for body, (_, repeat) in zip(bodies, items, strict=True)]
    preloaded = cache.preload(keys)
    session = _Session(targets, cache, suite)
    results: list[CaseResult | None] = [None] * len(items)
    queue = iter(range(len(items)))
    started = time.time()

    async def worker() -> None:
        for index in queue:  # a shared iterator: each index goes to exactly one worker
            case, repeat = items[index]
            answer = cache.get(keys[index])
            if answer is None:
                answer = await session.ask(bodies[index])
                cache.put(keys[index], answer)
            result = await session.judge_case(case, repeat, answer)
            results[index] = result
            if progress is not None:
                progress(result)

    try:
        await asyncio.gather(*(worker() for _ in range(max(1, min(options.concurrency, len(items))))))
    finally:
        cache.flush()
    meta = {
        "suite_path": None if suite.path is None else str(suite.path),
        "concurrency": options.concurrency,
        "cache": "on" if cache.enabled else "off",
        "cache_hits": sum(1 for r in results if r is not None and r.cached),
        "preloaded": preloaded,
        "judge": suite.judge,
        "gate": suite.gate,
        **options.meta,
    }
    return RunResult(
        id=options.run_id or new_run_id(),
        suite=suite.name,
        target=target.label,
        started_at=started,
        finished_at=time.time(),
        config_version=targets.gateway.runtime.version,
        repeats=repeats,
        cases=[r for r in results if r is not None],
        meta=meta,
    )


async def evaluate(
    suite: Suite,
    loaded: LoadedConfig,
    options: RunOptions | None = None,
    *,
    cache_path: Path | None = None,
    authorization: str | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Run `suite` on a gateway built from `loaded`, as `modelplane eval run` does; the Python entry point.

    `cache_path` None runs without the response cache. The gateway is closed (its ledger drained) on return.
    """
    from modelplane.serving.gateway import Gateway

    cache = EvalCache(cache_path)
    try:
        gateway = await Gateway.start(loaded)
        try:
            return await run_suite(suite, Targets(gateway, authorization), cache, options or RunOptions(), progress)
        finally:
            await gateway.close()
    finally:
        cache.close()


class _Session:
    """One run's judge, embedder and target calls."""

    def __init__(self, targets: Targets, cache: EvalCache, suite: Suite) -> None:
        self.targets = targets
        self.cache = cache
        self.suite = suite
        self.judge = None if suite.judge is None else Judge(suite.judge, self._judge_call)
        self._embedder: Embedder | None = None
        self._judge_fingerprint = "" if suite.judge is None else targets.fingerprint(None, suite.judge)

    async def ask(self, body: dict[str, Any]) -> Completion:
        target = self.suite.target
        if target.feature is not None:
            return await self.targets.feature(target.feature, body)
        assert target.model is not None
        return await self.targets.model(target.model, body)

    async def _judge_call(self, messages: list[dict[str, Any]]) -> str:
        assert self.suite.judge is not None
        body = {"messages": messages, "temperature": 0, "max_tokens": JUDGE_MAX_TOKENS}
        key = cache_key(f"judge:{self.suite.judge}", self._judge_fingerprint, body, 0)
        answer = self.cache.get(key)
        if answer is None:
            answer = await self.targets.model(self.suite.judge, body)
            if answer.error is not None:
                raise RuntimeError(answer.error)
            self.cache.put(key, answer)
        return answer.text

    async def similarity(self, a: str, b: str) -> float:
        if self._embedder is None:  # wordllama loads on the first `similar` assertion only
            from modelplane.embeddings.wordllama import WordLlamaEmbedder

            self._embedder = WordLlamaEmbedder()
        vectors = self._embedder.embed([a, b])
        return float(vectors[0] @ vectors[1])

    async def judge_case(self, case: Case, repeat: int, answer: Completion) -> CaseResult:
        result = CaseResult(
            case_id=case.id,
            repeat=repeat,
            passed=False,
            score=0.0,
            output=answer.text,
            description=case.description,
            tags=case.tags,
            vars=case.vars,
            error=answer.error,
            cached=answer.cached,
            model=answer.model,
            serving_id=None if answer.cached else answer.serving_id,
            cost_usd=answer.cost_usd,
            input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
            latency_ms=answer.latency_ms,
        )
        if answer.error is not None:
            return result
        output = Output(
            answer.text, answer.cost_usd, answer.latency_ms, answer.input_tokens, answer.output_tokens, answer.model
        )
        result.assertions = [await score(Check(a, output, case, self.judge, self.similarity)) for a in case.assertions]
        result.score, result.passed = verdict(result.assertions, case.threshold)
        return result


def verdict(assertions: list[AssertionResult], threshold: float | None) -> tuple[float, bool]:
    """A case's weighted score and whether it passed (see the module docstring)."""
    counted = [a for a in assertions if a.weight > 0]
    if not counted:
        return 1.0, True
    total = sum(a.weight for a in counted)
    value = sum(a.score * a.weight for a in counted) / total
    if threshold is not None:
        return value, value >= threshold
    return value, all(a.passed for a in counted)


@dataclass(frozen=True, slots=True)
class CaseSummary:
    """One case over its repeats."""

    case_id: str
    description: str
    runs: int
    passes: int
    mean_score: float
    cost_usd: float | None
    errors: int

    @property
    def pass_at_k(self) -> bool:
        return self.passes > 0

    @property
    def pass_all_k(self) -> bool:
        return self.passes == self.runs


def summarise(run: RunResult) -> list[CaseSummary]:
    """Per case, in the run's order: mean score, passes, pass@k over its repeats."""
    grouped: dict[str, list[CaseResult]] = {}
    for case in run.cases:
        grouped.setdefault(case.case_id, []).append(case)
    out = []
    for case_id, repeats in grouped.items():
        costs = [r.cost_usd for r in repeats]
        out.append(
            CaseSummary(
                case_id,
                repeats[0].description,
                len(repeats),
                sum(1 for r in repeats if r.passed),
                sum(r.score for r in repeats) / len(repeats),
                None if None in costs else sum(c for c in costs if c is not None),
                sum(1 for r in repeats if r.error is not None),
            )
        )
    return out
