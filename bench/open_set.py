"""Open-set assignment: share of known traffic assigned against purity and absorbed novelty.

Usage: python bench/open_set.py [--out docs/benchmarks.md] [--cache DIR]

The service assigns an utterance to a known intent only when
:class:`dialin.models.OpenSetMatcher` says it belongs there; everything else is buffered
as possible novelty. This script measures the trade-off the matcher's settings make, on
a catalog that is perfect by construction (exemplars drawn from gold intents), so what
is measured is the assignment rule alone:

* 60 intents are *known* (half of their rows give the exemplars, the other half are
  queries), 17 are *unknown* (all their rows are queries: they should be buffered);
* ``known assigned``: share of known queries assigned to some intent; ``correct``: of
  those, share assigned to their own intent; ``unknown absorbed``: share of unknown
  queries assigned to a known intent (novelty the service would never see).

Tuning grid on BANKING77 *train* (tuning data); the service's default (its settings), and the centroid
rule the service used before (nearest centroid at cosine >= 0.6), on BANKING77 *test*
(held out). The intents are split with a fixed seed. Then the same default, not re-tuned,
on the two halves of CrossWOZ val (Chinese, ``lsa`` fitted on the half it is measured on,
as the service fits it on its ``DIALIN_EMBEDDER_FIT_FILE``): whether the rule carries over
to another language and another embedding space.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from dialin.models import OpenSetMatcher, get_embedder
from dialin.models._vectors import unit
from dialin.streams.settings import Settings

from _data import HALVES, banking77, crosswoz
from _doc import markers, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION = "open-set"
N_UNKNOWN = 17
DIM_BYTES = 4  # float32


def split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(exemplar rows, known query rows, unknown query rows)."""
    rng = np.random.default_rng(seed)
    intents = rng.permutation(np.unique(labels))
    unknown = set(intents[:N_UNKNOWN].tolist())
    ex, known = [], []
    for c in intents[N_UNKNOWN:]:
        rows = rng.permutation(np.flatnonzero(labels == c))
        ex.append(rows[: len(rows) // 2])
        known.append(rows[len(rows) // 2:])
    unk = np.flatnonzero(np.isin(labels, list(unknown)))
    return np.concatenate(ex), np.concatenate(known), unk


def measure(assign, X: np.ndarray, labels: np.ndarray, known: np.ndarray, unk: np.ndarray) -> dict:
    got_known = assign(X[known])
    got_unk = assign(X[unk])
    hit = np.array([g is not None for g in got_known])
    right = np.array([g == labels[r] for g, r in zip(got_known, known)])
    return {"known_assigned": float(hit.mean()),
            "correct": float(right[hit].mean()) if hit.any() else float("nan"),
            "unknown_absorbed": float(np.mean([g is not None for g in got_unk]))}


def centroid_rule(X: np.ndarray, labels: np.ndarray, ex: np.ndarray, threshold: float):
    names = sorted(set(labels[ex].tolist()))
    C = unit(np.vstack([X[ex][labels[ex] == c].mean(axis=0) for c in names]), np.float32)

    def assign(Q):
        S = Q @ C.T
        best = S.argmax(axis=1)
        return [names[b] if S[i, b] >= threshold else None for i, b in enumerate(best)]
    return assign


def matcher_rule(X, labels, ex, **params):
    m = OpenSetMatcher(**params).fit(X[ex], labels[ex])
    return lambda Q: m.match(Q)[0]


def row(name: str, r: dict) -> str:
    return (f"| {name} | {100 * r['known_assigned']:.0f}% | {100 * r['correct']:.1f}% | "
            f"{100 * r['unknown_absorbed']:.0f}% |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--cache", default=os.environ.get("DIALIN_EMBEDDING_CACHE_DIR"),
                        help="embedding cache folder (optional)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    emb = get_embedder("minilm", cache_dir=args.cache)
    s = Settings()
    default = OpenSetMatcher(n_neighbors=s.match_neighbors, vote_share=s.match_vote_share,
                             quantile=s.match_quantile, max_exemplars=s.match_exemplars,
                             min_score=s.match_threshold)
    grid = {"quantile": [0.02, 0.05, 0.1], "vote_share": [0.6, 0.7, 0.8],
            "max_exemplars": [32, 64, 128]}
    lines = []
    results = {}
    for split_name in ("train", "test"):
        texts, labels = banking77(args.data, split_name)
        print(f"{split_name}: embedding {len(texts)} utterances", file=sys.stderr, flush=True)
        X = unit(np.asarray(emb.encode(texts), np.float32), np.float32)
        ex, known, unk = split(labels, args.seed)
        res = {}
        for t in (0.6, 0.7):
            res[f"nearest centroid, cosine >= {t}"] = measure(centroid_rule(X, labels, ex, t),
                                                             X, labels, known, unk)
        combos = itertools.product(*grid.values()) if split_name == "train" else [
            (default.quantile, default.vote_share, default.max_exemplars)]
        combos = [(q, v, m, default.min_score) for q, v, m in combos]
        if split_name == "train":
            combos += [(default.quantile, default.vote_share, default.max_exemplars, floor)
                       for floor in (0.0, 0.5, 0.7) if floor != default.min_score]
        for q, v, m, floor in combos:
            name = f"kNN, quantile {q}, vote share {v}, {m} exemplars, floor {floor}"
            res[name] = measure(matcher_rule(X, labels, ex, quantile=q, vote_share=v,
                                             max_exemplars=m, min_score=floor,
                                             n_neighbors=default.n_neighbors),
                                X, labels, known, unk)
            print(row(name, res[name]), file=sys.stderr, flush=True)
        results[split_name] = res
    for half in HALVES:
        texts, labels, _ = crosswoz(args.data, half)
        print(f"CrossWOZ {half}: embedding {len(texts)} utterances (lsa)", file=sys.stderr, flush=True)
        X = unit(np.asarray(get_embedder("lsa").fit(texts).encode(texts), np.float32), np.float32)
        ex, known, unk = split(labels, args.seed)
        res = {f"nearest centroid, cosine >= {t}": measure(centroid_rule(X, labels, ex, t),
                                                          X, labels, known, unk)
               for t in (0.6, 0.7)}
        res["kNN, the default"] = measure(matcher_rule(X, labels, ex, **default.get_params()),
                                           X, labels, known, unk)
        for k, v in res.items():
            print(row(k, v), file=sys.stderr, flush=True)
        results[f"crosswoz-{half}"] = res
    start, end = markers(SECTION)
    d = 384
    per_1000 = 1000 * default.max_exemplars * d * DIM_BYTES / 2 ** 20
    chosen = (f"kNN, quantile {default.quantile}, vote share {default.vote_share}, "
              f"{default.max_exemplars} exemplars, floor {default.min_score}")
    lines = [start, "## Open-set assignment: assigned share against purity (`bench/open_set.py`)", "",
             "Produced by `python bench/open_set.py`. A perfect catalog by construction: 60 intents "
             f"known (half their rows are exemplars, half queries), {N_UNKNOWN} unknown (should be "
             "buffered). Known assigned: share of known queries assigned; correct: of those, "
             "share assigned to their own intent; unknown absorbed: share of unknown queries "
             "assigned to a known intent. MiniLM embeddings.", "",
             f"Default ({chosen}, `n_neighbors` {default.n_neighbors}, `n_score` {default.n_score}) "
             f"costs {default.max_exemplars} x {d} float32 per intent: "
             f"{per_1000:.0f} MiB per 1,000 intents in every worker (and on the catalog topic).", "",
             "BANKING77 train (tuning data; the grid the default was chosen from):", "",
             "| rule | known assigned | correct | unknown absorbed |", "|---|---:|---:|---:|"]
    lines += [row(k, v) for k, v in results["train"].items()]
    lines += ["", "BANKING77 test (held out):", "",
              "| rule | known assigned | correct | unknown absorbed |", "|---|---:|---:|---:|"]
    lines += [row(k, v) for k, v in results["test"].items()]
    for half in HALVES:
        lines += ["", f"CrossWOZ val, {half} half (Chinese, `lsa`; the default above, not re-tuned; "
                  f"{N_UNKNOWN} of its intents unknown):", "",
                  "| rule | known assigned | correct | unknown absorbed |", "|---|---:|---:|---:|"]
        lines += [row(k, v) for k, v in results[f"crosswoz-{half}"].items()]
    lines += ["", f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
              f"{time.strftime('%Y-%m-%d')}.", end]
    write_section(args.out, SECTION, "\n".join(lines))


if __name__ == "__main__":
    main()
