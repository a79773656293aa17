"""The partitioned, byte-bounded vector index."""

from __future__ import annotations

import numpy as np

from modelplane.cache.index import VectorIndex


def unit(seed: int, dim: int = 8) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def test_identical_vector_in_another_partition_never_matches() -> None:
    index: VectorIndex[str] = VectorIndex(8, max_bytes=10**6)
    index.add("acme|support", unit(1), "acme answer")
    assert index.search("globex|support", unit(1)) == []
    assert index.search("acme|billing", unit(1)) == []
    [(entry, score)] = index.search("acme|support", unit(1))
    assert entry.value == "acme answer"
    assert score > 0.999


def test_top1_is_the_nearest() -> None:
    index: VectorIndex[int] = VectorIndex(8, max_bytes=10**6)
    for i in range(50):
        index.add("p", unit(i), i)
    [(entry, _)] = index.search("p", unit(17))
    assert entry.value == 17
    assert index.search("p", unit(999), min_score=0.9999) == []


def test_byte_bound_evicts_least_recently_used() -> None:
    index: VectorIndex[int] = VectorIndex(8, max_bytes=10**6)
    per_entry = index.entry_bytes(100)
    index = VectorIndex(8, max_bytes=3 * per_entry)
    first = index.add("p", unit(0), 0, payload_bytes=100)
    index.add("p", unit(1), 1, payload_bytes=100)
    index.add("q", unit(2), 2, payload_bytes=100)
    index.touch(first)  # 0 is now the most recent; 1 is the oldest
    index.add("p", unit(3), 3, payload_bytes=100)
    assert len(index) == 3
    assert index.bytes <= index.max_bytes
    assert [e.value for e, _ in index.search("p", unit(1), k=5)] and all(
        e.value != 1 for e, _ in index.search("p", unit(1), k=5)
    )
    assert {e.value for e, _ in index.search("p", unit(0), k=5)} == {0, 3}


def test_entry_larger_than_the_bound_is_not_stored() -> None:
    index: VectorIndex[int] = VectorIndex(8, max_bytes=1000)
    index.add("p", unit(0), 0, payload_bytes=5000)
    assert len(index) == 0
    assert index.bytes == 0


def test_removal_keeps_rows_consistent() -> None:
    index: VectorIndex[int] = VectorIndex(8, max_bytes=10**6)
    entries = [index.add("p", unit(i), i) for i in range(10)]
    for entry in entries[::2]:
        index.remove(entry)
    for i in range(1, 10, 2):
        [(entry, _)] = index.search("p", unit(i))
        assert entry.value == i


def test_large_partition_uses_prefilter_and_still_finds_the_match() -> None:
    dim = 256
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((6000, dim)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    index: VectorIndex[int] = VectorIndex(dim, max_bytes=10**9, prefilter_dim=64)
    for i, row in enumerate(matrix):
        index.add("p", row, i)
    for i in (0, 1234, 5999):
        [(entry, score)] = index.search("p", matrix[i])
        assert entry.value == i
        assert score > 0.999
