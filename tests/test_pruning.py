"""Search-space pruning: the LLM proposal over HTTP and the heuristic fallback."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialin.models import HeuristicPruner, LLMPruner

# The paper's Table 10, first iteration.
LOG = [
    {"iteration": 1, "n_cluster": 20, "good": 20548, "bad": 34537, "rate": 0.595},
    {"iteration": 1, "n_cluster": 100, "good": 32292, "bad": 22793, "rate": 1.417},
    {"iteration": 1, "n_cluster": 1600, "good": 52184, "bad": 2901, "rate": 17.988},
]


@given(log=st.lists(st.fixed_dictionaries({
            "iteration": st.integers(1, 3), "n_cluster": st.integers(1, 5000),
            "good": st.integers(0, 10000), "bad": st.integers(0, 10000)}), max_size=6),
       n_remaining=st.integers(0, 100000), lo=st.integers(1, 50), width=st.integers(0, 500),
       k=st.integers(1, 8))
def test_heuristic_proposals_are_distinct_integers_in_range(log, n_remaining, lo, width, k):
    hi = lo + width
    counts = HeuristicPruner().propose(log, n_remaining, lo, hi, k)
    assert len(counts) == min(k, hi - lo + 1) == len(set(counts))
    assert all(isinstance(c, int) and lo <= c <= hi for c in counts)


def test_heuristic_centres_on_the_best_count_scaled_by_what_is_left():
    counts = HeuristicPruner().propose(LOG, n_remaining=2901, lo=10, hi=2000)
    # best 1600 at 55,085 utterances, 2,901 left: sqrt scaling gives about 367.
    assert counts[0] == pytest.approx(1600 * (2901 / 55085) ** 0.5, abs=1)


def test_bad_ranges_are_clear_errors():
    with pytest.raises(ValueError, match="lo <= hi"):
        HeuristicPruner().propose([], 100, 50, 10)


def test_the_llm_pruner_sends_the_log_and_keeps_only_valid_counts(llm_server):
    llm_server.answer = lambda body: "[800, 800, 5000, -3, 600, \"x\", 400]"
    with LLMPruner(llm_server.url, "m") as pruner:
        counts = pruner.propose(LOG, n_remaining=2901, lo=10, hi=2000, k=5)
    assert counts[:3] == [800, 600, 400]
    assert len(counts) == 5 == len(set(counts)) and all(10 <= c <= 2000 for c in counts)
    body = llm_server.chat_requests()[0]
    user = body["messages"][-1]["content"]
    assert "remaining utterances: 2901; allowed range: 10..2000; proposals wanted: 5" in user
    assert json.dumps(LOG[2]) in user
    assert body["structured_outputs"]["json"]["type"] == "array"
    assert pruner.stats.count("prune", "ok") == 1


def test_a_garbage_answer_falls_back_to_the_heuristic(llm_server):
    llm_server.answer = lambda body: "I would try around eight hundred clusters."
    with LLMPruner(llm_server.url, "m", invalid_retries=1) as pruner:
        counts = pruner.propose(LOG, 2901, 10, 2000, 5)
        assert pruner.stats.count("prune", "invalid") == 2
    assert counts == HeuristicPruner().propose(LOG, 2901, 10, 2000, 5)
    with LLMPruner(llm_server.url, "m", invalid_retries=0, fill=False) as pruner:
        assert pruner.propose(LOG, 2901, 10, 2000, 5) == []
