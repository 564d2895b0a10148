"""Algorithm 1 (LLMITLClustering) on the real BANKING77 sample with the simulated judge."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from dialin.models import (Judge, LLMITLClustering, LSAEmbedder, OracleJudge, Verdict, ari,
                           KeywordNamer)

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
                             **PAPER).fit(X, texts)
    ours = LLMITLClustering(OracleJudge(y, accuracy=0.96, random_state=seed),
                            random_state=seed).fit(X, texts)
    n_true = len(set(y))
    assert paper.n_clusters_ > 3 * n_true  # measured: 92..103 clusters for 20 intents
    assert ours.n_clusters_ <= 1.5 * n_true  # measured: 20..27
    assert ari(y, ours.labels_) > ari(y, paper.labels_)


def test_log_rows_follow_table_10(data):
    X, texts, y = data
    est = LLMITLClustering(OracleJudge(y, random_state=0), random_state=0).fit(X, texts)
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
    loose = LLMITLClustering(OracleJudge(y, random_state=0), epsilon=0.95, random_state=0).fit(X, texts)
    strict = LLMITLClustering(OracleJudge(y, random_state=0), epsilon=0.0, random_state=0).fit(X, texts)
    assert {r["iteration"] for r in loose.log_} == {1}
    assert len({r["iteration"] for r in strict.log_}) > 1


def test_every_row_gets_an_intent_and_intents_match_labels(data):
    X, texts, y = data
    est = LLMITLClustering(OracleJudge(y, random_state=0), namer=KeywordNamer(),
                           random_state=0).fit(X, texts)
    assert est.labels_.shape == (len(y),) and (est.labels_ >= 0).all()
    assert sorted(it.intent_id for it in est.intents_) == sorted(set(est.labels_.tolist()))
    for it in est.intents_:
        assert set(it.members) == set(np.flatnonzero(est.labels_ == it.intent_id).tolist())
        assert it.label and not it.label.startswith("cluster-")


def test_a_shared_cache_makes_a_second_identical_fit_free(data):
    X, texts, y = data
    cache: dict = {}
    first = LLMITLClustering(OracleJudge(y, random_state=0), random_state=0).fit(X, texts, cache=cache)
    second = LLMITLClustering(OracleJudge(y, random_state=5), random_state=0).fit(X, texts, cache=cache)
    assert first.n_judge_calls_ > 0 and second.n_judge_calls_ == 0
    np.testing.assert_array_equal(first.labels_, second.labels_)


def test_no_question_is_asked_twice_within_a_fit(data):
    X, texts, y = data
    judge = CountingJudge(OracleJudge(y, random_state=0))
    est = LLMITLClustering(judge, repetitions=3, random_state=0).fit(X, texts)
    assert len(judge.asked) == est.n_judge_calls_
    assert len(set(judge.asked)) == len(judge.asked)
    # Nested cuts of one Ward tree repeat clusters: the ledger answered some for free.
    assert est.ledger_summary_["cache_hits"] > 0


def test_label_merge_joins_intents_whose_names_agree(data):
    X, texts, y = data
    labeller = LSAEmbedder(n_components=32).fit(texts)
    base = dict(namer=KeywordNamer(), union_merge=False, random_state=0)
    plain = LLMITLClustering(OracleJudge(y, random_state=0), **base).fit(X, texts)
    merged = LLMITLClustering(OracleJudge(y, random_state=0), **base, merge_threshold=0.3,
                              label_embedder=labeller,
                              min_centroid_similarity=0.3).fit(X, texts)
    assert merged.merges_ and merged.n_clusters_ < plain.n_clusters_
    assert merged.n_clusters_ == plain.n_clusters_ - len(merged.merges_)
    assert sorted(set(merged.labels_.tolist())) == list(range(merged.n_clusters_))


def test_clone_keeps_parameters_and_fits_alike(data):
    X, texts, y = data
    est = LLMITLClustering(OracleJudge(y, random_state=0), candidates=[10, 20, 40], random_state=3)
    twin = clone(est)
    assert twin.get_params(deep=False).keys() == est.get_params(deep=False).keys()
    assert twin.candidates == [10, 20, 40] and twin.random_state == 3
    np.testing.assert_array_equal(est.fit(X, texts).labels_, twin.fit(X, texts).labels_)


def test_a_judge_that_rejects_everything_still_labels_every_row(data):
    X, texts, _ = data

    class No(Judge):
        def judge(self, views):
            return [Verdict(good=False) for _ in views]

    with pytest.warns(UserWarning, match="no cluster was judged Good"):
        est = LLMITLClustering(No(), random_state=0).fit(X, texts)
    assert (est.labels_ >= 0).all()


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
        LLMITLClustering(OracleJudge(y), **params).fit(X, texts)


def test_texts_must_match_rows(data):
    X, texts, y = data
    with pytest.raises(ValueError, match="texts has 3 items"):
        LLMITLClustering(OracleJudge(y)).fit(X, texts[:3])
