"""Learned router on MMLU: APGR and CPT on subjects it never saw, against random, oracle and RouteLLM.

Data: ../shared/data/routing/mmlu (RouteLLM's per-prompt outcomes of Mixtral-8x7B, the weak
model, and GPT-4-1106, the strong one; 43 subjects, 10,785 prompts).

Unseen subjects: the 43 subjects are shuffled with a fixed seed (0) and dealt into 5
folds; each fold's router is trained on the other 4 folds' subjects and scored on its
own. Reported: the mean and spread over the 5 folds, and the *pooled* figures (every
prompt scored by the router that did not see its subject, the 5 folds' scores measured
together). One deal of 43 subjects into 5 folds is one draw (a fold holding high-school
mathematics, where GPT-4 scores 3 %, swings its mean), so the same is repeated for the
deals of seeds 1..N-1 (`--partitions N`) and their mean reported too. Seen subjects (for
contrast): 5 folds over prompts, shuffled with seed 0.

Random: uniform random scores, 20 seeds per fold (mean). Oracle: knows the outcomes
(strong first where only it is right, last where only the weak model is).

    python bench/routing.py                  # ~4 min: embeds 10,785 prompts once, trains 31 routers
    python bench/routing.py --partitions 1   # ~1 min: the seed-0 deal only
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from modelplane.embeddings.base import EmbedderSpec
from modelplane.embeddings.wordllama import WordLlamaEmbedder
from modelplane.routing.data import Outcomes, read_outcomes_csv
from modelplane.routing.metrics import evaluate, oracle_scores
from modelplane.routing.train import TrainOptions, embed_prompts, train_router

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "routing" / "mmlu"
WEAK, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
FOLDS, SEED, RANDOM_SEEDS = 5, 0, 20
FIGURES = ("apgr", "cpt50", "cpt80", "cpt95", "share_at_95_quality")

# RouteLLM (Ong et al., "RouteLLM: Learning to Route LLMs with Preference Data", arXiv 2406.18665 v4,
# Table 2, 5-shot MMLU, same weak/strong pair). Their routers are trained on Chatbot Arena preferences,
# and in the "+gold" rows also on ~1,500 golden-labelled MMLU *validation* questions, i.e. on the
# evaluated subjects (our "seen subjects" setting rather than our unseen-subject folds).
ROUTELLM_MMLU = {
    "random (95% CI)": {"apgr": 0.500, "cpt50": 0.5007, "cpt80": 0.7993},
    "arena: BERT": {"apgr": 0.502, "cpt50": 0.4943, "cpt80": 0.7780},
    "arena: causal LLM": {"apgr": 0.499, "cpt50": 0.4888, "cpt80": 0.7793},
    "arena: matrix factorisation": {"apgr": 0.524, "cpt50": 0.4500, "cpt80": 0.7686},
    "arena: SW ranking": {"apgr": 0.473, "cpt50": 0.5582, "cpt80": 0.8025},
    "arena+gold: BERT": {"apgr": 0.572, "cpt50": 0.4130, "cpt80": 0.7220},
    "arena+gold: causal LLM": {"apgr": 0.600, "cpt50": 0.3549, "cpt80": 0.7031},
    "arena+gold: matrix factorisation": {"apgr": 0.597, "cpt50": 0.3546, "cpt80": 0.7140},
    "arena+gold: SW ranking": {"apgr": 0.603, "cpt50": 0.3540, "cpt80": 0.7155},
}


def figures(scores: np.ndarray, data: Outcomes) -> dict[str, float]:
    metrics = evaluate(scores, data.weak_ok, data.strong_ok).as_dict()
    return {key: float(metrics[key] or 0.0) for key in FIGURES}


def summarise(per_fold: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {
        key: {"mean": statistics.fmean(f[key] for f in per_fold), "stdev": statistics.stdev(f[key] for f in per_fold)}
        for key in FIGURES
    }


def subject_folds(data: Outcomes, seed: int) -> np.ndarray:
    """Each prompt's fold when the subjects are shuffled with `seed` and dealt into FOLDS folds."""
    subjects = sorted(set(data.groups))
    order = np.random.default_rng(seed).permutation(len(subjects))
    fold_of = {subjects[i]: rank % FOLDS for rank, i in enumerate(order)}
    return np.array([fold_of[g] for g in data.groups])


def cross_validate(data: Outcomes, vectors: np.ndarray, folds: np.ndarray, options: TrainOptions) -> dict[str, object]:
    """Train on all folds but one, score that one; per-fold and pooled figures for learned, random, oracle."""
    pooled = np.zeros(len(data))
    rows: dict[str, list[dict[str, float]]] = {"learned": [], "random": [], "oracle": []}
    rng = np.random.default_rng(SEED)
    for k in range(FOLDS):
        test = folds == k
        train, held = data.select(~test), data.select(test)
        router = train_router(
            train, vectors[~test], embedder="wordllama", embedder_spec=EmbedderSpec(), options=options
        )
        scores = router.score_many(held.prompts, vectors[test])
        pooled[test] = scores
        rows["learned"].append(figures(scores, held))
        randoms = [figures(rng.random(len(held)), held) for _ in range(RANDOM_SEEDS)]
        rows["random"].append({key: statistics.fmean(r[key] for r in randoms) for key in FIGURES})
        rows["oracle"].append(figures(oracle_scores(held.weak_ok, held.strong_ok), held))
    pooled_figures = figures(pooled, data)
    return {
        "per_fold": rows,
        "mean": {name: summarise(r) for name, r in rows.items()},
        "to_weak_at_95_quality": to_weak(pooled, data, pooled_figures["share_at_95_quality"]),
        "pooled": {
            "learned": pooled_figures,
            "random": figures(rng.random(len(data)), data),
            "oracle": figures(oracle_scores(data.weak_ok, data.strong_ok), data),
        },
    }


def to_weak(scores: np.ndarray, data: Outcomes, strong_share: float) -> dict[str, float]:
    """With the top `strong_share` of scores sent to the strong model: the share of each kind left to the weak."""
    strong = scores >= np.quantile(scores, 1 - strong_share)
    kinds = {
        "both_right": data.weak_ok & data.strong_ok,
        "only_strong_right": ~data.weak_ok & data.strong_ok,
        "only_weak_right": data.weak_ok & ~data.strong_ok,
        "both_wrong": ~data.weak_ok & ~data.strong_ok,
    }
    return {"strong_share": strong_share, **{k: float((~strong[m]).mean()) for k, m in kinds.items()}}


def decision_latency(data: Outcomes, vectors: np.ndarray, options: TrainOptions, n: int = 2000) -> dict[str, float]:
    """Median and p99 µs of one `score` after embedding, and of embedding one prompt (wordllama)."""
    router = train_router(data, vectors, embedder="wordllama", embedder_spec=EmbedderSpec(), options=options)
    embedder = WordLlamaEmbedder()
    decide, embed = [], []
    for i in range(min(n, len(data))):
        t0 = time.perf_counter_ns()
        router.score(data.prompts[i], vectors[i])
        t1 = time.perf_counter_ns()
        embedder.embed([data.prompts[i]])
        t2 = time.perf_counter_ns()
        decide.append((t1 - t0) / 1000)
        embed.append((t2 - t1) / 1000)
    return {
        "decision_us_p50": float(np.percentile(decide, 50)),
        "decision_us_p99": float(np.percentile(decide, 99)),
        "embed_us_p50": float(np.percentile(embed, 50)),
        "prompt_chars_p50": float(np.median([len(p) for p in data.prompts[:n]])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "routing.json")
    parser.add_argument("--embedding-l2", type=float, default=TrainOptions().embedding_l2)
    parser.add_argument("--text-l2", type=float, default=TrainOptions().text_l2)
    parser.add_argument("--partitions", type=int, default=5, help="deals of the subjects into folds (seeds 0..N-1)")
    args = parser.parse_args()
    if args.partitions < 1:
        parser.error("--partitions must be at least 1")
    options = TrainOptions(args.embedding_l2, args.text_l2)

    files = sorted(args.data.glob("mmlu_*.csv"))
    if not files:
        sys.exit(f"no mmlu_*.csv under {args.data}")
    data = Outcomes.of(read_outcomes_csv(files, WEAK, STRONG))
    t0 = time.perf_counter()
    vectors = embed_prompts(WordLlamaEmbedder(), data.prompts)
    embed_seconds = time.perf_counter() - t0

    subjects = sorted(set(data.groups))
    folds = subject_folds(data, SEED)
    fold_of = dict(zip(data.groups, folds.tolist(), strict=True))
    prompt_folds = np.random.default_rng(SEED).permutation(len(data)) % FOLDS

    unseen = cross_validate(data, vectors, folds, options)
    deals = [unseen] + [
        cross_validate(data, vectors, subject_folds(data, seed), options) for seed in range(1, args.partitions)
    ]
    seen = cross_validate(data, vectors, prompt_folds, options)
    latency = decision_latency(data, vectors, options)
    result = {
        "data": {"prompts": len(data), "subjects": len(subjects), "weak": WEAK, "strong": STRONG},
        "weak_accuracy": float(data.weak_ok.mean()),
        "strong_accuracy": float(data.strong_ok.mean()),
        "options": {"embedding_l2": options.embedding_l2, "text_l2": options.text_l2},
        "folds": {str(k): sorted(s for s, f in fold_of.items() if f == k) for k in range(FOLDS)},
        "unseen_subjects": unseen,
        "unseen_subjects_partitions": partitions_summary(deals),
        "seen_subjects": seen,
        "routellm_published_mmlu": ROUTELLM_MMLU,
        "timing_provisional": {"embed_all_seconds": embed_seconds, **latency},
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print_table(result)
    print(f"\nwrote {args.out}")


def partitions_summary(deals: list[dict[str, object]]) -> dict[str, object]:
    """Per deal of the subjects (seed 0, 1, ...): fold-mean and pooled APGR; and their means over the deals."""
    rows = []
    for seed, deal in enumerate(deals):
        mean, pooled = deal["mean"], deal["pooled"]
        assert isinstance(mean, dict) and isinstance(pooled, dict)
        rows.append(
            {
                "seed": seed,
                **{f"{name}_fold_mean_apgr": mean[name]["apgr"]["mean"] for name in ("learned", "random")},
                **{f"{name}_pooled_apgr": pooled[name]["apgr"] for name in ("learned", "random")},
            }
        )
    keys = [k for k in rows[0] if k != "seed"]
    return {"per_seed": rows, "mean": {k: statistics.fmean(r[k] for r in rows) for k in keys}}


def print_table(result: dict[str, object]) -> None:
    unseen, seen = result["unseen_subjects"], result["seen_subjects"]
    assert isinstance(unseen, dict) and isinstance(seen, dict)
    print(f"weak {result['weak_accuracy']:.3f}  strong {result['strong_accuracy']:.3f}")
    print(f"{'router':40s} {'APGR':>14s} {'CPT(50%)':>10s} {'CPT(80%)':>10s} {'CPT(95%)':>10s}")
    for setting, block in (("unseen subjects", unseen), ("seen subjects", seen)):
        for name in ("learned", "random", "oracle"):
            m = block["mean"][name]
            apgr = f"{m['apgr']['mean']:.3f}±{m['apgr']['stdev']:.3f}"
            cpts = " ".join(f"{m[k]['mean']:>10.1%}" for k in ("cpt50", "cpt80", "cpt95"))
            print(f"{setting + ': ' + name + ' (fold mean)':40s} {apgr:>14s} {cpts}")
        p = block["pooled"]["learned"]
        pooled = " ".join(f"{p[k]:>10.1%}" for k in ("cpt50", "cpt80", "cpt95"))
        print(f"{setting + ': learned (pooled)':40s} {p['apgr']:>14.3f} {pooled}")
    weak = unseen["to_weak_at_95_quality"]
    print(
        f"unseen subjects, pooled, at {weak['strong_share']:.1%} strong calls (95 % of GPT-4's accuracy), left to the "
        f"weak model: {weak['both_right']:.0%} of prompts both answer, {weak['only_weak_right']:.0%} only it answers, "
        f"{weak['both_wrong']:.0%} neither answers, {weak['only_strong_right']:.0%} only the strong one answers"
    )
    deals = result["unseen_subjects_partitions"]
    assert isinstance(deals, dict)
    per_seed, means = deals["per_seed"], deals["mean"]
    print(
        f"unseen subjects over {len(per_seed)} deals of the subjects (seeds 0..{len(per_seed) - 1}): learned "
        f"fold mean {means['learned_fold_mean_apgr']:.3f}, pooled {means['learned_pooled_apgr']:.3f}; random "
        f"{means['random_fold_mean_apgr']:.3f}, {means['random_pooled_apgr']:.3f}"
    )
    for row in per_seed:
        print(f"  seed {row['seed']}: learned {row['learned_fold_mean_apgr']:.3f} / {row['learned_pooled_apgr']:.3f}")
    for name, m in ROUTELLM_MMLU.items():
        print(f"{'RouteLLM ' + name:40s} {m['apgr']:>14.3f} {m['cpt50']:>10.1%} {m['cpt80']:>10.1%} {'':>10s}")
    timing = result["timing_provisional"]
    assert isinstance(timing, dict)
    print(
        f"decision after embedding: p50 {timing['decision_us_p50']:.0f} µs, p99 {timing['decision_us_p99']:.0f} µs; "
        f"embedding one prompt p50 {timing['embed_us_p50']:.0f} µs (provisional)"
    )


if __name__ == "__main__":
    main()
