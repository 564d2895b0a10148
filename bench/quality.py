"""Clustering quality benchmark: LLM-ITL against the tools an analyst would use instead.

Writes the sections between ``<!-- quality:start -->`` / ``<!-- quality:end -->`` and
``<!-- curve:start -->`` / ``<!-- curve:end -->`` of ``docs/benchmarks.md`` (other sections
are left alone). Every method runs on the same embeddings in the same process:

* k-means told the true number of intents (the baseline of ``dialin evaluate``),
* BERTopic (UMAP + HDBSCAN + ``reduce_outliers``), the peer a user would pick instead,
* ``BudgetITLClustering`` (the default strategy) with the simulated fine-tuned judge
  (``OracleJudge``, 96% accurate, as the paper's Table 3) and with the offline heuristic,
* ``LLMITLClustering`` (the paper's Algorithm 1) with its plain good/bad-ratio rule and
  with our default selection + judged merge,
* the judge-calls-versus-quality curve of the budget strategy (issue 8),
* the same defaults on subsets of BANKING77 train of other sizes and densities.

Usage::

    python bench/quality.py                 # everything (about 15-25 minutes on 2 cores)
    python bench/quality.py --only curve    # one section
    python bench/quality.py --seeds 0 1 2 --data ../shared/data
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from _doc import markers, write_section

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
CACHE = ROOT / ".bench-cache"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ data
def banking77(data: Path):
    import csv

    with open(data / "banking77" / "test.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["category"] for r in rows], None


def crosswoz(data: Path):
    texts, labels, roles = [], [], []
    with open(data / "crosswoz" / "val.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row.get("intent"):
                texts.append(row["text"])
                labels.append(row["intent"])
                roles.append(row["role"])
    return texts, labels, roles


def embed(name: str, texts: list[str]) -> tuple[np.ndarray, float]:
    from dialin.models import CachedEmbedder, get_embedder

    started = time.perf_counter()
    if name == "lsa":
        emb = get_embedder("lsa").fit(texts)
    else:
        emb = CachedEmbedder(get_embedder(name), str(CACHE))
    X = emb.encode(texts)
    return X, time.perf_counter() - started


# --------------------------------------------------------------- methods
def scores(y, labels, seconds, calls=None) -> dict:
    from dialin.models import ari, nmi

    labels = np.asarray(labels)
    out = {"nmi": nmi(y, labels), "ari": ari(y, labels),
           "n_clusters": int(len(np.unique(labels[labels >= 0]))), "seconds": seconds}
    if calls is not None:
        out["calls"] = int(calls)
        out["calls_per_utt"] = calls / len(y)
    return out


def run_kmeans(X, y, seed):
    from dialin.models import cluster

    t = time.perf_counter()
    labels = cluster(X, len(set(y)), "kmeans", random_state=seed)
    return scores(y, labels, time.perf_counter() - t)


def run_bertopic(X, y, texts, seed):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from bertopic import BERTopic
    from hdbscan import HDBSCAN
    from umap import UMAP

    t = time.perf_counter()
    umap = UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=seed)
    hdb = HDBSCAN(min_cluster_size=10, metric="euclidean", cluster_selection_method="eom",
                  prediction_data=True)
    model = BERTopic(umap_model=umap, hdbscan_model=hdb, calculate_probabilities=False)
    topics, _ = model.fit_transform(texts, embeddings=X)
    topics = model.reduce_outliers(texts, topics, strategy="embeddings", embeddings=X)
    return scores(y, topics, time.perf_counter() - t)


def run_itl(estimator, X, y, texts, roles=None):
    from dialin.models import RoleAwareClustering

    t = time.perf_counter()
    if roles is not None:
        est = RoleAwareClustering(estimator, random_state=0).fit(X, texts, roles=roles)
    else:
        est = estimator.fit(X, texts)
    return scores(y, est.labels_, time.perf_counter() - t, est.n_judge_calls_)


def budget(judge, b, seed):
    from dialin.models import BudgetITLClustering

    return BudgetITLClustering(judge, budget=b, random_state=seed)


def oracle(y, acc, seed):
    from dialin.models import OracleJudge

    return OracleJudge(y, accuracy=acc, random_state=seed)


def heuristic(seed):
    """The offline judge exactly as ``dialin evaluate --judge heuristic`` builds it."""
    from dialin.streams.factory import build_judge
    from dialin.streams.settings import Settings

    return build_judge(Settings(judge="heuristic", strategy="budget", random_state=seed))


# --------------------------------------------------------------- report
def mean_range(rows: list[dict], key: str, fmt: str = "{:.3f}") -> str:
    vals = [r[key] for r in rows]
    if len(vals) == 1 or min(vals) == max(vals):
        return fmt.format(vals[0])
    return f"{fmt.format(float(np.mean(vals)))} ({fmt.format(min(vals))}–{fmt.format(max(vals))})"


def table(results: dict[str, list[dict]]) -> str:
    lines = ["| method | NMI | ARI | clusters | judge calls / utterance | seconds |",
             "|---|---|---|---|---|---|"]
    for name, rows in results.items():
        calls = mean_range(rows, "calls_per_utt", "{:.2f}") if "calls_per_utt" in rows[0] else "–"
        lines.append(f"| {name} | {mean_range(rows, 'nmi')} | {mean_range(rows, 'ari')} | "
                     f"{mean_range(rows, 'n_clusters', '{:.0f}')} | {calls} | "
                     f"{mean_range(rows, 'seconds', '{:.0f}')} |")
    return "\n".join(lines)


def replace_section(name: str, body: str) -> None:
    start, end = markers(name)
    write_section(DOC, name, f"{start}\n{body.strip()}\n{end}")
    log(f"wrote section {name!r} of {DOC.relative_to(ROOT)}")


# ----------------------------------------------------------------- main
def quality_section(data: Path, seeds: list[int]) -> str:
    from dialin.models import LLMITLClustering

    texts, y, _ = banking77(data)
    X, secs = embed("minilm", texts)
    log(f"BANKING77 test: {len(texts)} utterances, {len(set(y))} intents, embedded in {secs:.0f}s")
    res: dict[str, list[dict]] = {}

    def add(name, fn):
        for s in seeds:
            r = fn(s)
            res.setdefault(name, []).append(r)
            log(f"  {name} seed {s}: {json.dumps({k: round(v, 3) for k, v in r.items()})}")

    add("k-means told k=77 (baseline)", lambda s: run_kmeans(X, y, s))
    add("BERTopic (HDBSCAN + reduce_outliers)", lambda s: run_bertopic(X, y, texts, s))
    add("LLM-ITL budget 0.3, oracle judge 0.96", lambda s: run_itl(budget(oracle(y, 0.96, s), 0.3, s), X, y, texts))
    add("LLM-ITL budget 0.3, oracle judge 0.90", lambda s: run_itl(budget(oracle(y, 0.90, s), 0.3, s), X, y, texts))
    add("LLM-ITL, heuristic judge (label-free), its default budget 0.6",
        lambda s: run_itl(budget(heuristic(s), None, s), X, y, texts))
    add("paper Algorithm 1, good/bad-ratio rule, oracle 0.96",
        lambda s: run_itl(LLMITLClustering(oracle(y, 0.96, s), selection="ratio", union_merge=False,
                                           min_cluster_size=1, random_state=s), X, y, texts))
    add("paper Algorithm 1, coverage rule + judged merge, oracle 0.96",
        lambda s: run_itl(LLMITLClustering(oracle(y, 0.96, s), random_state=s), X, y, texts))
    english = table(res)

    texts, y, roles = crosswoz(data)
    X, secs = embed("lsa", texts)
    log(f"CrossWOZ val: {len(texts)} single-act utterances, {len(set(y))} intents, lsa in {secs:.0f}s")
    res = {}
    add(f"k-means told k={len(set(y))} (baseline)", lambda s: run_kmeans(X, y, s))
    add("LLM-ITL per role, heuristic judge, its default budget 0.6",
        lambda s: run_itl(budget(heuristic(s), None, s), X, y, texts, roles))
    add("LLM-ITL budget 0.3 per role, oracle judge 0.96", lambda s: run_itl(budget(oracle(y, 0.96, s), 0.3, s), X, y, texts, roles))
    chinese = table(res)
    seed_list = " ".join(map(str, seeds))
    return f"""## Clustering quality

Produced by `python bench/quality.py --only quality --seeds {seed_list}` on the 2-core CPU
machine (numbers are the mean over seeds {seed_list}, range in brackets; seconds are wall
time of the clustering alone, on a machine shared with other jobs). No method is told the
number of intents except the k-means baseline. The oracle judge simulates the paper's
fine-tuned judge (Good when one gold label covers >= 90% of the cluster, the verdict
flipped with probability 1 - accuracy); the heuristic judge is label-free.

**BANKING77 test** (3,080 utterances, 77 intents; MiniLM embeddings):

{english}

**CrossWOZ val, Chinese, two roles** (utterances with exactly one dialogue act; the label
is Act-Domain-Slot; `lsa` character n-gram embeddings; clustered per given role):

{chinese}
"""


def banking77_train(data: Path):
    import csv

    with open(data / "banking77" / "train.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], np.array([r["category"] for r in rows])


def held_out_sets(y: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Row subsets of BANKING77 train that vary size and density (fixed draw, seed 123)."""
    rng = np.random.default_rng(123)
    perm = rng.permutation(len(y))
    intents = rng.permutation(np.unique(y))
    per30 = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:30] for c in np.unique(y)])
    return [
        ("3,000 random utterances, 77 intents", np.sort(perm[:3000])),
        ("30 utterances of each of 77 intents", np.sort(per30)),
        ("6,000 random utterances, 77 intents", np.sort(perm[:6000])),
        ("all 10,003, 77 intents", np.arange(len(y))),
        ("all utterances of 40 intents", np.flatnonzero(np.isin(y, intents[:40]))),
        ("all utterances of 20 intents", np.flatnonzero(np.isin(y, intents[40:60]))),
    ]


def sizes_section(data: Path, seeds: list[int]) -> str:
    from dialin.models import BudgetITLClustering, HeuristicJudge

    texts, y = banking77_train(data)
    X, _ = embed("minilm", texts)
    lines = ["| subset of BANKING77 train | utterances | intents | k-means told k: NMI / ARI | "
             "oracle 0.96, budget 0.3: NMI / ARI / clusters / calls per utt | "
             "heuristic: NMI / clusters |", "|---|---|---|---|---|---|"]
    for name, rows in held_out_sets(y):
        Xs, ys, ts = X[rows], y[rows], [texts[i] for i in rows]
        km, orc, heu = [], [], []
        for s in seeds:
            km.append(run_kmeans(Xs, ys, s))
            orc.append(run_itl(budget(oracle(ys, 0.96, s), 0.3, s), Xs, ys, ts))
            heu.append(run_itl(BudgetITLClustering(HeuristicJudge(union_quantile=0.6, random_state=s),
                                                   random_state=s), Xs, ys, ts))
            log(f"  sizes {name} seed {s}: km {km[-1]['nmi']:.3f} oracle {orc[-1]['nmi']:.3f}/"
                f"{orc[-1]['n_clusters']} heuristic {heu[-1]['nmi']:.3f}/{heu[-1]['n_clusters']}")
        lines.append(f"| {name} | {len(rows):,} | {len(set(ys))} | {mean_range(km, 'nmi')} / "
                     f"{mean_range(km, 'ari')} | {mean_range(orc, 'nmi')} / {mean_range(orc, 'ari')} / "
                     f"{mean_range(orc, 'n_clusters', '{:.0f}')} / "
                     f"{mean_range(orc, 'calls_per_utt', '{:.2f}')} | {mean_range(heu, 'nmi')} / "
                     f"{mean_range(heu, 'n_clusters', '{:.0f}')} |")
    seed_list = " ".join(map(str, seeds))
    return f"""## Other sizes and densities (BANKING77 train)

Produced by `python bench/quality.py --only sizes --seeds {seed_list}`: subsets of the
BANKING77 *train* split (the defaults were tuned on the test split; the whole train
split was used to check the merge passes), MiniLM, the shipped defaults of
`BudgetITLClustering`; mean over seeds {seed_list}, range in brackets.
The heuristic judge is the label-free offline default (its own budget, 0.6).

{chr(10).join(lines)}

Reading: with the oracle, NMI stays above k-means told k at every size and density, by
+0.02 on the sparsest subset (30 utterances per intent) and by +0.08 to +0.12 where
intents are dense. The budget is what limits: at 0.3 calls per utterance, 6,000
utterances of 77 intents end with 106 clusters (+38%, too many merges left unpaid) and
sparse data buys fewer merges than its intents need. The heuristic judge follows the truth
on data as sparse as BANKING77 test (about 40 per intent; 78 clusters here) but
over-splits where intents are dense (100+ utterances each: 2-3x the true count, and on
20 intents NMI below k-means): its union test is calibrated on small pieces of the data
and cannot tell how densely each intent is sampled (a size-matched calibration was
tried: it fixed the dense sets and merged BANKING77 test into 22 clusters). An LLM
judge reads the texts, not the geometry; no LLM could be measured on this machine.
"""


def curve_section(data: Path, seeds: list[int]) -> str:
    texts, y, _ = banking77(data)
    X, _ = embed("minilm", texts)
    budgets = [0.1, 0.2, 0.3, 0.5, 0.75]
    lines = ["| judge accuracy | budget (calls/utt) | calls/utt spent | NMI | ARI | clusters |",
             "|---|---|---|---|---|---|"]
    for acc in (0.96, 0.9):
        for b in budgets:
            rows = []
            for s in seeds:
                rows.append(run_itl(budget(oracle(y, acc, s), b, s), X, y, texts))
                log(f"  curve acc={acc} budget={b} seed={s}: nmi={rows[-1]['nmi']:.3f}")
            lines.append(f"| {acc} | {b} | {mean_range(rows, 'calls_per_utt', '{:.2f}')} | "
                         f"{mean_range(rows, 'nmi')} | {mean_range(rows, 'ari')} | "
                         f"{mean_range(rows, 'n_clusters', '{:.0f}')} |")
    seed_list = " ".join(map(str, seeds))
    return f"""## Judge calls versus quality (budget strategy)

Produced by `python bench/quality.py --only curve --seeds {seed_list}`: BANKING77 test,
MiniLM, `BudgetITLClustering` with the oracle judge at two accuracies, seeds
{seed_list} (mean, range in brackets). For comparison on the same data: k-means told
k=77 and BERTopic are in the table above; the paper's Algorithm 1 spends about 1.1
calls per utterance with its ratio rule and over-splits.

{chr(10).join(lines)}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--only", choices=["quality", "curve", "sizes"], default=None)
    args = ap.parse_args()
    if not (args.data / "banking77" / "test.csv").exists():
        sys.exit(f"bench: no data at {args.data} (pass --data DIR holding banking77/ and crosswoz/)")
    if args.only in (None, "quality"):
        replace_section("quality", quality_section(args.data, args.seeds))
    if args.only in (None, "curve"):
        replace_section("curve", curve_section(args.data, args.seeds))
    if args.only in (None, "sizes"):
        replace_section("sizes", sizes_section(args.data, args.seeds))


if __name__ == "__main__":
    main()
