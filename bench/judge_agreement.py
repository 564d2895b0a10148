"""How often the offline heuristic judge agrees with the oracle's truth, on BANKING77 train.

Usage: OMP_NUM_THREADS=1 python bench/judge_agreement.py [--data ../shared/data]
       [--n 3000] [--seeds 0 1 2] [--out docs/benchmarks.md]

The question a judge answers is "is this cluster one intent?". The oracle's truth (what
``OracleJudge`` answers when it does not err) is: one gold label covers at least 90% of
the members. For each seed this draws ``--n`` utterances of BANKING77 *train* (the test
split is kept for the quality benchmarks; the heuristic is neither tuned nor reported on
it here), embeds them with the packaged MiniLM (cached in ``.bench-cache``), prepares a
``HeuristicJudge`` on them, cuts them with k-means at several cluster counts (k = 20 to
320, doubling) and asks the judge about every cluster of two or more members. Reported:
accuracy against the truth, next to always answering the majority verdict (the floor a
judge must beat), and the precision and recall of its Good verdicts.

Writes its section of ``docs/benchmarks.md`` between ``<!-- judgeagreement:start -->``
and ``<!-- judgeagreement:end -->`` and leaves every other byte alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from _data import banking77
from _doc import markers, provenance, write_section

from dialin.models import ClusterView, HeuristicJudge, cluster

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
CACHE = ROOT / ".bench-cache"
START, END = markers("judgeagreement")
KS = (20, 40, 80, 160, 320)
PURITY = 0.9  # OracleJudge's default


def run_seed(texts: list[str], labels: np.ndarray, n: int, seed: int) -> dict:
    from dialin.models import CachedEmbedder, get_embedder

    pick = np.random.default_rng(seed).permutation(len(texts))[:n]
    sub = [texts[i] for i in pick]
    _, codes = np.unique(labels[pick], return_inverse=True)
    X = CachedEmbedder(get_embedder("minilm"), CACHE).encode(sub)
    judge = HeuristicJudge()
    judge.prepare(X, sub)
    views, truth = [], []
    for k in KS:
        assigned = cluster(X, k, random_state=seed)
        for c in range(assigned.max() + 1):
            members = np.flatnonzero(assigned == c)
            if members.size >= 2:
                views.append(ClusterView(members=tuple(int(i) for i in members), texts=()))
                truth.append(np.bincount(codes[members]).max() >= PURITY * members.size)
    truth = np.array(truth)
    good = np.array([v.good for v in judge.judge(views)])
    return {"seed": seed, "clusters": len(views), "truth_good": float(truth.mean()),
            "accuracy": float((good == truth).mean()),
            "majority": float(max(truth.mean(), 1 - truth.mean())),
            "precision": float(truth[good].mean()) if good.any() else float("nan"),
            "recall": float(good[truth].mean()) if truth.any() else float("nan")}


def section(results: list[dict], n: int) -> str:
    mean = {key: float(np.mean([r[key] for r in results]))
            for key in ("accuracy", "majority", "precision", "recall")}
    lines = [START, "## Heuristic judge against the oracle's truth (`bench/judge_agreement.py`)", "",
             f"{n:,} BANKING77 train utterances per seed (MiniLM), k-means at k = "
             f"{', '.join(map(str, KS))}; every cluster of two or more is asked. Truth: one gold "
             f"label covers at least {PURITY:.0%} of it (the oracle judge's rule). \"Majority\" "
             "always answers the more common verdict. BANKING77 train is the tuning split (the "
             "heuristic's defaults are chosen on train subsets), so this is agreement on data "
             "like the data it was tuned on, not a held-out figure.", "",
             "| seed | clusters | truly Good | accuracy | majority | precision (Good) | recall (Good) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['seed']} | {r['clusters']:,} | {r['truth_good']:.0%} | {r['accuracy']:.0%} | "
              f"{r['majority']:.0%} | {r['precision']:.0%} | {r['recall']:.0%} |" for r in results]
    lines += [f"| mean | | | {mean['accuracy']:.0%} | {mean['majority']:.0%} | {mean['precision']:.0%} | "
              f"{mean['recall']:.0%} |", "",
              provenance(), END]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--n", type=int, default=3000, help="utterances per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=DOC)
    args = parser.parse_args()
    texts, labels = banking77(args.data, "train")
    results = [run_seed(texts, labels, args.n, seed) for seed in args.seeds]
    for r in results:
        print(json.dumps(r))
    write_section(args.out, "judgeagreement", section(results, args.n))


if __name__ == "__main__":
    main()
