"""Report benchmark: ingest synthetic servings into the ledger, then time `modelplane report`.

For each backend (SQLite in a temp dir, Postgres at 127.0.0.1:5432 in a fresh database):

1. generate ``--servings`` (1,000,000) synthetic servings with their calls (4 features, 3 tiers,
   3 models, ~20 % cache hits with no call, ~8 % retries/fallbacks with 2-3 calls, 5 % of servings
   spanning two requests, a few unpriced calls), over 30 days in arrival order with time-ordered
   ids, as the gateway writes them (serving/state.py ``new_id``);
2. write them through ``LedgerStore.write`` in batches of ``--batch`` (timed: the write calls only,
   generation excluded) -- the ingest rate;
3. run ``modelplane report --format json`` as a subprocess (the installed console script, so the
   time includes start-up, config loading and the projection) -- the report time, best of ``--repeat``.

    python bench/report.py                        # both backends, 1M servings
    python bench/report.py --servings 100000      # quicker
    python bench/report.py --only sqlite          # or --only postgres
    python bench/report.py --keep /tmp/mp-ledgers # build once, then re-time the report on the same ledgers

Prints one table; everything goes to ``bench/results/report.json``. See bench/README.md ("Report").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from modelplane.ledger import CallRecord, LedgerStore, ServingRecord

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
FEATURES = ("support-reply", "summarize", "classify", "search-answer")
TIERS = ("free", "pro", "enterprise")
MODELS = {"small": (0.15, 0.60), "large": (2.50, 10.00), "local-small": (0.0, 0.0)}
START = 1_760_000_000.0
CONFIG = """\
providers: {{up: {{kind: openai, base_url: "http://127.0.0.1:1/v1", api_key: k}}}}
models:
  small: {{provider: up, price: {{input: 0.15, cached_input: 0.075, output: 0.60}}}}
  large: {{provider: up, price: {{input: 2.50, cached_input: 1.25, output: 10.00}}}}
  local-small: {{provider: up, price: {{input: 0, output: 0}}}}
tiers:
  free: {{revenue_per_serving: 0}}
  pro: {{monthly_price: 20, expected_servings_per_month: 400}}
  enterprise: {{revenue_per_serving: 0.25}}
features:
{features}
ledger: {{url: "{url}"}}
"""


def synthetic(count: int, seed: int = 7) -> Iterator[ServingRecord]:
    """`count` servings with their calls, deterministic for a seed."""
    rng = random.Random(seed)
    step = 30 * 86400 / count  # arrival order: ts grows, as in a gateway's ledger
    n = 0
    while n < count:
        feature = FEATURES[rng.randrange(4)]
        tier = TIERS[rng.randrange(3)]
        ts = START + (n + rng.random()) * step
        serving_id = _time_id(ts, rng)
        for part in range(2 if rng.random() < 0.05 else 1):
            request_id = serving_id if part == 0 else _time_id(ts + part * step / 4, rng)
            hit = rng.random() < 0.2
            calls = []
            if not hit:
                for attempt in range(1 if rng.random() < 0.92 else rng.choice((2, 3))):
                    model = ("small", "large", "local-small")[min(attempt, 2) if attempt else rng.randrange(2)]
                    inp, out = rng.randrange(200, 3000), rng.randrange(20, 600)
                    cached = inp // 4 if rng.random() < 0.3 else 0
                    p_in, p_out = MODELS[model]
                    cost = None if rng.random() < 0.001 else (inp * p_in + out * p_out) / 1e6
                    calls.append(
                        CallRecord(
                            id=_time_id(ts + attempt * step / 8, rng),
                            request_id=request_id,
                            serving_id=serving_id,
                            ts=ts,
                            attempt=attempt,
                            model=model,
                            provider="up",
                            status="ok",
                            input_tokens=inp,
                            cached_input_tokens=cached,
                            output_tokens=out,
                            cost_usd=cost,
                            latency_ms=rng.uniform(200, 2000),
                        )
                    )
            costs = [c.cost_usd for c in calls]
            yield ServingRecord(
                id=request_id,
                serving_id=serving_id,
                ts=ts + part * step / 4,
                tenant="t",
                tier=tier,
                feature=feature,
                operation="chat",
                status="escalated" if rng.random() < 0.005 else "ok",
                http_status=200,
                model=calls[-1].model if calls else None,
                provider="up",
                cache="exact" if hit else "miss",
                fallback_depth=max(len(calls) - 1, 0),
                input_tokens=sum(c.input_tokens for c in calls),
                cached_input_tokens=sum(c.cached_input_tokens for c in calls),
                output_tokens=sum(c.output_tokens for c in calls),
                cost_usd=None if None in costs else sum(c for c in costs if c is not None),
                latency_ms=sum(c.latency_ms for c in calls) + 1.0,
                calls=calls,
            )
            n += 1


def _time_id(ts: float, rng: random.Random) -> str:
    """An id the way the gateway makes them (serving/state.py `new_id`): nanoseconds, then 32 random bits."""
    return f"{int(ts * 1e9):016x}{rng.getrandbits(32):08x}"


async def ingest(url: str, count: int, batch: int) -> dict[str, float]:
    store = LedgerStore.from_url(url)
    await store.open()
    writing = 0.0
    records = synthetic(count)
    written = 0
    try:
        while written < count:
            chunk = [record for _, record in zip(range(batch), records, strict=False)]
            if not chunk:
                break
            started = time.perf_counter()
            await store.write(chunk)
            writing += time.perf_counter() - started
            written += len(chunk)
        calls = await store.count("calls")
    finally:
        await store.close()
    return {"servings": written, "calls": calls, "write_s": writing, "ingest_per_s": written / writing}


def report_time(config: Path, repeat: int) -> tuple[float, int]:
    binary = Path(sys.executable).with_name("modelplane")
    best, size = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        out = subprocess.run(
            [str(binary), "report", "--config", str(config), "--format", "json"],
            check=True,
            capture_output=True,
            env={**os.environ, "MODELPLANE_HOME": str(config.parent)},
        ).stdout
        best = min(best, time.perf_counter() - started)
        size = len(json.loads(out)["features"])
    return best, size


async def postgres_db() -> str:
    import asyncpg

    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    name = f"mp_bench_{uuid.uuid4().hex[:8]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    return name


async def drop_postgres_db(name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


def bench(backend: str, args: argparse.Namespace, tmp: Path) -> dict[str, float | str]:
    """Build the ledger (or reuse the one kept in `--keep`), then time the report on it."""
    home = args.keep or tmp
    built = home / f"{backend}.json"  # what a kept ledger holds: its url and how its ingest went
    if args.keep and built.exists() and json.loads(built.read_text())["servings"] == args.servings:
        kept = json.loads(built.read_text())
        url, ingested, pg_name = kept["url"], kept["ingest"], ""
    else:
        pg_name = ""
        if backend == "sqlite":
            for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):  # a stale WAL must not meet a new file
                (home / name).unlink(missing_ok=True)
            url = f"sqlite:///{home}/ledger.db"
        else:
            pg_name = asyncio.run(postgres_db())
            url = f"postgresql://postgres@127.0.0.1:5432/{pg_name}"
        try:
            ingested = asyncio.run(ingest(url, args.servings, args.batch))
        except BaseException:
            if pg_name:
                asyncio.run(drop_postgres_db(pg_name))
            raise
        if args.keep:
            built.write_text(json.dumps({"servings": args.servings, "url": url, "ingest": ingested}))
            pg_name = ""  # kept: dropped by hand (`DROP DATABASE`), not here
    try:
        config = home / f"{backend}.yaml"
        features = "\n".join(f"  {f}: {{route: {{models: [small, large]}}}}" for f in FEATURES)
        config.write_text(CONFIG.format(features=features, url=url))
        seconds, groups = report_time(config, args.repeat)
    finally:
        if pg_name:
            asyncio.run(drop_postgres_db(pg_name))
    return {"backend": backend, **ingested, "report_s": seconds, "features": groups}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servings", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("sqlite", "postgres"))
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep the built ledgers in this directory (Postgres: the database stays) and reuse them "
        "when they hold --servings servings: only the report is timed again, ingest figures are the first run's",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "report.json")
    args = parser.parse_args()
    results = []
    if args.keep:
        args.keep = args.keep.resolve()
        args.keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mp-bench-report-") as tmp:
        for backend in ("sqlite", "postgres"):
            if args.only in (None, backend):
                results.append(bench(backend, args, Path(tmp)))
    print(f"{'backend':<10} {'servings':>10} {'calls':>10} {'ingest/s':>10} {'report s':>9}  target")
    for r in results:
        ok = "ok" if float(r["ingest_per_s"]) >= 20_000 and float(r["report_s"]) < 5 else "MISSED"
        print(
            f"{r['backend']:<10} {r['servings']:>10,} {r['calls']:>10,} {r['ingest_per_s']:>10,.0f} "
            f"{r['report_s']:>9.2f}  {ok} (ingest >= 20,000/s, report < 5 s)"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"servings": args.servings, "batch": args.batch, "results": results}, indent=2))


if __name__ == "__main__":
    main()
