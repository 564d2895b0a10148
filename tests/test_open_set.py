"""Open-set assignment (kNN vote + per-intent threshold) and the reconciliation of re-fits."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from dialin.models import OpenSetMatcher, claims, exemplar_score, new_intent_id, reconcile


def blobs(centers: int, n: int, dim: int = 16, noise: float = 0.15, seed: int = 0):
    rng = np.random.default_rng(seed)
    C = rng.standard_normal((centers, dim)).astype(np.float32)
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    X = np.repeat(C, n, axis=0) + noise * rng.standard_normal((centers * n, dim)).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True), np.repeat([f"c{i}" for i in range(centers)], n)


def test_known_rows_are_assigned_and_unknown_blobs_are_not():
    X, y = blobs(6, 60, seed=1)
    known = np.isin(y, ["c0", "c1", "c2", "c3"])
    fit = np.zeros(len(y), bool)
    fit[::2] = True
    m = OpenSetMatcher(random_state=0).fit(X[known & fit], y[known & fit])
    got = m.predict(X[known & ~fit])
    assert np.mean(got == y[known & ~fit]) >= 0.85  # most known queries are assigned, right
    assert np.mean([g is None for g in m.predict(X[~known])]) >= 0.95  # novelty stays out


def test_fitted_state_params_and_exemplar_cap():
    X, y = blobs(3, 100, seed=2)
    m = OpenSetMatcher(max_exemplars=16, random_state=0)
    assert clone(m).get_params() == m.get_params()
    m.fit(X, y)
    assert m.exemplars_.shape == (48, X.shape[1]) and sorted(m.thresholds_) == ["c0", "c1", "c2"]
    again = OpenSetMatcher(max_exemplars=16, random_state=0).fit(X, y)
    np.testing.assert_array_equal(m.exemplars_, again.exemplars_)  # seeded sample


def test_threshold_follows_the_spread_of_each_class_and_min_score_floors_it():
    Xt, yt = blobs(1, 80, noise=0.05, seed=3)
    Xl, yl = blobs(1, 80, noise=0.6, seed=4)
    m = OpenSetMatcher().fit(np.vstack([Xt, Xl]), np.r_[yt, np.array(["loose"] * 80)])
    assert m.thresholds_["c0"] > m.thresholds_["loose"]
    floored = OpenSetMatcher(min_score=0.999).fit(Xt, yt)
    assert all(g is None for g in floored.predict(Xt))


def test_from_exemplars_computes_missing_thresholds_and_keeps_given_ones():
    X, y = blobs(2, 30, seed=5)
    m = OpenSetMatcher.from_exemplars(X, y, {"c0": 0.25})
    assert m.thresholds_["c0"] == 0.25
    assert m.thresholds_["c1"] == pytest.approx(OpenSetMatcher().fit(X, y).thresholds_["c1"])


@pytest.mark.parametrize("per_class", [3, 40])  # a class smaller than n_score + 1, and a large one
def test_the_published_score_is_the_matchers_score(per_class):
    """A re-match or a consolidation publishes ``exemplar_score``; an arrival publishes the
    matcher's. For a row the vote assigns, they must be the same number."""
    X, y = blobs(3, per_class + 20, seed=4)
    fit = np.zeros(len(y), bool)
    for c in ("c0", "c1", "c2"):
        fit[np.flatnonzero(y == c)[:per_class]] = True
    m = OpenSetMatcher(random_state=0, vote_share=0.3).fit(X[fit], y[fit])
    got, scores = m.match(X[~fit])
    assigned = [r for r, g in enumerate(got) if g is not None]
    assert len(assigned) >= 10
    for r in assigned:
        E = m.exemplars_[m.exemplar_labels_ == got[r]]
        assert exemplar_score(X[~fit][r], E, m.n_score)[0] == pytest.approx(scores[r], abs=1e-6)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="y has 2 items but X has 3 rows"):
        OpenSetMatcher().fit(np.eye(3), ["a", "b"])
    with pytest.raises(ValueError, match="NaN"):
        OpenSetMatcher().fit(np.full((2, 2), np.nan), ["a", "b"])


# --- reconcile ---------------------------------------------------------------------------
def ids(n: int) -> list[str]:
    return [f"u{i}" for i in range(n)]


def test_a_stable_refit_keeps_every_id():
    rec = reconcile(["A"] * 4 + ["B"] * 4, [0] * 4 + [1] * 4, ids(8))
    assert rec.intent_of == {0: "A", 1: "B"} and not rec.created and not rec.merged


def test_a_broad_intent_split_keeps_its_id_on_the_larger_part():
    old = ["A"] * 10 + [None] * 2
    rec = reconcile(old, [0] * 6 + [1] * 4 + [1, 1], ids(12))
    assert rec.intent_of[0] == "A"
    [new] = rec.created
    assert rec.intent_of[1] == new and rec.split_from == {new: "A"}
    assert new == new_intent_id(None, [f"u{i}" for i in range(6, 12)])


def test_two_intents_in_one_cluster_merge_into_the_larger_overlap():
    rec = reconcile(["A"] * 5 + ["B"] * 3, [0] * 8, ids(8))
    assert rec.intent_of == {0: "A"} and rec.merged == {"B": "A"}


def test_claims_name_the_heir_first_by_overlap_then_rows_in_the_fit_then_id():
    """The rule reconcile merges by, which a consolidation also asks the judge about."""
    # Z holds more rows of cluster 0 than A; B ties A there but has more rows in the fit
    # (its other rows went to cluster 1, which holds fewer of them); C points at 1.
    old = ["A"] * 3 + ["B"] * 3 + ["Z"] * 4 + ["B"] * 2 + ["C"] * 3
    labels = [0] * 3 + [0] * 3 + [0] * 4 + [1] * 2 + [1] * 3
    assert claims(old, labels) == {0: ["Z", "B", "A"], 1: ["C"]}
    assert claims(["A", "B", None], [0, 0, 0]) == {0: ["A", "B"]}  # a tie all through: id
    assert claims(["A", "A"], [-1, -1]) == {}  # uncertified rows point nowhere
    assert reconcile(old, labels, ids(len(old))).merged == {"B": "Z", "A": "Z"}


def test_a_cluster_of_buffered_rows_only_is_new_without_parent_and_uncertified_rows_are_ignored():
    rec = reconcile(["A", "A", None, None, None], [-1, -1, 0, 0, 0], ids(5))
    assert rec.created == [rec.intent_of[0]] and rec.split_from == {} and rec.merged == {}
    assert "A" not in rec.continued
