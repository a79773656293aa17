"""Serving and call ids: unique, time-ordered, and different in a forked worker."""

from __future__ import annotations

import os

from modelplane.serving.state import new_id


def test_ids_are_unique_and_sort_by_time() -> None:
    ids = [new_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in ids[:100])
    assert [i[:16] for i in ids] == sorted(i[:16] for i in ids)  # the time part never goes back


def test_a_forked_worker_draws_its_own_random_bits() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write its next random part and leave at once
        os.write(write, new_id()[16:].encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    assert child != new_id()[16:]
