"""build_intents: the naming step every strategy ends with."""

from __future__ import annotations

import numpy as np
import pytest

from dialin.models import KeywordNamer, Namer, Verdict, build_intents


class CountingNamer(Namer):
    """The real keyword namer, counting how many batches it is sent."""

    def __init__(self) -> None:
        self.inner = KeywordNamer()
        self.batches: list[int] = []

    def prepare(self, X, texts):
        self.inner.prepare(X, texts)

    def name(self, views):
        self.batches.append(len(views))
        return self.inner.name(views)


@pytest.fixture(scope="module")
def sample(english_sample, english_lsa):
    y = np.array(english_sample.labels)
    _, labels = np.unique(y, return_inverse=True)
    return english_lsa, english_sample.texts, labels


def test_one_intent_per_cluster_named_in_one_batch(sample):
    X, texts, labels = sample
    noisy = labels.copy()
    noisy[:5] = -1
    namer = CountingNamer()
    intents = build_intents(noisy, texts, X, namer=namer, n_examples=4)
    assert [it.intent_id for it in intents] == sorted(set(noisy.tolist()) - {-1})
    assert namer.batches == [len(intents)]
    for it in intents:
        assert set(it.members) == set(np.flatnonzero(noisy == it.intent_id).tolist())
        assert len(it.examples) == 4 and set(it.examples) <= {texts[i] for i in it.members}
        assert it.label and not it.label.startswith("cluster-")
    assert all(-1 != it.intent_id for it in intents)


def test_examples_are_the_members_nearest_the_centroid(sample):
    X, texts, labels = sample
    it = build_intents(labels, texts, X, n_examples=3)[0]
    rows = np.asarray(it.members)
    centre = X[rows].mean(axis=0)
    best = rows[np.argsort(-(X[rows] @ centre))[:3]]
    assert it.examples == tuple(texts[i] for i in best)


def test_without_namer_roles_and_verdicts(sample):
    X, texts, labels = sample
    roles = ["customer"] * len(labels)
    first = np.flatnonzero(labels == 0)
    for i in first[: len(first) // 2 - 1]:
        roles[i] = "agent"
    verdict = Verdict(good=True, backend="oracle")
    intents = build_intents(labels, texts, X, roles=roles, verdicts={0: verdict})
    assert intents[0].label == "cluster-0" and intents[0].role == "customer"
    assert intents[0].verdict == verdict and intents[1].verdict is None


def test_no_texts_means_no_examples(sample):
    X, _, labels = sample
    intents = build_intents(labels, None, X)
    assert intents and all(it.examples == () for it in intents)


def test_mismatched_inputs_are_errors(sample):
    X, texts, labels = sample
    with pytest.raises(ValueError, match="labels has"):
        build_intents(labels[:10], texts, X)
    with pytest.raises(ValueError, match="texts has"):
        build_intents(labels, texts[:10], X)
