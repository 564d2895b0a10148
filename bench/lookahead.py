"""Asking the judge ahead: what the budget strategy's ``lookahead`` buys and what it costs.

The growth and merge phases of ``BudgetITLClustering`` decide one question at a time,
each answer changing the next question, so an LLM-judged fit waits one round trip per
question: hundreds per discovery run. With ``lookahead`` L > 1 the next L questions, as
things stand, go to the judge in one batch (the LLM client sends them concurrently) and
the phase reads their answers as it reaches them; a question whose view changed meanwhile
is asked anew, and questions asked ahead but never reached still cost calls. The service
asks an LLM judge 8 at a time (``DIALIN_JUDGE_LOOKAHEAD``); judges that answer locally ask
one at a time.

Two measurements:

* **Decisions and round trips**: the sampled oracle 0.96 (a **simulated judge that knows
  the gold labels**, benchmark only; it answers a prompt the same way every time it is
  asked, as an LLM at temperature 0 does) at 0.3 calls per utterance, on subsets of
  BANKING77 *train* (tuning data, ``bench/_data.py``) and on BANKING77 test (held out),
  MiniLM embeddings: NMI / ARI / clusters, the round trips (batches sent to the judge), the
  share of calls asked ahead and never read, and whether the labels equal those of asking
  one at a time.
* **Seconds of an LLM-path fit**: the estimator the service builds for
  ``DIALIN_JUDGE=openai`` (its OpenAI client, prompts and budget) fitted on 3,000 random
  utterances of BANKING77 train against the simulated LLM of ``bench/_simulated_llm.py``
  (the same sampled oracle behind the project's OpenAI-protocol test server), each request
  held ``--latency`` seconds before its answer. The latency is an assumption standing in
  for an LLM's answer time, not a measurement of one.

Writes the section ``lookahead`` of ``docs/benchmarks.md``. Usage::

    OMP_NUM_THREADS=1 python bench/lookahead.py   # about 10 minutes

Libraries: NumPy, scikit-learn (NMI, ARI).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from _data import banking77, train_subsets
from _doc import markers, provenance, write_section
from quality import embed, oracle
from sklearn.metrics import adjusted_rand_score as ari
from sklearn.metrics import normalized_mutual_info_score as nmi

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
ACCURACY, BUDGET = 0.96, 0.3
#: The tuning subsets of BANKING77 train measured (names as ``train_subsets`` gives them).
TUNING = ("3,000 random utterances, 77 intents", "30 utterances of each of 77 intents",
          "6,000 random utterances, 77 intents", "all utterances of 20 intents")
#: The service's default (``Settings.judge_lookahead``), read in the reading.
SHIPPED = 8


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class CountingJudge:
    """A judge that counts the batches it is sent (round trips): everything else passes."""

    def __init__(self, judge) -> None:
        self.judge_ = judge
        self.rounds = 0

    def __getattr__(self, name: str):
        return getattr(self.judge_, name)

    def cache_key(self, view):
        return self.judge_.cache_key(view)

    def judge(self, views):
        self.rounds += 1
        return self.judge_.judge(views)


def decisions(X: np.ndarray, texts: list[str], gold: np.ndarray, lookaheads: list[int],
              seeds: list[int]) -> dict[int, list[dict]]:
    """Per lookahead, one row per seed: scores, calls, round trips, unused share, labels."""
    from dialin.models import BudgetITLClustering

    out: dict[int, list[dict]] = {}
    for la in lookaheads:
        for seed in seeds:
            judge = CountingJudge(oracle(gold, ACCURACY, seed, sampled=True))
            est = BudgetITLClustering(judge, budget=BUDGET, lookahead=la,
                                      random_state=seed).fit(X, texts=texts)
            summary = est.ledger_summary_
            out.setdefault(la, []).append({
                "nmi": nmi(gold, est.labels_), "ari": ari(gold, est.labels_),
                "clusters": est.n_clusters_, "calls": est.n_judge_calls_, "rounds": judge.rounds,
                "unused": summary["asked_ahead_unused"] / max(1, est.n_judge_calls_),
                "labels": est.labels_})
    return out


def llm_seconds(texts: list[str], gold: np.ndarray, X: np.ndarray, lookaheads: list[int],
                latency: float) -> dict[int, dict]:
    """Per lookahead: seconds and calls of the service's LLM-path estimator on ``X``."""
    from _simulated_llm import MODEL, SimulatedLLM
    from dialin.streams import factory
    from dialin.streams.settings import Settings

    out = {}
    with SimulatedLLM(texts, list(gold), latency=latency) as llm:
        for la in lookaheads:
            settings = Settings(judge="openai", llm_url=llm.url, llm_model=MODEL, judge_lookahead=la)
            judge = factory.build_judge(settings)
            est = factory.build_estimator(settings, judge, None)
            started = time.perf_counter()
            est.fit(X, texts=texts)
            out[la] = {"seconds": time.perf_counter() - started, "calls": est.n_judge_calls_,
                       "nmi": nmi(gold, est.labels_), "ari": ari(gold, est.labels_)}
            log(f"  LLM path, lookahead {la}: {out[la]}")
    return out


# ---------------------------------------------------------------- report
def _mean_range(values: list[float], fmt: str) -> str:
    mean, lo, hi = np.mean(values), min(values), max(values)
    if fmt.format(lo) == fmt.format(hi):
        return fmt.format(mean)
    return f"{fmt.format(mean)} ({fmt.format(lo)}–{fmt.format(hi)})"


def table(results: dict[str, dict[int, list[dict]]], n_rows: dict[str, int]) -> str:
    lines = ["| data | lookahead | NMI | ARI | clusters | judge calls / utterance | round trips "
             "| asked ahead, never read | labels as one at a time |",
             "|---|---:|---|---|---|---:|---:|---:|---|"]
    for name, by_la in results.items():
        base = by_la.get(1)
        for la, rows in by_la.items():
            same = (sum(bool(np.array_equal(r["labels"], b["labels"])) for r, b in zip(rows, base))
                    if base else None)
            lines.append(
                f"| {name} | {la} | {_mean_range([r['nmi'] for r in rows], '{:.3f}')} "
                f"| {_mean_range([r['ari'] for r in rows], '{:.3f}')} "
                f"| {_mean_range([r['clusters'] for r in rows], '{:.0f}')} "
                f"| {np.mean([r['calls'] for r in rows]) / n_rows[name]:.2f} "
                f"| {np.mean([r['rounds'] for r in rows]):.0f} "
                f"| {100 * np.mean([r['unused'] for r in rows]):.1f}% "
                f"| {'–' if same is None else f'{same} of {len(rows)} seeds'} |")
    return "\n".join(lines)


def reading(results: dict[str, dict[int, list[dict]]], timing: dict[int, dict],
            latency: float) -> str:
    """The shipped lookahead against one at a time (computed)."""
    ratio, d_nmi, d_ari, unused = [], [], [], []
    for by_la in results.values():
        if 1 not in by_la or SHIPPED not in by_la:
            continue
        one, ahead = by_la[1], by_la[SHIPPED]
        ratio += [a["rounds"] / o["rounds"] for a, o in zip(ahead, one)]
        d_nmi.append(np.mean([r["nmi"] for r in ahead]) - np.mean([r["nmi"] for r in one]))
        d_ari.append(np.mean([r["ari"] for r in ahead]) - np.mean([r["ari"] for r in one]))
        unused += [r["unused"] for r in ahead]
    if not ratio:
        return ""
    text = (f"Reading: asking {SHIPPED} ahead (the service's default for LLM judges) sends "
            f"{100 * min(ratio):.0f}-{100 * max(ratio):.0f}% of the round trips of asking one at "
            f"a time, at the same budget; the mean NMI moves by {min(d_nmi):+.3f} to "
            f"{max(d_nmi):+.3f} and the mean ARI by {min(d_ari):+.3f} to {max(d_ari):+.3f} "
            f"across the sets; {100 * min(unused):.1f}-{100 * max(unused):.1f}% of the calls "
            "were asked ahead and never read (they come out of the same budget).")
    if 1 in timing and SHIPPED in timing:
        text += (f" The LLM-path fit with {latency:g} s per request took "
                 f"{timing[1]['seconds']:.0f} s asking one at a time and "
                 f"{timing[SHIPPED]['seconds']:.0f} s asking {SHIPPED} ahead "
                 f"({timing[1]['seconds'] / timing[SHIPPED]['seconds']:.1f}x faster).")
    return text


def section(results, n_rows, timing, latency, timing_rows: int, args) -> str:
    start, end = markers("lookahead")
    times = "\n".join(
        [f"| lookahead | seconds | judge calls | NMI | ARI |", "|---:|---:|---:|---:|---:|"]
        + [f"| {la} | {t['seconds']:.1f} | {t['calls']:,} | {t['nmi']:.3f} | {t['ari']:.3f} |"
           for la, t in timing.items()])
    return f"""{start}
## Asking the judge ahead (`bench/lookahead.py`)

The growth and merge phases of the budget strategy decide one question at a time, so an
LLM-judged fit waits one round trip per question. With `lookahead` L the next L questions,
as things stand, are asked in one batch (the LLM client sends them concurrently) and the
phase reads their answers as it reaches them; a question whose view changed meanwhile is
asked anew. The service asks an LLM judge {SHIPPED} ahead (`DIALIN_JUDGE_LOOKAHEAD`); the
offline heuristic judge answers locally and always asks one at a time.

**Decisions and round trips.** The judge is the sampled oracle {ACCURACY} (a **simulated
judge that knows the gold labels**, benchmark only; it answers a prompt the same way every
time, as an LLM at temperature 0 does), budget {BUDGET} calls per utterance, MiniLM, seeds
{' '.join(str(s) for s in args.seeds)} (mean, range in brackets). Rows marked *tuning* are
subsets of BANKING77 train; BANKING77 test is held out. *Round trips*: batches sent to the
judge (the coarse phase is one). *Labels as one at a time*: seeds whose labels equal those
of lookahead 1 exactly; with this judge, which answers a prompt the same way each time, they
differ only because the calls asked ahead and never read leave later questions unasked once
the budget is spent (`tests/test_budget.py` checks equal labels when the budget does not bind).

{table(results, n_rows)}

**Seconds of an LLM-path fit.** The estimator the service builds for `DIALIN_JUDGE=openai`
(OpenAI client, prompts, budget) fitted on {timing_rows:,} random utterances of BANKING77
train (tuning) against the simulated LLM of `bench/_simulated_llm.py` (the same sampled
oracle behind the project's OpenAI-protocol test server on loopback), each request held
{latency:g} s before its answer: an assumed answer time, not a measurement of any LLM.
Seed 0.

{times}

{reading(results, timing, latency)}

{provenance()}
{end}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--lookaheads", type=int, nargs="+", default=[1, 4, SHIPPED, 16])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--latency", type=float, default=0.05,
                        help="seconds the simulated LLM holds each request")
    parser.add_argument("--out", type=Path, default=DOC)
    args = parser.parse_args()
    if 1 not in args.lookaheads:
        sys.exit("bench: --lookaheads must include 1 (the reference)")
    train_texts, train_y = banking77(args.data, "train")
    train_y = np.asarray(train_y)
    subsets = dict(train_subsets(train_y))
    sets = [(f"BANKING77 train, {name} (tuning)", subsets[name]) for name in TUNING]
    results, n_rows = {}, {}
    for name, rows in sets:
        texts = [train_texts[i] for i in rows]
        X, _ = embed("minilm", texts)
        log(f"{name}: {len(texts)} rows")
        results[name] = decisions(X, texts, train_y[rows], args.lookaheads, args.seeds)
        n_rows[name] = len(texts)
    test_texts, test_y = banking77(args.data, "test")
    X, _ = embed("minilm", test_texts)
    name = "BANKING77 test (held out)"
    log(f"{name}: {len(test_texts)} rows")
    results[name] = decisions(X, test_texts, np.asarray(test_y), args.lookaheads, args.seeds)
    n_rows[name] = len(test_texts)

    rows = subsets[TUNING[0]]
    texts = [train_texts[i] for i in rows]
    X, _ = embed("minilm", texts)
    log(f"LLM path, {len(texts)} rows, {args.latency} s per request")
    timing = llm_seconds(texts, train_y[rows], X, args.lookaheads, args.latency)
    text = section(results, n_rows, timing, args.latency, len(texts), args)
    write_section(args.out, "lookahead", text)
    log(f"wrote the lookahead section of {args.out}")


if __name__ == "__main__":
    main()
