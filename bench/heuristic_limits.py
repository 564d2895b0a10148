"""Why the offline judge over-splits dense data, and what was tried against it (issue 14).

Writes the section ``heuristic-limits`` of ``docs/benchmarks.md``. Tuning data only: the
six subsets of BANKING77 *train* (``bench/_data.py``), MiniLM, the shipped offline default
(``BudgetITLClustering`` with the heuristic judge at its default budget).

1. **The union questions the judge answers inside the shipped fit** (the first seed). Each
   question's two sides get their majority gold intent (read here, never by the judge).
   For unions whose smaller side has 12 rows or more and whose sides are each at least
   half one intent: how well the judge's link ratio ranks same-intent unions above
   different-intent ones (AUC), its median for each, the ratio above which this judge
   accepts (its reference percentile), the threshold that would separate them best on
   that subset (Youden's J: it reads the labels, so it is a yardstick, not a setting),
   and the share of each kind the judge accepted.
2. **Ablations**, NMI / ARI / clusters per subset and seed, each a label-free change:

   * *boundary gap*: unions whose sides both have 12 rows or more are judged by how much
     closer the boundary members (the quarter of each side nearest the other) are to
     their own side's nearest member than to the other side's (cosine), ranked against
     the same reference siblings as the link ratio: a statistic that does not change
     with how densely an intent is sampled;
   * *size-matched reference*: the link ratio ranked among reference sibling pairs of
     the union's size (sizes 4 to 60) instead of sizes 8 and 15;
   * *merged to the estimate*: after the fit, the most-linked groups are merged past the
     judge's refusals until 1.25 times the cosine-cut estimate of the number of
     intents is left (``dialin.models.estimate_n_intents``);
   * *fixed scale*: a union whose smaller side has at least twice ``SCALE`` rows is
     judged on a nested random sample of the data (a half, a quarter, ...) where that
     side keeps about ``SCALE`` rows, with the link graph built on the sample: the link
     ratio of two large parts measured as if the data were sampled as sparsely as the
     reference pairs (sizes 8 and 15) are, whatever its density.

The judges of the ablations subclass the shipped one here; nothing of this ships.

Usage: ``OMP_NUM_THREADS=1 python bench/heuristic_limits.py [--seeds 0 1] [--out docs/benchmarks.md]``
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
from collections import Counter
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from dialin.models import BudgetITLClustering, HeuristicJudge, estimate_n_intents
from dialin.models._vectors import nearest_rows
from dialin.models.judges._heuristic import _K_LINKS, _PAIR_SIZES, _sides
from _data import banking77, train_subsets
from _doc import markers, provenance, write_section
from quality import budget, embed, heuristic, log, scores

ROOT = Path(__file__).resolve().parents[1]
SECTION = "heuristic-limits"
LARGE = 12  # a union's smaller side from this size on is "large"
PURE = 0.5  # each side at least this share one gold intent
MERGE_TO = 1.25  # x the cosine-cut estimate, for the forced merges
SCALE = 15  # fixed scale: the smaller side's rows in the sample (the larger reference size)
VARIANTS = ("shipped", "boundary gap", "size-matched reference", "merged to the estimate",
            "fixed scale")


# ----------------------------------------------------------------- judges
def boundary_gap(X: np.ndarray, a: np.ndarray, b: np.ndarray, share: float = 0.25) -> float:
    """Mean cosine of each boundary member to the other side minus to its own side (the
    nearest member each time); the boundary is the ``share`` of a side nearest the other."""
    cross = X[a] @ X[b].T
    gaps = []
    for rows, to_other in ((a, cross.max(1)), (b, cross.max(0))):
        within = X[rows] @ X[rows].T
        np.fill_diagonal(within, -np.inf)
        k = max(1, int(np.ceil(share * rows.size)))
        edge = np.argsort(-to_other)[:k]
        gaps.append(float(to_other[edge].mean() - within.max(1)[edge].mean()))
    return float(np.mean(gaps))


class BoundaryGapJudge(HeuristicJudge):
    """The shipped judge; a large union is judged by its boundary gap instead."""

    def prepare(self, X, texts=None):
        super().prepare(X, texts)
        gaps = [boundary_gap(self.X_, a, b) for size, parts in self._reference_partitions()
                if size in _PAIR_SIZES for a, b, _ in _siblings(self, parts)]
        self.ref_gaps_ = np.sort(np.asarray(gaps))

    def _union_score(self, a, b):
        if min(a.size, b.size) < LARGE or self.ref_gaps_.size == 0:
            return super()._union_score(a, b)
        gap = boundary_gap(self.X_, a, b)
        return float(np.searchsorted(self.ref_gaps_, gap, side="right") / self.ref_gaps_.size)


class SizeMatchedJudge(HeuristicJudge):
    """The shipped judge; the link ratio is ranked among reference pairs of its size."""

    def prepare(self, X, texts=None):
        super().prepare(X, texts)
        pairs = [(ratio, min(a.size, b.size))
                 for _, parts in self._reference_partitions() for a, b, ratio in _siblings(self, parts)]
        self.sized_ = np.asarray(pairs, dtype=np.float64).reshape(-1, 2)

    def _union_score(self, a, b):
        distance = np.abs(np.log(self.sized_[:, 1]) - np.log(min(a.size, b.size)))
        near = distance <= np.log(1.5)
        if near.sum() < 50:
            near = np.argsort(distance, kind="stable")[:50]
        return float(np.mean(self.sized_[near, 0] <= self._link_ratio(a, b)[0]))


class FixedScaleJudge(HeuristicJudge):
    """The shipped judge; a large union's link ratio is measured on a sample of the data
    where its smaller side has about ``SCALE`` rows (one nested sample per halving, each
    with its own link graph, built when first needed)."""

    def prepare(self, X, texts=None):
        super().prepare(X, texts)
        self.rank_ = np.random.RandomState(self.random_state).permutation(len(self.X_))
        self.samples_ = {}

    def _sample(self, halvings: int) -> tuple[np.ndarray, int]:
        """The link graph of the rows whose rank is below n / 2**halvings (-1 elsewhere)."""
        if halvings not in self.samples_:
            cut = len(self.X_) >> halvings
            keep = np.flatnonzero(self.rank_ < cut)
            graph = np.full((len(self.X_), _K_LINKS), -1, np.int64)
            nb = nearest_rows(self.X_[keep], _K_LINKS)
            graph[keep, :nb.shape[1]] = keep[nb]
            self.samples_[halvings] = (graph, cut)
        return self.samples_[halvings]

    def _union_score(self, a, b):
        halvings = int(np.floor(np.log2(min(a.size, b.size) / SCALE)))
        for h in range(halvings, 0, -1):  # a coarser sample when a side keeps too few rows
            graph, cut = self._sample(h)
            aa, bb = a[self.rank_[a] < cut], b[self.rank_[b] < cut]
            if min(aa.size, bb.size) >= SCALE // 2:
                full, self.neighbours_ = self.neighbours_, graph
                try:
                    return super()._union_score(aa, bb)
                finally:
                    self.neighbours_ = full
        return super()._union_score(a, b)


def _siblings(judge, parts):
    """``(a, b, link ratio)`` for every two clusters of one reference partition joined by
    a neighbour edge (the pairs the shipped judge's union reference is made of)."""
    parts = [m for m in parts if m.size >= 2]
    for i, a in enumerate(parts):
        for b in parts[i + 1:]:
            ratio, cross = judge._link_ratio(a, b)
            if cross > 0:
                yield a, b, ratio


def merged_to(X: np.ndarray, labels: np.ndarray, target: int) -> np.ndarray:
    """Merge the most-linked groups (the engine's own link score) until ``target`` are left."""
    from dialin.models.cluster._budget import _Groups, _group_edges

    groups = [np.flatnonzero(labels == c) for c in np.unique(labels[labels >= 0])]
    owner = np.full(len(X), -1)
    for g, rows in enumerate(groups):
        owner[rows] = g
    state = _Groups(groups, X, _group_edges(X, owner, 10))
    heap = [(-state.link_score(a, b), a, b) for a, b in state.linked_pairs(None)]
    heapq.heapify(heap)
    while len(state.members) > target and heap:
        neg, a, b = heapq.heappop(heap)
        if a in state.members and b in state.members and -neg == state.link_score(a, b):
            g = state.join(a, b)
            for pair in state.linked_pairs(g):
                heapq.heappush(heap, (-state.link_score(*pair), *pair))
    out = np.full(len(X), -1)
    for c, rows in enumerate(state.members.values()):
        out[rows] = c
    return out


#: The ablations that change the judge; the forced merges reuse the shipped fit.
JUDGES = {"boundary gap": BoundaryGapJudge, "size-matched reference": SizeMatchedJudge,
          "fixed scale": FixedScaleJudge}


# ------------------------------------------------------------------- runs
def load(name: str):
    texts, y = banking77(ROOT.parent / "shared" / "data", "train")
    X, _ = embed("minilm", texts)
    rows = dict(train_subsets(y))[name]
    return X[rows], y[rows], [texts[i] for i in rows]


def shipped_fit(job: tuple[str, int]) -> dict:
    """The shipped fit on one subset and seed: its scores, the union questions it asked
    (with the gold intents of their sides), and its labels merged to the estimate."""
    name, seed = job
    X, y, texts = load(name)
    judge = heuristic(seed)
    asked = []
    answer = judge.judge

    def recording(views):
        verdicts = answer(views)
        for view, verdict in zip(views, verdicts):
            sides = _sides(view)
            if len(sides) == 2 and min(s.size for s in sides) >= 2:
                a, b = sides
                (ga, na), (gb, nb) = Counter(y[a]).most_common(1)[0], Counter(y[b]).most_common(1)[0]
                asked.append((a.size, b.size, judge._link_ratio(a, b)[0], ga == gb,
                              min(na / a.size, nb / b.size), verdict.is_good))
        return verdicts

    judge.judge = recording
    est = budget(judge, None, seed).fit(X, texts=texts)
    target = int(round(MERGE_TO * estimate_n_intents(X, "cosine-cut", random_state=0)))
    merged = merged_to(X, est.labels_, target) if est.n_clusters_ > target else est.labels_
    return {"name": name, "seed": seed, "rows": len(y), "intents": len(set(y)), "asked": asked,
            "accepts_above": float(np.quantile(judge.ref_links_, float(judge.union_quantile))),
            "results": [{"name": name, "variant": "shipped", "seed": seed,
                         **scores(y, est.labels_, est.seconds_)},
                        {"name": name, "variant": "merged to the estimate", "seed": seed,
                         **scores(y, merged, 0.0)}]}


def ablation(job: tuple[str, str, int]) -> dict:
    """One subset and seed fitted with one of the ablation judges (``JUDGES``)."""
    name, variant, seed = job
    X, y, texts = load(name)
    shipped = heuristic(seed)
    judge = JUDGES[variant](quantile=shipped.quantile, union_quantile=shipped.union_quantile,
                            min_size=shipped.min_size, random_state=seed)
    est = BudgetITLClustering(judge, budget=None, random_state=seed).fit(X, texts=texts)
    return {"name": name, "variant": variant, "seed": seed, **scores(y, est.labels_, est.seconds_)}


# ----------------------------------------------------------------- report
def study_rows(found: list[dict]) -> tuple[list[str], list[dict]]:
    from sklearn.metrics import roc_auc_score

    lines, kept = [], []
    for f in found:
        q = np.asarray(f["asked"], dtype=np.float64).reshape(-1, 6)
        large = (np.minimum(q[:, 0], q[:, 1]) >= LARGE) & (q[:, 4] >= PURE)
        ratio, same, good = q[large, 2], q[large, 3] == 1, q[large, 5] == 1
        if same.all() or not same.any():
            lines.append(f"| {f['name']} | {f['rows'] / f['intents']:.0f} | {large.sum()} | "
                         f"{100 * same.mean():.0f}% | – | – | {f['accepts_above']:.3f} | – | – |")
            continue

        def youden(t):
            return (ratio[same] >= t).mean() - (ratio[~same] >= t).mean()

        best = max(np.unique(ratio), key=youden)
        row = {"name": f["name"], "per_intent": f["rows"] / f["intents"], "best": float(best),
               "same": float(np.median(ratio[same])), "different": float(np.median(ratio[~same])),
               "judge": f["accepts_above"], "accept_same": float(good[same].mean()),
               "accept_diff": float(good[~same].mean())}
        kept.append(row)
        lines.append(f"| {f['name']} | {row['per_intent']:.0f} | {large.sum()} | {100 * same.mean():.0f}% | "
                     f"{roc_auc_score(same, ratio):.2f} | {row['same']:.3f} / "
                     f"{row['different']:.3f} | {f['accepts_above']:.3f} | {best:.3f} | "
                     f"{100 * row['accept_same']:.0f}% / {100 * row['accept_diff']:.0f}% |")
    return lines, kept


def _span(rows: list[dict], key: str) -> str:
    return f"{min(r[key] for r in rows):.3f}-{max(r[key] for r in rows):.3f}"


def section(found: list[dict], results: list[dict], seeds: list[int]) -> str:
    start, end = markers(SECTION)
    study, kept = study_rows(found)
    names = [f["name"] for f in found]
    by = {(r["name"], r["variant"]): [] for r in results}
    for r in results:
        by[(r["name"], r["variant"])].append(r)

    def cell(rs):
        m = {k: float(np.mean([r[k] for r in rs])) for k in ("nmi", "ari", "n_clusters")}
        return f"{m['nmi']:.3f} / {m['ari']:.3f} / {m['n_clusters']:.0f}"

    ablate = [f"| {n} | " + " | ".join(cell(by[(n, v)]) for v in VARIANTS) + " |" for n in names]
    sparse = [k for k in kept if k["per_intent"] <= 40]
    dense = [k for k in kept if k["per_intent"] > 40]
    counts = []
    for v in VARIANTS[1:]:
        gain = [np.mean([r["nmi"] for r in by[(n, v)]]) - np.mean([r["nmi"] for r in by[(n, "shipped")]])
                for n in names]
        counts.append(f"*{v}* raises NMI on {sum(g > 0.005 for g in gain)} of {len(names)} subsets "
                      f"and lowers it on {sum(g < -0.005 for g in gain)} (from {min(gain):+.3f} to "
                      f"{max(gain):+.3f})")
    reading = (
        f"Reading: within one subset the link ratio ranks same-intent unions above different-intent "
        f"ones well (AUC above), but the ratio two large parts of one intent have falls as the intent "
        f"is sampled more densely: its median is {_span(sparse, 'same')} on the subsets of 40 "
        f"utterances per intent or fewer and {_span(dense, 'same')} on the denser ones (different "
        f"intents: {_span(kept, 'different')}), while the judge accepts above {_span(kept, 'judge')} "
        f"on all of them. So on the dense subsets it accepted "
        f"{100 * min(k['accept_same'] for k in dense):.0f}-{100 * max(k['accept_same'] for k in dense):.0f}% "
        f"of the same-intent unions (the best threshold there is {_span(dense, 'best')}), which "
        "leaves each dense intent in several groups. Nothing the judge sees tells it which threshold "
        "a subset needs: it does not know how many utterances each intent has. In the ablations "
        + "; ".join(counts) + " (changes within ±0.005 counted as none). The boundary gap does not "
        "change with density, but it also accepts unions of different intents that the link ratio "
        "refuses, which costs the sparse subsets what it gains on the dense ones; ranking by size "
        "compares a large union with reference pairs that are mostly different intents and "
        "accepts the most linked of them, so every subset collapses; merging past the judge's "
        "refusals joins groups that MiniLM puts close, right on the subsets of few intents and "
        "wrong on those of all 77; measuring a large union on a sample where its smaller side "
        f"keeps about {SCALE} rows raises the link ratio of two parts of one dense intent, but as "
        "much that of two neighbouring intents, which costs the sparse subsets more than it gains "
        "on the dense ones. None of them ships; an LLM judge reads the texts, which is how "
        "the oracle rows of the sizes table end near the true number.")
    return "\n".join([
        start,
        "## Why the offline judge over-splits dense data (`bench/heuristic_limits.py`)",
        "",
        "Tuning data only: the subsets of BANKING77 *train* of the sizes table, MiniLM, the "
        "shipped offline default (heuristic judge, its default budget). First, the union "
        f"questions the judge answered inside the shipped fit (seed {seeds[0]}) whose smaller side has "
        f"{LARGE} rows or more and whose sides are each at least {100 * PURE:.0f}% one gold "
        "intent (the gold intents are read here, never by the judge). *AUC*: how well the "
        "judge's link ratio ranks same-intent unions above different-intent ones; *accepts "
        "above*: the ratio above which this judge says Good (its reference percentile); *best "
        "threshold*: the one that would separate the two kinds best on that subset (Youden's "
        "J; it reads the labels, a yardstick, not a setting).",
        "",
        "| subset | utterances per intent | large unions asked | same intent | AUC | median ratio: "
        "same / different intent | judge accepts above | best threshold (reads labels) | "
        "accepted: same / different intent |",
        "|---|---:|---:|---:|---:|---|---:|---:|---|",
        *study,
        "",
        "Ablations, each a label-free change (the module docstring says how each works): NMI / "
        f"ARI / clusters, mean over seeds {' '.join(map(str, seeds))}.",
        "",
        "| subset | " + " | ".join(VARIANTS) + " |",
        "|---|" + "---|" * len(VARIANTS),
        *ablate,
        "",
        reading,
        "",
        provenance(),
        end,
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    texts, y = banking77(ROOT.parent / "shared" / "data", "train")
    embed("minilm", texts)  # fill the cache once, before the workers read it
    names = [name for name, _ in train_subsets(y)]
    with Pool(2) as pool:
        fits = pool.map(shipped_fit, [(n, s) for n in names for s in args.seeds])
        results = [r for f in fits for r in f.pop("results")]
        results += pool.map(ablation, [(n, v, s) for n in names for v in JUDGES for s in args.seeds])
    for r in results:
        log(f"  {r['name']}, {r['variant']}, seed {r['seed']}: NMI {r['nmi']:.3f}, {r['n_clusters']} clusters")
    found = [f for f in fits if f["seed"] == args.seeds[0]]  # the study reads one seed's fit
    print(json.dumps({"found": [{k: v for k, v in f.items() if k != "asked"} for f in found],
                      "results": results}))
    write_section(args.out, SECTION, section(found, results, args.seeds))


if __name__ == "__main__":
    main()
