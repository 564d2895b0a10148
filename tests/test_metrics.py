"""Metrics agree with scikit-learn and with hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from dialin.models import Verdict, ari, clustering_scores, goodness, nmi, semantic_diversity


def test_nmi_ari_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 300)
    labels = np.where(rng.random(300) < 0.7, y, rng.integers(0, 7, 300))
    assert nmi(y, labels) == pytest.approx(normalized_mutual_info_score(y, labels))
    assert ari(y, labels) == pytest.approx(adjusted_rand_score(y, labels))
    assert 0.2 < ari(y, labels) < 1 and 0.2 < nmi(y, labels) < 1
    scores = clustering_scores([str(v) for v in y], labels)
    assert scores == {"nmi": pytest.approx(nmi(y, labels)), "ari": pytest.approx(ari(y, labels)),
                      "n_clusters": len(set(labels.tolist()))}


def test_unassigned_rows_score_as_one_more_cluster_and_are_not_counted_as_one():
    y = ["a"] * 4 + ["b"] * 4
    split = [0, 0, 0, 0, 1, 1, 1, 1]
    half = [0, 0, -1, -1, 1, 1, -1, -1]  # the same run, half of it left unassigned
    assert nmi(y, split) == 1.0 and nmi(y, half) < 1.0
    assert nmi(y, half) == pytest.approx(normalized_mutual_info_score(y, [0, 0, 2, 2, 1, 1, 2, 2]))
    assert nmi(y, [-1] * 8) == 0.0
    assert clustering_scores(y, half)["n_clusters"] == 2
    assert clustering_scores(y, [-1] * 8)["n_clusters"] == 0


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="3 items but labels has 2"):
        nmi([1, 2, 3], [1, 2])


def test_semantic_diversity_by_hand():
    # Cluster "a": two orthogonal unit rows, centroid at 45 degrees: distance 1 - cos45 each.
    # Cluster "b": identical rows: distance 0. Unweighted mean over clusters.
    X = np.array([[1, 0], [0, 1], [1, 0], [1, 0], [1, 0]], dtype=np.float32)
    labels = ["a", "a", "b", "b", "b"]
    assert semantic_diversity(X, labels) == pytest.approx((1 - np.sqrt(0.5)) / 2)
    assert semantic_diversity(X, ["s"] * 5) > 0 and semantic_diversity(X, list("vwxyz")) == 0


def test_semantic_diversity_of_gold_intents_is_lower_than_random(english_sample, english_lsa):
    gold = semantic_diversity(english_lsa, english_sample.labels)
    shuffled = semantic_diversity(english_lsa, np.random.default_rng(0).permutation(english_sample.labels))
    assert 0.05 < gold < shuffled


def test_goodness():
    assert goodness([Verdict(True), Verdict(False), Verdict(None), Verdict(True)]) == 0.5
    assert goodness([True, False, None]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        goodness([])
