"""Semantic-cache precision, recall and lookup latency on public data (../shared/data/cache/).

    python bench/semantic_cache.py [--embedders wordllama-256,wordllama-64] [--entries 100000] [--out FILE]

Per embedder and per threshold, plain cosine next to cosine + guard, through the real
`SemanticCache`:
  (a) GPTCache's 999 paraphrase pairs: every origin cached in one partition, every
      paraphrase queried; correct hit = its own origin, wrong hit = another origin.
  (b) Quora question pairs: each pair in its own partition (question1 cached,
      question2 queried): a hit is a cached answer served; precision = share of hits that
      are true duplicates, recall = share of true duplicates hit.
  (c) lookup latency (embedding included) with N entries in one partition, and bytes per entry.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from modelplane.cache.semantic import DEFAULT_THRESHOLD, SemanticCache  # noqa: E402
from modelplane.embeddings.base import Embedder, EmbedderSpec, embedder_from_config  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "cache"
THRESHOLDS = (0.70, 0.75, 0.80, 0.85, 0.90, 0.93, 0.95, 0.97, 0.98)
GPTCACHE = {0.95: (425, 25, 549), 0.90: (804, 77, 118), 0.80: (904, 92, 3)}  # published, data README


def make_embedder(name: str) -> Embedder:
    kind, _, dim = name.rpartition("-")
    if kind == "wordllama":
        spec = EmbedderSpec("wordllama", dim=int(dim))
    elif name.startswith("st"):
        spec = EmbedderSpec("sentence-transformers")
    else:
        raise SystemExit(f"unknown embedder {name!r}: use wordllama-64|128|256 or st")
    embedder = embedder_from_config(spec)
    assert isinstance(embedder, Embedder)
    return embedder


def paraphrases(embedder: Embedder) -> list[dict[str, Any]]:
    pairs = json.loads((DATA / "paraphrase_pairs_gptcache.json").read_text())
    origins = [p["origin"] for p in pairs]
    queries = [p["similar"] for p in pairs]
    origin_vectors, query_vectors = embedder.embed(origins), embedder.embed(queries)
    rows = []
    for guard in (False, True):
        cache: SemanticCache[int] = SemanticCache(embedder, guard=guard, max_bytes=2**30)
        for i, (origin, vector) in enumerate(zip(origins, origin_vectors, strict=True)):
            cache.store("bench", origin, i, vector=vector)
        for threshold in THRESHOLDS:
            cache.default_threshold = threshold
            correct = wrong = 0
            for i, (query, vector) in enumerate(zip(queries, query_vectors, strict=True)):
                hit = cache.decide("bench", query, vector=vector).hit
                if hit is not None:
                    correct += hit.answer == i
                    wrong += hit.answer != i
            rows.append(
                {
                    "guard": guard,
                    "threshold": threshold,
                    "correct": correct,
                    "wrong": wrong,
                    "miss": len(pairs) - correct - wrong,
                }
            )
    return rows


def quora(embedder: Embedder) -> list[dict[str, Any]]:
    with (DATA / "qqp_pairs_val.csv").open(newline="") as f:
        pairs = list(csv.DictReader(f))
    cached = [p["question1"] for p in pairs]
    queries = [p["question2"] for p in pairs]
    duplicate = [p["is_duplicate"] == "1" for p in pairs]
    cached_vectors, query_vectors = embedder.embed(cached), embedder.embed(queries)
    rows = []
    for guard in (False, True):
        cache: SemanticCache[int] = SemanticCache(embedder, guard=guard, max_bytes=2**31)
        for i, (question, vector) in enumerate(zip(cached, cached_vectors, strict=True)):
            cache.store(f"pair-{i}", question, i, vector=vector)
        for threshold in THRESHOLDS:
            cache.default_threshold = threshold
            hits = true_hits = 0
            for i, (query, vector) in enumerate(zip(queries, query_vectors, strict=True)):
                if cache.decide(f"pair-{i}", query, vector=vector).hit is not None:
                    hits += 1
                    true_hits += duplicate[i]
            rows.append(
                {
                    "guard": guard,
                    "threshold": threshold,
                    "hits": hits,
                    "precision": true_hits / hits if hits else float("nan"),
                    "recall": true_hits / sum(duplicate),
                }
            )
    return rows


def latency(embedder: Embedder, entries: int, lookups: int = 2000) -> dict[str, float]:
    with (DATA / "qqp_pairs_val.csv").open(newline="") as f:
        questions = [q for p in csv.DictReader(f) for q in (p["question1"], p["question2"])]
    texts = [f"{questions[i % len(questions)]} {i // len(questions) or ''}".strip() for i in range(entries)]
    vectors = embedder.embed(texts)
    rss_before = _rss_bytes()
    cache: SemanticCache[bytes] = SemanticCache(embedder, max_bytes=2**34)
    answer = b"x" * 200
    for text, vector in zip(texts, vectors, strict=True):
        cache.store("bench", text, answer, answer_bytes=len(answer), vector=vector)
    rss_after = _rss_bytes()
    rng = np.random.default_rng(0)
    probes = [questions[int(j)] for j in rng.integers(0, len(questions), lookups)]
    timings = []
    for probe in probes:
        start = time.perf_counter_ns()
        cache.decide("bench", probe)  # embeds the question, searches, guards
        timings.append(time.perf_counter_ns() - start)
    ms = np.array(timings) / 1e6
    return {
        "entries": entries,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "accounted_bytes_per_entry": cache.index.bytes / entries,
        "rss_bytes_per_entry": (rss_after - rss_before) / entries,
    }


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def print_tables(name: str, para: list[dict[str, Any]], qqp: list[dict[str, Any]], lat: dict[str, float]) -> None:
    print(f"\n## {name}\n")
    print("(a) GPTCache paraphrase pairs (999): correct / wrong / miss")
    print(f"{'threshold':>9} | {'cosine':>15} | {'cosine + guard':>15} | GPTCache (published)")
    for plain, guarded in zip(para[: len(THRESHOLDS)], para[len(THRESHOLDS) :], strict=True):
        t = plain["threshold"]
        peer = "/".join(map(str, GPTCACHE[t])) if t in GPTCACHE else ""
        mark = " <- default" if t == DEFAULT_THRESHOLD else ""
        print(f"{t:>9.2f} | {_cwm(plain):>15} | {_cwm(guarded):>15} | {peer}{mark}")
    print("\n(b) Quora pairs (12,129; 4,522 duplicates), one partition per pair: precision / recall (hits)")
    print(f"{'threshold':>9} | {'cosine':>22} | {'cosine + guard':>22}")
    for plain, guarded in zip(qqp[: len(THRESHOLDS)], qqp[len(THRESHOLDS) :], strict=True):
        mark = " <- default" if plain["threshold"] == DEFAULT_THRESHOLD else ""
        print(f"{plain['threshold']:>9.2f} | {_pr(plain):>22} | {_pr(guarded):>22}{mark}")
    print(
        f"\n(c) lookup with {lat['entries']:,} entries in one partition, embedding included: "
        f"p50 {lat['p50_ms']:.3f} ms, p99 {lat['p99_ms']:.3f} ms; memory per entry: "
        f"{lat['accounted_bytes_per_entry']:.0f} B accounted, {lat['rss_bytes_per_entry']:.0f} B RSS "
        f"(200-byte answers)"
    )


def _cwm(row: dict[str, Any]) -> str:
    return f"{row['correct']}/{row['wrong']}/{row['miss']}"


def _pr(row: dict[str, Any]) -> str:
    return f"{row['precision']:.3f} / {row['recall']:.3f} ({row['hits']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embedders", default="wordllama-256,wordllama-64")
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "semantic_cache.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = {}
    for name in args.embedders.split(","):
        embedder = make_embedder(name)
        para, qqp, lat = paraphrases(embedder), quora(embedder), latency(embedder, args.entries)
        print_tables(embedder.name, para, qqp, lat)
        results[embedder.name] = {"paraphrases": para, "quora": qqp, "latency": lat}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
