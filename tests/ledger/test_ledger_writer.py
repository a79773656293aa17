"""LedgerWriter: batching, draining on close, retrying failed writes, backpressure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import orjson
import pytest

from modelplane.errors import ModelplaneError
from modelplane.ledger import LedgerStore, LedgerWriter, ServingRecord

MakeServing = Callable[..., ServingRecord]


class CountingStore(LedgerStore):
    """A real SQLite store that counts `write` calls and can fail the first few."""

    def __init__(self, store: LedgerStore, *, failures: int = 0) -> None:
        super().__init__(store.engine)
        self.writes = 0
        self.batch_sizes: list[int] = []
        self.failures = failures

    async def write(self, records: Sequence[ServingRecord]) -> None:
        self.writes += 1
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database restarting")
        self.batch_sizes.append(len(records))
        await super().write(records)


class GatedStore(CountingStore):
    """Blocks every write until the test opens the gate, so the queue can fill up."""

    def __init__(self, store: LedgerStore) -> None:
        super().__init__(store)
        self.gate = asyncio.Event()

    async def write(self, records: Sequence[ServingRecord]) -> None:
        await self.gate.wait()
        await super().write(records)


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[LedgerStore]:
    store = LedgerStore.from_url(f"sqlite:///{tmp_path}/ledger.db")
    await store.open()
    yield store
    await store.close()


async def test_fast_submits_are_written_in_batches(sqlite_store: LedgerStore, make_serving: MakeServing) -> None:
    store = CountingStore(sqlite_store)
    writer = LedgerWriter(store, batch_size=500)
    writer.start()

    accepted = [writer.submit(make_serving(n)) for n in range(2_000)]
    await asyncio.wait_for(writer.close(), timeout=10)

    assert all(accepted)
    assert await store.count() == 2_000
    assert await store.count("calls") == 2_000
    assert writer.written == 2_000
    assert store.writes <= 8  # 2,000 records in batches of up to 500, not one write each
    assert max(store.batch_sizes) == 500
    assert writer.depth == 0


async def test_close_drains_everything_queued(sqlite_store: LedgerStore, make_serving: MakeServing) -> None:
    # A flush interval far longer than the test: only close() can get these written.
    writer = LedgerWriter(sqlite_store, batch_size=10_000, flush_interval=60.0)
    writer.start()
    for n in range(300):
        assert writer.submit(make_serving(n))
    await asyncio.sleep(0)  # let the task take its first record and start waiting

    await asyncio.wait_for(writer.close(), timeout=5)

    assert await sqlite_store.count() == 300
    assert not writer.submit(make_serving(999))  # closed writers accept nothing
    with pytest.raises(ModelplaneError, match="closed"):
        await writer.put(make_serving(999))


async def test_close_without_start_still_writes(sqlite_store: LedgerStore, make_serving: MakeServing) -> None:
    writer = LedgerWriter(sqlite_store)
    assert writer.submit(make_serving(1))
    await asyncio.wait_for(writer.close(), timeout=5)
    await asyncio.wait_for(writer.close(), timeout=5)  # a second close is harmless
    assert await sqlite_store.count() == 1


async def test_failed_write_is_retried_and_nothing_lost(
    sqlite_store: LedgerStore, make_serving: MakeServing, caplog: pytest.LogCaptureFixture
) -> None:
    store = CountingStore(sqlite_store, failures=2)
    writer = LedgerWriter(store, flush_interval=0.001, retry_initial=0.001)
    writer.start()
    for n in range(50):
        await writer.put(make_serving(n))

    with caplog.at_level(logging.ERROR, logger="modelplane.ledger"):
        await asyncio.wait_for(writer.close(), timeout=5)

    assert await store.count() == 50
    assert writer.written == 50
    assert store.writes >= 3  # two failures, then at least one success
    failures = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(failures) == 2


async def test_put_waits_for_room_instead_of_dropping(sqlite_store: LedgerStore, make_serving: MakeServing) -> None:
    store = GatedStore(sqlite_store)
    writer = LedgerWriter(store, queue_size=2, batch_size=2, flush_interval=0.001)
    writer.start()
    for n in range(2):
        await writer.put(make_serving(n))
    await asyncio.sleep(0.01)  # the task takes both and blocks in write
    for n in range(2, 4):
        await writer.put(make_serving(n))
    assert writer.depth == 2
    assert not writer.submit(make_serving(98))  # full: submit refuses at once

    blocked = asyncio.create_task(writer.put(make_serving(4)))
    await asyncio.sleep(0.02)
    assert not blocked.done()  # backpressure: put is waiting, not dropping

    store.gate.set()
    await asyncio.wait_for(blocked, timeout=5)
    await asyncio.wait_for(writer.close(), timeout=5)
    ids = {row["id"] for row in await store.servings()}
    assert ids == {f"req-{n}" for n in range(5)}


async def test_a_refused_record_is_set_aside_and_the_rest_written(
    sqlite_store: LedgerStore, make_serving: MakeServing, tmp_path: Path
) -> None:
    # The fast path (a real file-backed store) raises a permanent LedgerError on a duplicate id.
    await sqlite_store.write([make_serving(3)])
    spill = tmp_path / "spill.jsonl"
    writer = LedgerWriter(sqlite_store, batch_size=10, flush_interval=0.01, spill_path=spill)
    for i in range(10):
        assert writer.submit(make_serving(100 + i if i != 6 else 3))
    await asyncio.wait_for(writer.close(), 10)
    assert await sqlite_store.count() == 10  # the first 3, plus nine of the ten
    assert writer.written == 9 and writer.spilled == 1
    (line,) = spill.read_text().splitlines()
    assert orjson.loads(line)["id"] == make_serving(3).id


async def test_shutdown_with_the_database_down_spills_instead_of_hanging(
    sqlite_store: LedgerStore, make_serving: MakeServing, tmp_path: Path
) -> None:
    store = CountingStore(sqlite_store, failures=10**6)
    spill = tmp_path / "spill.jsonl"
    writer = LedgerWriter(store, flush_interval=0.01, retry_initial=0.01, spill_path=spill, close_timeout=0.3)
    writer.start()
    for i in range(25):
        assert writer.submit(make_serving(i))
    await asyncio.wait_for(writer.close(), 10)
    ids = [orjson.loads(line)["id"] for line in spill.read_text().splitlines()]
    assert sorted(ids) == sorted(make_serving(i).id for i in range(25))
    assert writer.spilled == 25 and writer.written == 0
