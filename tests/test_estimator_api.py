"""One contract for every clustering strategy (in the spirit of scikit-learn's
``parametrize_with_checks``): the same fit signature, the same fitted attributes, no
scratch state, ``clone`` and ``get_params``/``set_params`` round trips, and the same
result for the same seed.

Small synthetic data (six tight blobs, 120 rows) so every check runs in well under a
second; the judge is the oracle on the blob labels, wrong 4% of the time (seeded).
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from sklearn.base import clone

from dialin.models import (BudgetITLClustering, Intent, KeywordNamer, LLMITLClustering,
                           OracleJudge, RoleAwareClustering)
from dialin.models import FITTED_ATTRIBUTES

#: Per blob, what its rows say: three customer turns, then three agent turns, so that a
#: role-aware fit can infer the roles from the names of a first clustering.
PHRASES = ("how do I top up my card {i}?", "i want to cancel my savings account {i}",
           "why was my transfer declined {i}?", "you can order a new card in the app {i}",
           "we will refund the fee within five days {i}", "you need to verify your identity {i}")
N_EACH = 20


def _data() -> tuple[np.ndarray, list[str], list[int], list[str]]:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(len(PHRASES), 16))
    X = np.vstack([c + rng.normal(scale=0.15, size=(N_EACH, 16)) for c in centres])
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    y = [b for b in range(len(PHRASES)) for _ in range(N_EACH)]
    texts = [PHRASES[b].format(i=i) for i, b in enumerate(y)]
    roles = ["customer" if b < 3 else "agent" for b in y]
    return X, texts, y, roles


X, TEXTS, Y, ROLES = _data()


def _judge() -> OracleJudge:
    return OracleJudge(Y, accuracy=0.96, random_state=0)


#: Each strategy as a fresh unfitted estimator, and the per-sample keywords its fit takes.
STRATEGIES = {
    "budget": (lambda: BudgetITLClustering(_judge(), namer=KeywordNamer(), budget=0.6,
                                           random_state=0), {}),
    # k-means and random samples: the seed decides the result, so repeatability is tested.
    "paper": (lambda: LLMITLClustering(_judge(), namer=KeywordNamer(), method="kmeans",
                                       sample_method="random", random_state=0), {}),
    "roles-given": (lambda: RoleAwareClustering(
        BudgetITLClustering(_judge(), budget=0.6, random_state=0), random_state=0),
        {"roles": ROLES}),
    "roles-inferred": (lambda: RoleAwareClustering(
        LLMITLClustering(_judge(), namer=KeywordNamer(), random_state=0), random_state=0), {}),
}

strategies = pytest.mark.parametrize("name", list(STRATEGIES))


def _make(name: str):
    make, extra = STRATEGIES[name]
    return make(), extra


def _fitted(name: str):
    est, extra = _make(name)
    return est.fit(X, texts=TEXTS, **extra)


@strategies
def test_init_stores_its_parameters_and_nothing_else(name):
    est, _ = _make(name)
    params = est.get_params(deep=False)
    assert set(vars(est)) == set(params)
    assert all(vars(est)[k] is v for k, v in params.items())


@strategies
def test_fit_takes_y_second_and_texts_by_keyword(name):
    est, extra = _make(name)
    fit = inspect.signature(type(est).fit).parameters
    assert list(fit)[:3] == ["self", "X", "y"] and fit["y"].default is None
    keyword_only = [p for p in fit.values() if p.kind is p.KEYWORD_ONLY]
    assert [p.name for p in keyword_only] == list(fit)[3:]
    assert "texts" in fit and fit["texts"].default is None
    assert set(extra) <= {p.name for p in keyword_only}


@strategies
@pytest.mark.parametrize("method", ["fit", "fit_predict"])
def test_texts_passed_where_y_sits_fail_clearly(name, method):
    est, extra = _make(name)
    with pytest.raises(TypeError, match=r"fit\(X, texts=texts\)") as info:
        getattr(est, method)(X, TEXTS, **extra)
    assert "\n" not in str(info.value)
    assert not any(hasattr(est, a) for a in FITTED_ATTRIBUTES)


@strategies
def test_fit_sets_every_declared_attribute(name):
    est, extra = _make(name)
    assert est.fit(X, texts=TEXTS, **extra) is est
    labels = est.labels_
    assert isinstance(labels, np.ndarray) and labels.dtype == np.int64 and labels.shape == (len(Y),)
    assert labels.min() >= -1
    assert isinstance(est.intents_, list) and all(isinstance(it, Intent) for it in est.intents_)
    assert type(est.n_clusters_) is int and est.n_clusters_ == len(est.intents_) > 0
    assert sorted(it.intent_id for it in est.intents_) == sorted(set(labels[labels >= 0].tolist()))
    assert isinstance(est.log_, list) and est.log_
    assert all(isinstance(row, dict) and all(isinstance(k, str) for k in row) for row in est.log_)
    assert isinstance(est.calls_by_phase_, dict)
    assert all(isinstance(k, str) and isinstance(v, int) for k, v in est.calls_by_phase_.items())
    assert type(est.n_judge_calls_) is int
    assert est.n_judge_calls_ == sum(est.calls_by_phase_.values()) > 0
    documented = inspect.getdoc(type(est))
    assert all(a in documented for a in FITTED_ATTRIBUTES)


@strategies
def test_no_scratch_state_after_fit(name):
    est, extra = _make(name)
    before = dict(vars(est))
    est.fit(X, texts=TEXTS, **extra)
    added = set(vars(est)) - set(before)
    assert set(FITTED_ATTRIBUTES) <= added
    assert all(a.endswith("_") and not a.startswith("_") for a in added), sorted(added)
    assert all(vars(est)[k] is v for k, v in before.items())  # no parameter replaced


@strategies
def test_clone_and_params_round_trip(name):
    est = _fitted(name)
    twin = clone(est)
    assert type(twin) is type(est) and twin is not est
    assert not any(hasattr(twin, a) for a in FITTED_ATTRIBUTES)
    assert twin.get_params(deep=False).keys() == est.get_params(deep=False).keys()
    assert twin.random_state == est.random_state
    shallow = est.get_params(deep=False)
    assert est.set_params(**shallow) is est
    assert all(est.get_params(deep=False)[k] is v for k, v in shallow.items())
    deep = est.get_params(deep=True)
    est.set_params(**deep)
    assert est.get_params(deep=True).keys() == deep.keys()
    assert est.set_params(random_state=7).get_params()["random_state"] == 7


@strategies
def test_same_seed_same_result(name):
    est, extra = _make(name)
    first, second = clone(est).fit(X, texts=TEXTS, **extra), clone(est).fit(X, texts=TEXTS, **extra)
    np.testing.assert_array_equal(first.labels_, second.labels_)
    assert first.n_judge_calls_ == second.n_judge_calls_
    assert first.calls_by_phase_ == second.calls_by_phase_
    assert first.log_ == second.log_
    assert [it.label for it in first.intents_] == [it.label for it in second.intents_]
    np.testing.assert_array_equal(clone(est).fit_predict(X, texts=TEXTS, **extra), first.labels_)
