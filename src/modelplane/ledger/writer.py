"""Batched background writes to the ledger, off the request path.

Requests hand records to a bounded queue; one task writes them in batches. A failed write
is retried with capped backoff rather than dropped, and `close()` drains the queue, which
is what makes "no record lost on a clean shutdown (SIGTERM)" true. Two cases cannot wait
for the database: records it refuses outright (isolated by splitting the batch), and a
shutdown while it stays down past `close_timeout`. Those records go to the spill file as
JSON lines, with a log line saying how many and where.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from pathlib import Path

import orjson

from modelplane.errors import LedgerError, ModelplaneError
from modelplane.ledger.records import ServingRecord
from modelplane.ledger.store import LedgerStore

_log = logging.getLogger("modelplane.ledger")


class LedgerWriter:
    """A bounded queue of serving records and the one task that writes them in batches."""

    def __init__(
        self,
        store: LedgerStore,
        *,
        queue_size: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 0.05,
        retry_initial: float = 0.1,
        retry_max: float = 5.0,
        spill_path: Path | None = None,
        close_timeout: float = 30.0,
    ) -> None:
        self._store = store
        self._queue: asyncio.Queue[ServingRecord] = asyncio.Queue(maxsize=queue_size)
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._closing = asyncio.Event()  # wakes a task that is waiting for a batch to fill
        self._spill_path = spill_path
        self._close_timeout = close_timeout
        self._give_up_at: float | None = None
        self.written = 0
        self.spilled = 0

    @property
    def depth(self) -> int:
        """Records waiting to be written."""
        return self._queue.qsize()

    def start(self) -> None:
        """Start the background task; call from inside the running event loop."""
        self._started()

    def _started(self) -> asyncio.Task[None]:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ledger-writer")
        return self._task

    def submit(self, record: ServingRecord) -> bool:
        """Queue a record without waiting; False when the queue is full or the writer closed."""
        if self._closed:
            return False
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            return False
        return True

    async def put(self, record: ServingRecord) -> None:
        """Queue a record, waiting for room when the queue is full (backpressure, never a drop)."""
        if self._closed:
            raise ModelplaneError("the ledger writer is closed; records can no longer be queued")
        await self._queue.put(record)

    async def close(self) -> None:
        """Stop accepting records, write every queued one, then stop the task."""
        self._closed = True
        self._give_up_at = time.monotonic() + self._close_timeout
        self._closing.set()
        task = self._started()  # a writer that was never started still owes its queue to the store
        drained = asyncio.ensure_future(self._queue.join())
        # Waiting on the task too means a crashed writer raises here instead of hanging.
        await asyncio.wait({drained, task}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            drained.cancel()
            await task  # re-raises what killed it
            return
        # The queue is empty and every batch written, so the task is idle in `get()`.
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._task = None

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            await self._write(batch)
            for _ in batch:
                self._queue.task_done()

    async def _next_batch(self) -> list[ServingRecord]:
        batch = [await self._queue.get()]
        self._drain_into(batch)
        if len(batch) < self._batch_size and not self._closed:
            # Give a burst a moment to fill the batch: one big insert beats many small ones.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self._flush_interval)
            self._drain_into(batch)
        return batch

    def _drain_into(self, batch: list[ServingRecord]) -> None:
        while len(batch) < self._batch_size and not self._queue.empty():
            batch.append(self._queue.get_nowait())

    async def _write(self, batch: list[ServingRecord]) -> None:
        delay = self._retry_initial
        while True:
            try:
                await self._store.write(batch)
            except LedgerError as exc:
                if not exc.permanent:
                    delay = await self._wait_or_spill(batch, exc, delay)
                    if delay < 0:
                        return
                    continue
                if len(batch) == 1:
                    self._spill(batch, f"the database refused it: {exc}")
                    return
                # Split until the refused records stand alone; the rest are written.
                middle = len(batch) // 2
                await self._write(batch[:middle])
                await self._write(batch[middle:])
                return
            except Exception as exc:
                delay = await self._wait_or_spill(batch, exc, delay)
                if delay < 0:
                    return
            else:
                self.written += len(batch)
                return

    async def _wait_or_spill(self, batch: list[ServingRecord], exc: Exception, delay: float) -> float:
        """Back off before the next try; past the shutdown deadline, spill the batch and return -1."""
        if self._give_up_at is not None and time.monotonic() >= self._give_up_at:
            self._spill(batch, f"the database is still failing at shutdown: {exc}")
            return -1.0
        # The database may be restarting; keep the batch and try again.
        _log.error("ledger write of %d records failed (%s); retrying in %.2fs", len(batch), exc, delay)
        await asyncio.sleep(delay)
        return min(delay * 2, self._retry_max)

    def _spill(self, batch: list[ServingRecord], reason: str) -> None:
        self.spilled += len(batch)
        if self._spill_path is None:
            _log.error("%d ledger records LOST (%s) and no spill file is configured", len(batch), reason)
            return
        self._spill_path.parent.mkdir(parents=True, exist_ok=True)
        with self._spill_path.open("ab") as spill:
            for record in batch:
                spill.write(orjson.dumps(dataclasses.asdict(record)) + b"\n")
        _log.error("%d ledger records written to %s instead (%s)", len(batch), self._spill_path, reason)
