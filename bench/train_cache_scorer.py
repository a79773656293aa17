"""Train the semantic cache's learned hit scorer (cache/pairscore.py) on public data (../shared/data/cache/).

    python bench/train_cache_scorer.py [--data quora|joint] [--no-write]

Needs scikit-learn (not a dependency of modelplane: the gateway evaluates the exported trees
with numpy): `pip install scikit-learn` in a separate venv layered on the project's.

Rows, through the package's own feature code (`pair_features`) and wordllama-256:
  Quora (the default, --data quora): question2 queried against question1 (its own
  partition), labelled is_duplicate. The shipped model is trained on Quora only, so the
  paraphrase benchmark stays entirely unseen (bench/README.md says why);
  --data joint adds every GPTCache paraphrase against each of its 4 nearest origins by
  cosine, labelled by whether that origin's text is the paraphrase's own.
Folds: Quora row % 5 (and paraphrase index % 5). Writes
  src/modelplane/cache/pairscore.json   the model trained on every row (shipped);
  bench/cache_scorer_folds.json.gz      the 5 models that each left one fold out, so that
                                        bench/semantic_cache.py scores every training row
                                        with a model that never saw it (no scikit-learn needed).
It prints out-of-fold AUC and, per half (even rows "tune", odd rows "held out"), the
decisions the cache would take at a few thresholds (pick among the 4 nearest as
cache/scoring.py ranks them, serve if P ≥ threshold).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from modelplane.cache.guard import compare, facts  # noqa: E402
from modelplane.cache.pairscore import FEATURES, FORMAT, MODEL_FILE, Trees, pair_features  # noqa: E402
from modelplane.cache.scoring import CANDIDATES, rank  # noqa: E402
from modelplane.embeddings.wordllama import WordLlamaEmbedder  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "cache"
SHIPPED = ROOT / "src" / "modelplane" / "cache" / MODEL_FILE
FOLDS_FILE = ROOT / "bench" / "cache_scorer_folds.json.gz"
FOLDS = 5
PARAMS: dict[str, Any] = {
    "max_iter": 300,
    "learning_rate": 0.05,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 40,
    "l2_regularization": 1.0,
    "random_state": 0,  # early stopping holds out 10 % at random: fixed, so training is deterministic
}
FLOOR_GRID = np.round(np.arange(0.30, 0.80, 0.05), 2)
FLOOR_MAX_P = 0.2  # the floor may only drop pairs the model scores below this (well under any useful threshold)
REPORT_AT = tuple(np.round(np.arange(0.50, 0.66, 0.01), 2))


@dataclass
class Rows:
    x: np.ndarray  # features
    y: np.ndarray  # label
    fold: np.ndarray
    cosine: np.ndarray


def quora_rows(embedder: WordLlamaEmbedder) -> Rows:
    with (DATA / "qqp_pairs_val.csv").open(newline="") as f:
        pairs = list(csv.DictReader(f))
    cached, queries = [p["question1"] for p in pairs], [p["question2"] for p in pairs]
    cosines = np.einsum("ij,ij->i", embedder.embed(queries), embedder.embed(cached)).astype(np.float64)
    x = np.array([_features(q, c, float(s), embedder) for q, c, s in zip(queries, cached, cosines, strict=True)])
    y = np.array([p["is_duplicate"] == "1" for p in pairs], np.int64)
    return Rows(x, y, np.arange(len(pairs)) % FOLDS, cosines)


@dataclass
class Candidates:
    rows: Rows  # labelled 1 when the origin's text is the paraphrase's own (63 origins are verbatim repeats)
    query: np.ndarray  # which paraphrase each row belongs to
    rank: np.ndarray  # cache/scoring.rank of the candidate: the cache serves the best-ranked
    own: np.ndarray  # whether the candidate is the paraphrase's own origin (the benchmark's "correct")


def paraphrase_rows(embedder: WordLlamaEmbedder) -> Candidates:
    pairs = json.loads((DATA / "paraphrase_pairs_gptcache.json").read_text())
    origins, queries = [p["origin"] for p in pairs], [p["similar"] for p in pairs]
    origin_vectors, query_vectors = embedder.embed(origins), embedder.embed(queries)
    origin_facts = [facts(o) for o in origins]
    x, y, query, ranks, cosines, own = [], [], [], [], [], []
    for i, (text, vector) in enumerate(zip(queries, query_vectors, strict=True)):
        sims = origin_vectors @ vector
        query_facts = facts(text)
        for j in np.argsort(-sims, kind="stable")[:CANDIDATES]:
            cosine = float(sims[j])
            x.append(_features(text, origins[j], cosine, embedder))
            y.append(int(origins[j] == origins[i]))
            own.append(j == i)
            query.append(i)
            ranks.append(rank(cosine, query_facts, origin_facts[j]))
            cosines.append(cosine)
    query_index = np.array(query)
    rows = Rows(np.array(x), np.array(y, np.int64), query_index % FOLDS, np.array(cosines))
    return Candidates(rows, query_index, np.array(ranks), np.array(own))


def _features(query: str, cached: str, cosine: float, embedder: WordLlamaEmbedder) -> np.ndarray:
    fq, fc = facts(query), facts(cached)
    return pair_features(query, fq, cached, fc, cosine, compare(fq, fc), embedder.embed)


def fit(x: np.ndarray, y: np.ndarray) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(**PARAMS).fit(x, y)


def export(model: Any, floor: float, trained_on: str) -> dict[str, Any]:
    """The model file: scikit-learn's fitted trees (private `_predictors`, checked against predict_proba)."""
    trees = []
    for (predictor,) in model._predictors:
        nodes = predictor.nodes
        trees.append(
            {
                "feature": nodes["feature_idx"].tolist(),
                "threshold": nodes["num_threshold"].tolist(),
                "missing_left": nodes["missing_go_to_left"].astype(bool).tolist(),
                "left": nodes["left"].tolist(),
                "right": nodes["right"].tolist(),
                "value": nodes["value"].tolist(),
                "leaf": nodes["is_leaf"].astype(bool).tolist(),
            }
        )
    return {
        "format": FORMAT,
        "embedder": "wordllama/l2_supercat-256",
        "features": list(FEATURES),
        "floor": floor,
        "trained_on": trained_on,
        "params": {k: v for k, v in PARAMS.items()},
        "baseline": float(np.ravel(model._baseline_prediction)[0]),
        "trees": trees,
    }


def check_export(model: Any, exported: dict[str, Any], x: np.ndarray) -> None:
    ours = Trees.from_nodes(exported["trees"], exported["baseline"]).probability(x)
    theirs = model.predict_proba(x)[:, 1]
    assert np.max(np.abs(ours - theirs)) < 1e-9, "the numpy evaluator disagrees with scikit-learn"


def choose_floor(cosine: np.ndarray, p: np.ndarray) -> float:
    """The highest cosine below which every row scored (out of fold) under FLOOR_MAX_P."""
    ok = [g for g in FLOOR_GRID if not np.any(p[cosine < g] >= FLOOR_MAX_P)]
    return float(max(ok, default=0.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=("quora", "joint"), default="quora")
    parser.add_argument("--no-write", action="store_true", help="measure only")
    args = parser.parse_args()
    from sklearn.metrics import roc_auc_score

    embedder = WordLlamaEmbedder(256)
    quora, para = quora_rows(embedder), paraphrase_rows(embedder)
    joint = args.data == "joint"
    x = np.vstack([quora.x, para.rows.x]) if joint else quora.x
    y = np.concatenate([quora.y, para.rows.y]) if joint else quora.y
    fold = np.concatenate([quora.fold, para.rows.fold]) if joint else quora.fold
    cosine = np.concatenate([quora.cosine, para.rows.cosine]) if joint else quora.cosine
    oof = np.zeros(len(y))
    fold_models = []
    for k in range(FOLDS):
        model = fit(x[fold != k], y[fold != k])
        oof[fold == k] = model.predict_proba(x[fold == k])[:, 1]
        fold_models.append(model)
    full = fit(x, y)
    floor = choose_floor(cosine, oof)
    p_quora = oof[: len(quora.y)]
    p_para = oof[len(quora.y) :] if joint else full.predict_proba(para.rows.x)[:, 1]
    p_quora = np.where(quora.cosine < floor, 0.0, p_quora)
    p_para = np.where(para.rows.cosine < floor, 0.0, p_para)
    print(f"data: {args.data}; trees: {full.n_iter_}; floor: cosine {floor:.2f}")
    auc, cosine_auc = roc_auc_score(quora.y, p_quora), roc_auc_score(quora.y, quora.cosine)
    print(f"Quora AUC out of fold: {auc:.3f} (cosine {cosine_auc:.3f})")
    report(quora, para, p_quora, p_para)
    if args.no_write:
        return
    trained_on = "quora+paraphrases" if joint else "quora"
    exported = export(full, floor, trained_on)
    check_export(full, exported, x)
    SHIPPED.write_text(json.dumps(exported, separators=(",", ":")) + "\n")
    folds = []
    for k, model in enumerate(fold_models):
        folds.append(export(model, floor, f"{trained_on} without fold {k}"))
        check_export(model, folds[-1], x[fold == k])
    rule = {"quora": "row % 5", "paraphrases": "paraphrase index % 5" if joint else None}
    folds_json = json.dumps({"folds": rule, "models": folds}, separators=(",", ":"))
    FOLDS_FILE.write_bytes(gzip.compress(folds_json.encode(), mtime=0))
    print(f"wrote {SHIPPED} and {FOLDS_FILE}")


def report(quora: Rows, para: Candidates, p_quora: np.ndarray, p_para: np.ndarray) -> None:
    picked = {}  # paraphrase -> (row of the best-ranked candidate)
    for row, (q, r) in enumerate(zip(para.query, para.rank, strict=True)):
        if q not in picked or r > para.rank[picked[q]]:
            picked[q] = row
    queries = np.array(sorted(picked))
    rows = np.array([picked[q] for q in queries])
    print(f"{'t':>5} | {'half':>8} | paraphrases correct/wrong/miss | Quora precision / recall (hits)")
    for t in REPORT_AT:
        for half, parity in (("tune", 0), ("held out", 1)):
            sel = rows[queries % 2 == parity]
            hit = p_para[sel] >= t
            correct = int((hit & para.own[sel]).sum())  # as bench/semantic_cache.py counts
            wrong = int(hit.sum()) - correct
            qsel = np.arange(len(quora.y)) % 2 == parity
            qhit = (p_quora >= t) & qsel
            dup = (quora.y == 1) & qsel
            hits = int(qhit.sum())
            precision = (qhit & dup).sum() / hits if hits else float("nan")
            print(
                f"{t:>5.2f} | {half:>8} | {correct:>4}/{wrong:>3}/{len(sel) - correct - wrong:>3} | "
                f"{precision:.3f} / {(qhit & dup).sum() / dup.sum():.3f} ({hits})"
            )


if __name__ == "__main__":
    main()
