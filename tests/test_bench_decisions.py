"""bench/decisions.py: the simulated analyst's rule and the two disjoint draws."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))  # the script imports its siblings (_data, _doc) by name
    try:
        spec = importlib.util.spec_from_file_location("bench_decisions", BENCH / "decisions.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up by name
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("bench_decisions", None)
        sys.path.remove(str(BENCH))


def cand(bench, iid: str, gold: str):
    return bench.Candidate(iid, 1, tuple(gold), tuple(f"{iid}-{k}" for k in range(len(gold))))


def test_the_analyst_approves_pure_merges_by_gold_intent_and_rejects_or_splits_the_rest(bench):
    candidates = [
        cand(bench, "big-a", "aaaaaaaaab"),  # purity 0.9: approved
        cand(bench, "a-again", "aaaaaaaa"),  # pure, but "a" is approved: merged into big-a
        cand(bench, "mixed-a", "aaabbccd"),  # impure, majority "a": merged into big-a
        cand(bench, "mixed-b", "bbbccd"),  # impure, "b" approved nowhere: rejected
        cand(bench, "pure-c", "ccccc"),  # approved
        cand(bench, "tiny", "d"),  # not among the n largest
    ]
    got = bench.review(candidates, n=5, pure=0.8)
    assert [(d.action, d.intent_id, d.into) for d in got.decisions] == [
        ("approve", "big-a", None), ("approve", "pure-c", None),
        ("merge", "a-again", "big-a"), ("merge", "mixed-a", "big-a"), ("reject", "mixed-b", None)]
    split = bench.review(candidates, n=5, pure=0.8, impure="split")
    assert split.decisions[-1] == bench.Decided("split", "mixed-b", 1,
                                                utterance_ids=("mixed-b-0", "mixed-b-1", "mixed-b-2"))
    assert split.count("split") == 1 and split.count("reject") == 0
    with pytest.raises(ValueError, match="impure"):
        bench.review(candidates, impure="ignore")


def test_the_two_draws_are_disjoint_repeatable_and_of_the_same_intents(bench):
    y = np.array(["a"] * 50 + ["b"] * 50 + ["c"] * 3)
    first, second = bench.draw(y, 40, seed=0)
    assert len(first) == len(second) == 40 and not set(first) & set(second)
    assert set(y[second]) <= set(y[first])
    again = bench.draw(y, 40, seed=0)
    assert np.array_equal(again[0], first) and np.array_equal(again[1], second)
