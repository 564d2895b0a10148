"""Algorithm 1 (LLMITLClustering) on the real BANKING77 sample with the simulated judge."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from openai_server import task_of
from sklearn.base import clone

from dialin.models import (UNASSIGNED, HeuristicPruner, Judge, LLMITLClustering, LLMPruner,
                           LSAEmbedder, NothingCertifiedWarning, OracleJudge, PruningWarning,
                           Verdict, ari, KeywordNamer)

PAPER = dict(selection="ratio", union_merge=False, min_cluster_size=1)


@pytest.fixture(scope="module")
def data(english_sample, english_lsa):
    return english_lsa, english_sample.texts, english_sample.labels


class CountingJudge(Judge):
    """A real judge (the oracle) that records every question it is actually asked."""

    backend = "counting"

    def __init__(self, inner: Judge) -> None:
        self.inner = inner
        self.asked: list[tuple] = []

    def cache_key(self, view):
        return self.inner.cache_key(view)

    def judge(self, views):
        self.asked.extend(self.cache_key(v) for v in views)
        return self.inner.judge(views)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paper_ratio_rule_over_splits_and_the_default_does_not(data, seed):
    X, texts, y = data
    paper = LLMITLClustering(OracleJudge(y, accuracy=0.96, random_state=seed), random_state=seed,
                             **PAPER).fit(X, texts=texts)
    ours = LLMITLClustering(OracleJudge(y, accuracy=0.96, random_state=seed),
                            random_state=seed).fit(X, texts=texts)
    n_true = len(set(y))
    assert paper.n_clusters_ > 3 * n_true  # measured: 92..103 clusters for 20 intents
    assert ours.n_clusters_ <= 1.5 * n_true  # measured: 20..27
    assert ari(y, ours.labels_) > ari(y, paper.labels_)


def test_log_rows_follow_table_10(data):
    X, texts, y = data
    est = LLMITLClustering(OracleJudge(y, random_state=0), random_state=0).fit(X, texts=texts)
    iterations = sorted({r["iteration"] for r in est.log_})
    assert iterations == list(range(1, len(iterations) + 1))
    remaining = len(y)
    for it in iterations:
        rows = [r for r in est.log_ if r["iteration"] == it]
        assert sum(r["chosen"] for r in rows) == 1
        for r in rows:
            assert r["good"] + r["bad"] == r["n_cluster"]
            assert r["good_utterances"] + r["bad_utterances"] == remaining
            assert r["rate"] == (r["good"] / r["bad"] if r["bad"] else float("inf"))
        remaining = next(r["bad_utterances"] for r in rows if r["chosen"])
    assert est.n_judge_calls_ == sum(est.calls_by_phase_.values())
    assert set(est.calls_by_phase_) <= {"evaluate", "merge"}


def test_epsilon_stops_after_one_round(data):
    X, texts, y = data
    loose = LLMITLClustering(OracleJudge(y, random_state=0), epsilon=0.95, random_state=0).fit(X, texts=texts)
    strict = LLMITLClustering(OracleJudge(y, random_state=0), epsilon=0.0, random_state=0).fit(X, texts=texts)
    assert {r["iteration"] for r in loose.log_} == {1}
    assert len({r["iteration"] for r in strict.log_}) > 1


def test_every_row_gets_an_intent_and_intents_match_labels(data):
    X, texts, y = data
    est = LLMITLClustering(OracleJudge(y, random_state=0), namer=KeywordNamer(),
                           random_state=0).fit(X, texts=texts)
    assert est.labels_.shape == (len(y),) and (est.labels_ >= 0).all()
    assert sorted(it.intent_id for it in est.intents_) == sorted(set(est.labels_.tolist()))
    for it in est.intents_:
        assert set(it.members) == set(np.flatnonzero(est.labels_ == it.intent_id).tolist())
        assert it.label and not it.label.startswith("cluster-")


def test_a_shared_cache_makes_a_second_identical_fit_free(data):
    X, texts, y = data
    cache: dict = {}
    first = LLMITLClustering(OracleJudge(y, random_state=0), random_state=0).fit(X, texts=texts, cache=cache)
    second = LLMITLClustering(OracleJudge(y, random_state=5), random_state=0).fit(X, texts=texts, cache=cache)
    assert first.n_judge_calls_ > 0 and second.n_judge_calls_ == 0
    np.testing.assert_array_equal(first.labels_, second.labels_)


def test_no_question_is_asked_twice_within_a_fit(data):
    X, texts, y = data
    judge = CountingJudge(OracleJudge(y, random_state=0))
    est = LLMITLClustering(judge, repetitions=3, random_state=0).fit(X, texts=texts)
    assert len(judge.asked) == est.n_judge_calls_
    assert len(set(judge.asked)) == len(judge.asked)
    # Nested cuts of one Ward tree repeat clusters: the ledger answered some for free.
    assert est.ledger_summary_["cache_hits"] > 0


def test_label_merge_joins_intents_whose_names_agree(data):
    X, texts, y = data
    labeller = LSAEmbedder(n_components=32).fit(texts)
    base = dict(namer=KeywordNamer(), union_merge=False, random_state=0)
    plain = LLMITLClustering(OracleJudge(y, random_state=0), **base).fit(X, texts=texts)
    merged = LLMITLClustering(OracleJudge(y, random_state=0), **base, merge_threshold=0.3,
                              label_embedder=labeller,
                              min_centroid_similarity=0.3).fit(X, texts=texts)
    assert merged.merges_ and merged.n_clusters_ < plain.n_clusters_
    assert merged.n_clusters_ == plain.n_clusters_ - len(merged.merges_)
    assert sorted(set(merged.labels_.tolist())) == list(range(merged.n_clusters_))


def test_clone_keeps_parameters_and_fits_alike(data):
    X, texts, y = data
    est = LLMITLClustering(OracleJudge(y, random_state=0), candidates=[10, 20, 40], random_state=3)
    twin = clone(est)
    assert twin.get_params(deep=False).keys() == est.get_params(deep=False).keys()
    assert twin.candidates == [10, 20, 40] and twin.random_state == 3
    np.testing.assert_array_equal(est.fit(X, texts=texts).labels_, twin.fit(X, texts=texts).labels_)


def test_a_judge_that_rejects_everything_leaves_every_row_unassigned(data):
    X, texts, _ = data

    class No(Judge):
        def judge(self, views):
            return [Verdict(good=False) for _ in views]

    with pytest.warns(NothingCertifiedWarning, match=f"all {len(texts)} utterances are left unassigned"):
        est = LLMITLClustering(No(), merge_threshold=0.5, label_embedder=object(),
                               random_state=0).fit(X, texts=texts)
    assert (est.labels_ == UNASSIGNED).all() and est.intents_ == [] and est.n_clusters_ == 0


@pytest.mark.parametrize("params, message", [
    (dict(selection="best"), "selection must be one of"),
    (dict(method="dbscan"), "method must be one of"),
    (dict(epsilon=1.5), "epsilon"),
    (dict(candidates=[0, 5]), "candidates"),
    (dict(merge_threshold=0.1), "label_embedder"),
])
def test_bad_parameters_are_one_line_errors(data, params, message):
    X, texts, y = data
    with pytest.raises(ValueError, match=message):
        LLMITLClustering(OracleJudge(y), **params).fit(X, texts=texts)


def test_texts_must_match_rows(data):
    X, texts, y = data
    with pytest.raises(ValueError, match="texts has 3 items"):
        LLMITLClustering(OracleJudge(y)).fit(X, texts=texts[:3])


# --- search-space pruning (§6.4.2) ------------------------------------------------------

# A wide search space like the paper's (30 counts): pruning matters when the grid is large.
WIDE = list(range(5, 151, 5))


def _questions(est) -> int:
    """Every question Algorithm 1 asked, answered by the judge or by the cache."""
    return est.ledger_summary_["judge_calls"] + est.ledger_summary_["cache_hits"]


def _wide_fit(data, seed, pruner):
    X, texts, y = data
    return LLMITLClustering(OracleJudge(y, accuracy=0.96, random_state=seed), candidates=WIDE,
                            pruner=pruner, random_state=seed).fit(X, texts=texts)


@pytest.fixture(scope="module")
def unpruned(data):
    """The full search at every iteration, seeds 0-2 (shared by the pruning tests)."""
    return [_wide_fit(data, seed, None) for seed in (0, 1, 2)]


def _wide_fits(data, unpruned, pruner_for_seed):
    """(unpruned, pruned) pairs for seeds 0-2."""
    return [(full, _wide_fit(data, seed, pruner_for_seed(seed)))
            for seed, full in zip((0, 1, 2), unpruned)]


def _assert_cheaper_at_similar_quality(data, runs):
    _, _, y = data
    for full, pruned in runs:
        assert pruned.n_judge_calls_ < full.n_judge_calls_  # measured: 10-17% fewer
        assert _questions(pruned) < 0.7 * _questions(full)  # measured: about half
    mean = lambda f, i: np.mean([f(y, r[i].labels_) for r in runs])  # noqa: E731
    assert mean(ari, 1) > mean(ari, 0) - 0.05  # measured: 0.54 unpruned, 0.55 pruned


def test_heuristic_pruning_asks_fewer_questions_at_similar_quality(data, unpruned):
    runs = _wide_fits(data, unpruned, lambda seed: HeuristicPruner())
    _assert_cheaper_at_similar_quality(data, runs)
    for full, pruned in runs:
        assert pruned.n_prune_calls_ == 0 == full.n_prune_calls_
        assert [p["proposed_by"] for p in full.pruning_] == ["grid"] * len(full.pruning_)
        first, *later = pruned.pruning_
        assert first["proposed_by"] == "grid" and first["candidates"] == WIDE
        assert later and all(p["proposed_by"] == "HeuristicPruner" for p in later)
        for p in later:
            assert 1 <= len(p["candidates"]) <= 5
            rows = [r for r in pruned.log_ if r["iteration"] == p["iteration"]]
            assert sorted(r["proposed_by"] for r in rows) == ["HeuristicPruner"] * len(rows)
            assert len(rows) == len(p["candidates"])


def _range_of(body) -> tuple[int, int]:
    user = body["messages"][-1]["content"]
    lo, hi = re.search(r"allowed range: (\d+)\.\.(\d+)", user).groups()
    return int(lo), int(hi)


def _llm_counts(body) -> str:
    """The server's pruning answer: five counts spread below the top of the allowed range."""
    lo, hi = _range_of(body)
    return json.dumps([max(lo, round(hi * f)) for f in (0.8, 0.6, 0.45, 0.3, 0.2)])


def test_llm_pruning_over_http_sends_the_log_and_uses_the_answer(data, unpruned,
                                                                 llm_server):
    llm_server.answer = _llm_counts
    pruners = []

    def make(seed):
        pruners.append(LLMPruner(llm_server.url, "m"))
        return pruners[-1]

    runs = _wide_fits(data, unpruned, make)
    _assert_cheaper_at_similar_quality(data, runs)
    requests = llm_server.chat_requests()
    assert all(task_of(body) == "prune" for body in requests)
    assert sum(pruned.n_prune_calls_ for _, pruned in runs) == len(requests)
    _, pruned = runs[0]
    later = pruned.pruning_[1:]
    assert pruned.n_prune_calls_ == len(later) > 0
    for p, body in zip(later, requests):
        assert p["proposed_by"] == "LLMPruner"
        assert p["candidates"] == sorted(json.loads(_llm_counts(body)))
        user = body["messages"][-1]["content"]
        logged = [r for r in pruned.log_ if r["iteration"] < p["iteration"]]
        assert user.count('{"iteration": ') == len(logged)
        # Table 10's form: good and bad count utterances, not clusters.
        r = logged[0]
        assert (f'"n_cluster": {r["n_cluster"]}, "good": {r["good_utterances"]}, '
                f'"bad": {r["bad_utterances"]}') in user
    for pruner in pruners:
        pruner.close()


def test_an_empty_proposal_falls_back_to_the_grid_with_a_warning(data, llm_server):
    X, texts, y = data
    llm_server.answer = lambda body: "no idea"
    with LLMPruner(llm_server.url, "m", invalid_retries=0, fill=False) as pruner:
        with pytest.warns(PruningWarning, match="no usable cluster count at iteration 2"):
            est = LLMITLClustering(OracleJudge(y, random_state=0), candidates=[10, 20, 40],
                                   epsilon=0.0, max_iter=2, pruner=pruner,
                                   random_state=0).fit(X, texts=texts)
    assert [p["proposed_by"] for p in est.pruning_] == ["grid", "grid-fallback"]
    assert est.pruning_[1]["proposed"] == [] and est.pruning_[1]["candidates"] == [10, 20, 40]
    assert est.n_prune_calls_ == 1 and est.n_judge_calls_ > 0


class ScriptedPruner:
    """A pruner that answers what it is told to and remembers what it was asked."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.asked: list[tuple] = []

    def propose(self, log, n_remaining, lo, hi, k=5):
        self.asked.append((len(log), n_remaining, lo, hi, k))
        return self.answer


def test_proposals_are_validated_deduplicated_and_clipped(data):
    X, texts, y = data
    pruner = ScriptedPruner([30, 30, 2.5, True, "12", np.int64(15), 10**6, -4, 25, 35, 45])
    est = LLMITLClustering(OracleJudge(y, random_state=0), candidates=[10, 20, 40, 80],
                           epsilon=0.0, max_iter=2, pruner=pruner, random_state=0).fit(X, texts=texts)
    chosen = next(r for r in est.log_ if r["iteration"] == 1 and r["chosen"])
    assert pruner.asked == [(4, chosen["bad_utterances"], 10, 80, 5)]
    # ints only, clipped into [10, 80], first five distinct, tried in ascending order.
    assert est.pruning_[1]["candidates"] == [10, 15, 25, 30, 80]
    assert [r["n_cluster"] for r in est.log_ if r["iteration"] == 2] == [10, 15, 25, 30, 80]
    assert LLMITLClustering(OracleJudge(y), pruner=pruner).get_params()["pruner"] is pruner


def test_a_pruner_without_propose_is_a_clear_error(data):
    X, texts, y = data
    with pytest.raises(TypeError, match="pruner must have a propose"):
        LLMITLClustering(OracleJudge(y), pruner=object()).fit(X, texts=texts)
