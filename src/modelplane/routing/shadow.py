"""Shadow judging: measure what routing to the cheaper model costs in quality, and saves in money.

A sample (`route.shadow.sample`) of whole, successful servings answered by one of the route's
cheaper models is answered again, in the background, by the strong model; a judge model then
compares the two answers (which is A and which is B is drawn at random, against position bias)
and says which is better and whether each is acceptable (routing/judge.py). Nothing here delays
the response: the work starts after the serving is recorded, at most `concurrency` at a time
per feature (a sample beyond that is skipped, not queued), and is cancelled at shutdown after a
grace period.

Ledger: the shadow's calls (purpose `shadow` and `shadow_judge`) are recorded as one more request
of the same serving (same `serving_id`, operation `shadow`, the serving's arrival time and zero
latency, so the serving's cost includes them and its latency does not), and not charged to the
tenant's limits. The verdict is a `route_shadows` row: weak and strong model, the serving's cost
and the strong answer's cost, `verdict` (weak_worse, tie, weak_better; `invalid` when the judge's
reply was unreadable, `failed` when the strong model or the judge failed), `score` (1 when the
cheap answer was as good, 0 when worse), `weak_ok`, `strong_ok` and the prompt.

Trainer contract (`judged_pairs`, `write_pairs`): every judged row (verdict not invalid/failed) as
`(prompt, weak_ok, strong_ok)`; `write_pairs` writes them as CSV with the columns
`prompt,weak_ok,strong_ok` (`True`/`False`), the shape of shared/data/routing/mmlu, so
`modelplane router train --data pairs.csv --weak weak_ok --strong strong_ok` reads it as is.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from modelplane.errors import ProviderError
from modelplane.ledger.records import ServingRecord
from modelplane.routing.judge import Comparison, answer_text, compare_request, parse_comparison
from modelplane.routing.strategies import Decision, request_text

if TYPE_CHECKING:
    from modelplane.ledger.store import LedgerStore
    from modelplane.ledger.writer import LedgerWriter
    from modelplane.serving.invoke import Invoker
    from modelplane.serving.runtime import Model, Runtime
    from modelplane.serving.state import Serving

log = logging.getLogger("modelplane.shadow")

SHADOWS = sa.Table(
    "route_shadows",
    sa.MetaData(),
    sa.Column("serving_id", sa.Text, primary_key=True),
    sa.Column("feature", sa.Text),
    sa.Column("ts", sa.Double),
    sa.Column("weak_model", sa.Text),
    sa.Column("strong_model", sa.Text),
    sa.Column("weak_cost", sa.Double),
    sa.Column("strong_cost", sa.Double),
    sa.Column("verdict", sa.Text),
    sa.Column("score", sa.Double),
    sa.Column("weak_ok", sa.Boolean),
    sa.Column("strong_ok", sa.Boolean),
    sa.Column("prompt", sa.Text),
    sa.Column("config_version", sa.Text),
)
JUDGED = ("weak_worse", "tie", "weak_better")


@dataclass(frozen=True, slots=True)
class _Job:
    serving: Serving
    body: dict[str, Any]
    weak_text: str
    weak_cost: float | None
    strong: Model
    judge: Model
    version: str


class ShadowRunner:
    """Runs sampled shadow judgements in the background; one per gateway."""

    def __init__(
        self, invoker: Invoker, writer: LedgerWriter, store: LedgerStore, rng: random.Random | None = None
    ) -> None:
        self.invoker, self.writer, self.store = invoker, writer, store
        self.rng = rng or random.Random()
        self._running: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def consider(
        self, runtime: Runtime, serving: Serving, body: dict[str, Any], answer: dict[str, Any], cost: float | None
    ) -> None:
        """Maybe shadow this serving: its feature samples, a cheaper route model answered it, there is room."""
        route = runtime.features[serving.feature].route
        shadow = route.shadow
        if shadow is None or serving.status != "ok" or serving.model not in route.models:
            return
        strong = shadow.strong or route.strong or route.models[-1]
        if serving.model == strong or self.rng.random() >= shadow.sample:
            return
        if self._running.get(serving.feature, 0) >= shadow.concurrency:
            return  # never a backlog: a skipped sample only makes the estimate a little wider
        job = _Job(
            serving,
            body,
            answer_text(answer),
            cost,
            runtime.models[strong],
            runtime.models[shadow.judge],
            runtime.version,
        )
        self._running[serving.feature] = self._running.get(serving.feature, 0) + 1
        task = asyncio.ensure_future(self._run(job))
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, serving.feature))

    def _done(self, task: asyncio.Task[None], feature: str) -> None:
        self._tasks.discard(task)
        self._running[feature] -= 1
        if not task.cancelled() and task.exception() is not None:
            log.warning("shadow judging failed: %s", task.exception())

    async def close(self, grace: float = 10.0) -> None:
        """Let running shadows finish for up to `grace` seconds, then cancel the rest."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _run(self, job: _Job) -> None:
        from modelplane.serving.record import to_record
        from modelplane.serving.state import Serving

        original = job.serving
        shadow = Serving("shadow", serving_id=original.serving_id, ts=original.ts, caller=original.caller)
        shadow.feature = original.feature
        shadow.route = Decision(
            job.strong.name, "shadow", (str(original.model), job.strong.name), reason=f"shadow of {original.id}"
        )
        comparison, verdict = await self._judge(shadow, job)
        shadow.model = job.strong.name
        record = to_record(shadow.finish(), job.version)
        record.latency_ms, record.ttft_ms = 0.0, None  # the serving's latency is the client's, not ours
        if not self.writer.submit(record):
            await self.writer.put(record)
        await self._store(job, record, comparison, verdict)

    async def _judge(self, shadow: Serving, job: _Job) -> tuple[Comparison | None, str]:
        body = {k: v for k, v in job.body.items() if k not in ("stream", "stream_options")}
        try:
            strong = await self.invoker.ask(shadow, job.strong, body, job.version, purpose="shadow")
            weak_is_a = self.rng.random() < 0.5
            strong_text = answer_text(strong.body)
            first, second = (job.weak_text, strong_text) if weak_is_a else (strong_text, job.weak_text)
            ask = compare_request(request_text(job.body), first, second)
            judged = await self.invoker.ask(shadow, job.judge, ask, job.version, purpose="shadow_judge")
        except ProviderError as exc:
            log.info("shadow of serving %s failed: %s", shadow.serving_id, exc)
            return None, "failed"
        comparison = parse_comparison(answer_text(judged.body), weak_is_a)
        return comparison, "invalid" if comparison is None else comparison.verdict

    async def _store(self, job: _Job, record: ServingRecord, comparison: Comparison | None, verdict: str) -> None:
        costs = [c.cost_usd for c in record.calls if c.purpose == "shadow"]
        row = {
            "serving_id": job.serving.serving_id,
            "feature": job.serving.feature,
            "ts": job.serving.ts,
            "weak_model": str(job.serving.model),
            "strong_model": job.strong.name,
            "weak_cost": job.weak_cost,
            "strong_cost": None if not costs or None in costs else sum(c for c in costs if c is not None),
            "verdict": verdict,
            "score": None if comparison is None else comparison.score,
            "weak_ok": None if comparison is None else comparison.weak_ok,
            "strong_ok": None if comparison is None else comparison.strong_ok,
            "prompt": request_text(job.body),
            "config_version": job.version,
        }
        async with self.store.engine.begin() as conn:
            await conn.execute(SHADOWS.insert().values(**row))


async def shadow_rows(
    store: LedgerStore, since: float | None = None, until: float | None = None
) -> list[dict[str, Any]]:
    """Every `route_shadows` row in the window, oldest first."""
    query = sa.select(SHADOWS).order_by(SHADOWS.c.ts)
    if since is not None:
        query = query.where(SHADOWS.c.ts >= since)
    if until is not None:
        query = query.where(SHADOWS.c.ts < until)
    async with store.engine.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


async def judged_pairs(store: LedgerStore, feature: str | None = None) -> list[tuple[str, bool, bool]]:
    """(prompt, weak_ok, strong_ok) of every judged shadow: the router trainer's ledger input."""
    return [(r["prompt"], r["weak_ok"], r["strong_ok"]) for r in await judged_rows(store, feature)]


async def judged_rows(store: LedgerStore, feature: str | None = None) -> list[dict[str, Any]]:
    """Every judged shadow as `prompt`, `weak_ok`, `strong_ok` and `group` (its feature), oldest first."""
    return [
        {
            "prompt": str(r["prompt"]),
            "weak_ok": bool(r["weak_ok"]),
            "strong_ok": bool(r["strong_ok"]),
            "group": r["feature"],
        }
        for r in await shadow_rows(store)
        if r["verdict"] in JUDGED and feature in (None, r["feature"])
    ]


def write_pairs(pairs: list[tuple[str, bool, bool]], path: Path) -> None:
    """The pairs as CSV: `prompt,weak_ok,strong_ok`, booleans as True/False."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["prompt", "weak_ok", "strong_ok"])
        writer.writerows((prompt, str(weak), str(strong)) for prompt, weak, strong in pairs)
