"""Label-free estimates of the number of intents on synthetic blobs of known k, and
``BudgetITLClustering``'s opt-in ``k_hint`` anchor they could feed."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from dialin.models import BudgetITLClustering, ClusterView, Judge, OracleJudge, Verdict, nmi
from dialin.models import K_ESTIMATORS, estimate_n_intents

K = 8


@pytest.fixture(params=[0, 1])
def seed(request) -> int:
    return request.param


def _blobs(per_blob: int, seed: int, k: int = K, dim: int = 32, spread: float = 0.25) -> np.ndarray:
    """``k`` well-separated blobs of ``per_blob`` unit rows around orthogonal directions."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(dim, k)))[0].T
    X = np.repeat(centres, per_blob, axis=0)
    X = X + spread * rng.normal(size=X.shape) / np.sqrt(dim)
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("per_blob", [12, 150])
@pytest.mark.parametrize("method", ["eigengap", "cosine-cut"])
def test_finds_separate_blobs_at_two_densities(method, per_blob, seed):
    assert estimate_n_intents(_blobs(per_blob, seed), method, random_state=seed) == K


def test_cosine_cut_counts_blobs_whatever_the_number_of_rows(seed):
    """The cut is read off random pairs, a figure that does not grow with the rows."""
    sparse, dense = _blobs(6, seed, k=20), _blobs(120, seed, k=20)
    assert estimate_n_intents(sparse, "cosine-cut", random_state=seed) == 20
    assert estimate_n_intents(dense, "cosine-cut", random_state=seed) == 20


@pytest.mark.parametrize("method", K_ESTIMATORS)
def test_every_estimator_returns_a_count_in_range(method, seed):
    X = _blobs(20, seed)
    k = estimate_n_intents(X, method, random_state=seed)
    assert isinstance(k, int) and 1 <= k <= X.shape[0]


def test_bad_input_is_one_clear_error():
    X = _blobs(10, 0)
    with pytest.raises(ValueError, match="unknown estimator"):
        estimate_n_intents(X, "guess")
    with pytest.raises(ValueError, match="n >= 4"):
        estimate_n_intents(X[:3], "eigengap")
    with pytest.raises(ValueError, match="NaN"):
        estimate_n_intents(np.full((10, 4), np.nan), "eigengap")
    with pytest.raises(ValueError, match="distance"):
        estimate_n_intents(X, "cosine-cut", distance=3.0)


class _AlwaysGood(Judge):
    """Says Good to everything: without a stop, merging joins every group."""

    backend = "always-good"
    deterministic = True

    def cache_key(self, view: ClusterView) -> tuple:
        return (tuple(sorted(view.members)), view.repetition)

    def judge(self, views):
        return [Verdict(good=True, confidence=1.0, backend=self.backend) for _ in views]


def test_k_hint_stops_merging_at_the_hint(seed):
    X = _blobs(40, seed)
    free = BudgetITLClustering(_AlwaysGood(), budget=1.0, random_state=seed).fit(X)
    anchored = BudgetITLClustering(_AlwaysGood(), budget=1.0, k_hint=5, random_state=seed).fit(X)
    assert free.n_clusters_ < 5
    assert anchored.n_clusters_ == 5


def test_k_hint_from_the_estimate_keeps_sparse_intents(seed):
    """Four rows per intent: the default's coarse clusters of 15 mix intents and its
    groups under 8 rows are dissolved; anchored at the estimate, each blob is one intent."""
    X, y = _blobs(4, seed, k=10), np.repeat(np.arange(10), 4)
    hint = estimate_n_intents(X, "cosine-cut", random_state=seed)
    assert hint == 10
    judge = OracleJudge(y, accuracy=1.0, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        free = BudgetITLClustering(judge, budget=1.0, random_state=seed).fit(X)
    anchored = BudgetITLClustering(judge, budget=1.0, k_hint=hint, random_state=seed).fit(X)
    assert free.n_clusters_ < 10
    assert anchored.n_clusters_ == 10 and nmi(y, anchored.labels_) == pytest.approx(1.0)


def test_k_hint_auto_is_the_cosine_cut_estimate_of_the_input(seed):
    X, y = _blobs(4, seed, k=10), np.repeat(np.arange(10), 4)
    judge = OracleJudge(y, accuracy=1.0, random_state=seed)
    auto = BudgetITLClustering(judge, budget=1.0, k_hint="auto", random_state=seed).fit(X)
    assert auto.k_hint_ == estimate_n_intents(X, "cosine-cut", random_state=0) == 10
    assert auto.n_clusters_ == 10 and nmi(y, auto.labels_) == pytest.approx(1.0)
    off = BudgetITLClustering(judge, budget=1.0, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert off.fit(X).k_hint_ is None


def test_k_hint_auto_leaves_the_fit_of_a_densely_sampled_input_alone(seed):
    """The estimate is seeded on its own: where it asks for no finer start than the
    defaults, the fit is the fit without a hint, row for row."""
    X, y = _blobs(40, seed), np.repeat(np.arange(K), 40)
    free = BudgetITLClustering(OracleJudge(y, accuracy=1.0, random_state=seed), budget=0.5,
                               random_state=seed).fit(X)
    auto = BudgetITLClustering(OracleJudge(y, accuracy=1.0, random_state=seed), budget=0.5,
                               k_hint="auto", random_state=seed).fit(X)
    assert auto.k_hint_ == K
    assert np.array_equal(free.labels_, auto.labels_)


@pytest.mark.parametrize("k_hint", [0, 2.5, "7", "Auto"])
def test_bad_k_hint_fails_in_fit(k_hint):
    with pytest.raises(ValueError, match="k_hint"):
        BudgetITLClustering(_AlwaysGood(), k_hint=k_hint).fit(_blobs(10, 0))
