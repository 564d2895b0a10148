"""LLM calls per discovered intent: the paper's Algorithm 1, with the cache, with pruning,
and the budget strategy, on BANKING77 test.

The paper's Algorithm 1 fits every candidate cluster count and asks the LLM about every
cluster of every fit. This benchmark counts what that costs and what the engine saves:

* (a) Algorithm 1 as the paper runs it, fitted with no verdict cache at all: every
  question asked reaches the judge, which draws a fresh error for each (its own fit,
  so its quality is measured, not copied from (b));
* (b) the same strategy with the verdict cache: only distinct questions are sent;
* (c) the cache + search-space pruning (§6.4.2) by :class:`HeuristicPruner`: iteration 1
  fits the whole grid, later ones the pruner's 5 proposals;
* (d) the budget strategy at 0.3 judge calls per utterance (the engine's default);
* (b') and (d'): (b) and (d) with the stricter simulated judge.

The judges are simulated judges that know the gold labels, not LLMs: ``OracleJudge``
reads every member of a cluster and errs with probability 0.04 afresh at every call;
``SampledOracleJudge`` (the stricter one) reads only the prompt's sample, gives the same
answer to the same prompt and is lenient with nearly pure Bad samples.

(a)-(c) and (b') use the paper strategy as shipped (``LLMITLClustering`` defaults: coverage
selection + judged union merge) over a wide search space like the paper's Table 10:
``--grid`` counts spaced geometrically from n/150 to n/4 (16 by default; with the
estimator's derived 6-count grid, 5 proposals would prune almost nothing). A gold intent
is *discovered* when it is the majority label of at least one cluster.

Usage::

    OMP_NUM_THREADS=1 python bench/llm_calls.py               # 3 seeds, about 10 minutes on 2 cores
    python bench/llm_calls.py --seeds 0 --grid 8               # a quick look

Writes its section of ``docs/benchmarks.md`` between ``<!-- llmcalls:start -->`` and
``<!-- llmcalls:end -->`` (appended if absent) and leaves every other byte alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from _data import banking77
from _doc import markers, write_section

from dialin.models import Judge

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
CACHE = ROOT / ".bench-cache"
START, END = markers("llmcalls")
#: The simulated judges' accuracy (the paper's fine-tuned judges agree with annotators
#: about 96% of the time) and the budget strategy's judge calls per utterance.
ACCURACY, BUDGET = 0.96, 0.3
ROWS = {
    "a": "(a) Algorithm 1 as in the paper: no cache, `OracleJudge`",
    "b": "(b) Algorithm 1 + verdict cache, `OracleJudge`",
    "c": "(c) Algorithm 1 + cache + HeuristicPruner, `OracleJudge`",
    "d": f"(d) budget strategy, {BUDGET} calls/utterance, `OracleJudge`",
    "b2": "(b') Algorithm 1 + verdict cache, `SampledOracleJudge`",
    "d2": f"(d') budget strategy, {BUDGET} calls/utterance, `SampledOracleJudge`",
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load(data: Path) -> tuple[list[str], list[str], np.ndarray]:
    """BANKING77 test texts, gold intents and MiniLM embeddings (cached on disk)."""
    from dialin.models import CachedEmbedder, get_embedder

    texts, gold = banking77(data, "test")
    y = gold.tolist()
    X = CachedEmbedder(get_embedder("minilm"), CACHE).encode(texts)
    return texts, y, X


def discovered(y: list[str], labels: np.ndarray) -> int:
    """Gold intents that are the majority label of at least one cluster."""
    y = np.asarray(y, dtype=object)
    found = set()
    for c in np.unique(labels):
        values, counts = np.unique(y[labels == c], return_counts=True)
        found.add(values[np.argmax(counts)])
    return len(found)


class Uncached(Judge):
    """``judge`` with no verdict cache: each question gets a key of its own, so the
    ledger never finds it again and every question asked reaches the judge."""

    def __init__(self, judge: Judge) -> None:
        self.judge_ = judge
        self.backend = judge.backend
        self.default_budget = judge.default_budget
        self.deterministic = judge.deterministic
        self._asked = 0

    def prepare(self, X: np.ndarray, texts) -> None:
        self.judge_.prepare(X, texts)

    def cache_key(self, view) -> tuple:
        self._asked += 1
        return ("uncached", self._asked)

    def judge(self, views):
        return self.judge_.judge(views)


def wide_grid(n: int, steps: int) -> list[int]:
    return sorted({int(k) for k in np.round(np.geomspace(n / 150, n / 4, steps))})


def ledger_figures(est) -> tuple[int, int]:
    """(questions asked, LLM calls sent) of a fitted strategy."""
    summary = est.ledger_summary_
    return summary["judge_calls"] + summary["cache_hits"], summary["judge_calls"]


def run_seed(texts, y, X, seed: int, grid: list[int]) -> dict[str, dict]:
    from dialin.models import (BudgetITLClustering, HeuristicPruner, LLMITLClustering,
                               OracleJudge, SampledOracleJudge, ari, nmi)

    def judge():
        return OracleJudge(y, accuracy=ACCURACY, random_state=seed)

    def stricter():
        return SampledOracleJudge(y, accuracy=ACCURACY, random_state=seed)

    fits = {}
    for key, est in (
            ("a", LLMITLClustering(Uncached(judge()), candidates=grid, random_state=seed)),
            ("b", LLMITLClustering(judge(), candidates=grid, random_state=seed)),
            ("c", LLMITLClustering(judge(), candidates=grid, pruner=HeuristicPruner(),
                                   random_state=seed)),
            ("d", BudgetITLClustering(judge(), budget=BUDGET, random_state=seed)),
            ("b2", LLMITLClustering(stricter(), candidates=grid, random_state=seed)),
            ("d2", BudgetITLClustering(stricter(), budget=BUDGET, random_state=seed))):
        started = time.perf_counter()
        est.fit(X, texts=texts)
        fits[key] = (est, time.perf_counter() - started)
        log(f"seed {seed} {key}: {time.perf_counter() - started:.0f}s")
    out = {}
    for key, (est, seconds) in fits.items():
        questions, sent = ledger_figures(est)
        labels = np.asarray(est.labels_)
        out[key] = {"questions": questions, "sent": sent, "clusters": len(np.unique(labels)),
                    "discovered": discovered(y, labels), "nmi": nmi(y, labels),
                    "ari": ari(y, labels), "fits": len(est.log_),
                    "seconds": seconds}
    # What each simulated judge is, for the section's text (read from the judges).
    out["judges"] = {"oracle": judge().describe(), "sampled": stricter().describe()}
    return out


def section(results: list[dict], seeds: list[int], grid: list[int], command: str, n: int,
            n_intents: int) -> str:
    oracle, sampled = results[0]["judges"]["oracle"], results[0]["judges"]["sampled"]
    lines = [
        START,
        "## LLM calls per discovered intent",
        "",
        f"BANKING77 test ({n:,} utterances, {n_intents} intents), MiniLM embeddings, seeds "
        f"{', '.join(map(str, seeds))}; mean (min-max) over seeds. The judges are **simulated "
        "judges that know the gold labels, not LLMs**: `OracleJudge` reads every member of "
        f"a cluster, calls it Good when one gold label covers >= {oracle['purity']:.0%} of it "
        f"and is wrong with probability {1 - oracle['accuracy']:.2f}, drawn afresh at every "
        f"call; `SampledOracleJudge` (stricter, accuracy {sampled['accuracy']}) reads only "
        "the gold labels of the prompt's sample, gives the same answer to the same prompt, "
        f"and calls a nearly pure Bad sample (dominant label >= {sampled['near_purity']:.0%}, "
        f"< {sampled['purity']:.0%}) Good with probability {sampled['leniency']}. "
        "*Judge questions*: every cluster a strategy asks about; *LLM calls sent*: what "
        "reaches the judge; *discovered*: gold intents that are the majority of at least one "
        "cluster. (a)-(c) and (b') are `LLMITLClustering` (shipped defaults) over a search "
        f"space of {len(grid)} counts ({grid[0]}..{grid[-1]}, geometric, like the paper's "
        "Table 10); *fits* is clusterings fitted. (a) is its own fit with no verdict cache: "
        "every question reaches the judge, which errs afresh each time.",
        "",
        "| run | judge questions | LLM calls sent | clusters | intents discovered "
        "| calls / discovered intent | NMI | ARI | fits |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def cell(key: str, field: str, fmt: str) -> str:
        values = [r[key][field] for r in results]
        mean = format(float(np.mean(values)), fmt)
        if len(values) == 1:
            return mean
        return f"{mean} ({format(min(values), fmt)}-{format(max(values), fmt)})"

    for key in ROWS:
        for r in results:
            r[key]["per_intent"] = r[key]["sent"] / max(r[key]["discovered"], 1)
        lines.append(f"| {ROWS[key]} | {cell(key, 'questions', ',.0f')} | "
                     f"{cell(key, 'sent', ',.0f')} | {cell(key, 'clusters', '.0f')} | "
                     f"{cell(key, 'discovered', '.0f')} | {cell(key, 'per_intent', '.1f')} | "
                     f"{cell(key, 'nmi', '.3f')} | {cell(key, 'ari', '.3f')} | "
                     f"{cell(key, 'fits', '.0f') if not key.startswith('d') else '-'} |")
    lines += ["", reading(results), "", f"Produced by `{command}`.", END]
    return "\n".join(lines)


def reading(results: list[dict]) -> str:
    """The prose under the table: every figure in it computed from ``results``."""
    def mean(key: str, field: str) -> float:
        return float(np.mean([r[key][field] for r in results]))

    def fewer(new: str, old: str, field: str, noun: str) -> str:
        change = 1 - mean(new, field) / mean(old, field)
        return f"{abs(change):.0%} {'fewer' if change >= 0 else 'more'} {noun}"

    def nmi_change(new: str, old: str) -> str:
        return f"{mean(new, 'nmi') - mean(old, 'nmi'):+.3f}"

    return (
        f"Reading (means over seeds): the verdict cache sends {fewer('b', 'a', 'sent', 'calls')} "
        f"than Algorithm 1 without one (b vs a; NMI {nmi_change('b', 'a')}). Pruning fits "
        f"{fewer('c', 'b', 'fits', 'clusterings')}, asks {fewer('c', 'b', 'questions', 'questions')} "
        f"and sends {fewer('c', 'b', 'sent', 'calls')} than (b) (NMI {nmi_change('c', 'b')}). "
        f"The budget strategy sends {fewer('d', 'b', 'sent', 'calls')} than (b) "
        f"(NMI {nmi_change('d', 'b')}). With the stricter judge, NMI changes by "
        f"{nmi_change('b2', 'b')} for Algorithm 1 (b' vs b) and by {nmi_change('d2', 'd')} for "
        "the budget strategy (d' vs d). `SampledOracleJudge`'s answer is a function of the "
        "question alone, so without the cache it would reach the same verdicts as (b') and "
        "send every question it asks."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--grid", type=int, default=16, help="counts in the search space")
    parser.add_argument("--out", type=Path, default=DOC)
    args = parser.parse_args()
    texts, y, X = load(args.data)
    grid = wide_grid(len(texts), args.grid)
    results = [run_seed(texts, y, X, seed, grid) for seed in args.seeds]
    print(json.dumps(results))
    command = "OMP_NUM_THREADS=1 python bench/llm_calls.py " + " ".join(sys.argv[1:])
    write_section(args.out, "llmcalls", section(results, args.seeds, grid, command.strip(),
                                                len(texts), len(set(y))))


if __name__ == "__main__":
    main()
