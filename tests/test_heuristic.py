"""The label-free heuristic judge and keyword namer, checked against gold labels."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dialin.models import (
    AGENT_ACTIONS,
    CUSTOMER_ACTIONS,
    ClusterView,
    HeuristicJudge,
    KeywordNamer,
    action_of,
    cluster,
    make_union_view,
    make_view,
)


def _view(members) -> ClusterView:
    return ClusterView(members=tuple(int(i) for i in members), texts=())


@pytest.fixture(scope="module")
def judge(english_sample, english_lsa) -> HeuristicJudge:
    j = HeuristicJudge()
    j.prepare(english_lsa, english_sample.texts)
    return j


def test_judge_beats_chance_against_the_oracle_truth(judge, english_sample, english_lsa):
    """Truth as the oracle defines it: one gold label covers >= 90% of the cluster."""
    _, codes = np.unique(english_sample.labels, return_inverse=True)
    views, truth = [], []
    for k in (10, 20, 40, 80):
        for seed in (0, 1):
            labels = cluster(english_lsa, k, random_state=seed)
            for c in range(labels.max() + 1):
                m = np.flatnonzero(labels == c)
                if m.size >= 2:
                    views.append(_view(m))
                    truth.append(np.bincount(codes[m]).max() >= 0.9 * m.size)
    truth = np.array(truth)
    verdicts = judge.judge(views)
    pred = np.array([v.good for v in verdicts])
    majority = max(truth.mean(), 1 - truth.mean())
    assert (pred == truth).mean() > majority + 0.05
    assert all(v.backend == "heuristic" and 0.0 <= v.confidence <= 1.0 for v in verdicts)


def test_pure_intents_beat_mixtures_at_every_size(judge, english_sample):
    labels = np.array(english_sample.labels)
    intents = sorted(set(english_sample.labels))
    for size in (6, 30):
        pure = np.flatnonzero(labels == intents[0])[:size]
        mixed = np.concatenate([np.flatnonzero(labels == intents[i])[: size // 6] for i in range(6)])
        assert judge._score(pure) > judge._score(mixed)


def test_tiny_clusters_are_bad_and_unsure(judge):
    (v,) = judge.judge([_view([3])])
    assert v.good is False and v.confidence == 0.0


def test_cache_key_is_the_member_set(judge, english_sample, english_lsa):
    a = make_view(range(40), english_sample.texts, english_lsa, size=5, method="random", rng=1)
    b = make_view(range(39, -1, -1), english_sample.texts, english_lsa, size=5, method="random", rng=2)
    assert a.texts != b.texts and judge.cache_key(a) == judge.cache_key(b)
    assert judge.cache_key(a) != judge.cache_key(ClusterView(a.members, a.texts, repetition=1))
    union = make_union_view(range(20), range(20, 40), english_sample.texts, english_lsa, per_side=3)
    swapped = make_union_view(range(20, 40), range(20), english_sample.texts, english_lsa, per_side=3)
    # By default a union is judged as one cluster: the member set is the question ...
    assert judge.cache_key(union) == judge.cache_key(a)
    # ... with the link ratio on, it is the pair of sides, in either order.
    linked = HeuristicJudge(union_quantile=0.65)
    assert linked.cache_key(union) == linked.cache_key(swapped) != linked.cache_key(a)


def test_judge_validates():
    with pytest.raises(RuntimeError, match="before prepare"):
        HeuristicJudge().judge([_view([0, 1])])
    with pytest.raises(ValueError, match="quantile"):
        HeuristicJudge(quantile=1.5).prepare(np.eye(4, dtype=np.float32), ["a"] * 4)
    # Six rows, two tight groups and a stray: too few to calibrate well, yet a tight group
    # is still told from a mixed one.
    X = np.array([[1, 0, 0], [0.99, 0.1, 0], [0.98, 0.05, 0.1], [0, 1, 0], [0.1, 0.99, 0], [0, 0, 1]],
                 dtype=np.float32)
    small = HeuristicJudge()
    small.prepare(X / np.linalg.norm(X, axis=1, keepdims=True), list("abcdef"))
    assert [v.good for v in small.judge([_view([0, 1, 2]), _view([3, 4]), _view([0, 3, 5])])] == [
        True, True, False]
    with pytest.raises(IndexError, match="outside"):
        small.judge([_view([0, 7])])


EN_LABEL = re.compile(r"^(?:[a-z]+-)?[a-z0-9]+(?:_[a-z0-9]+)*$")


def test_namer_english_action_objective(english_sample):
    namer = KeywordNamer()
    namer.prepare(None, english_sample.texts)
    assert namer.lang_ == "en" and namer.backend == "keywords"
    labels = np.array(english_sample.labels)
    intents = sorted(set(english_sample.labels))
    names = namer.name([_view(np.flatnonzero(labels == i)) for i in intents])
    assert all(EN_LABEL.match(n) for n in names), names
    assert sum(action_of(n) is not None for n in names) >= 0.8 * len(names)
    by_intent = dict(zip(intents, names))
    assert "activate" in by_intent["activate_my_card"]
    assert "top" in by_intent["topping_up_by_card"]
    assert action_of(by_intent["lost_or_stolen_card"]) == "report"
    assert len(set(names)) >= 0.8 * len(names)  # distinct intents get distinct names


def test_namer_chinese_action_objective_by_role(chinese_sample):
    namer = KeywordNamer(max_keywords=1)
    namer.prepare(None, chinese_sample.texts)
    assert namer.lang_ == "zh"
    roles = np.array(chinese_sample.roles)
    labels = np.array(chinese_sample.labels)
    questions = np.flatnonzero((roles == "customer") & np.char.startswith(labels.astype(str), "Request-"))
    answers = np.flatnonzero((roles == "agent") & np.char.startswith(labels.astype(str), "Inform-"))
    q_name, a_name = namer.name([_view(questions), _view(answers)])
    assert re.fullmatch(r"询问-[\u4e00-\u9fff]+", q_name), q_name
    assert action_of(q_name) in CUSTOMER_ACTIONS and action_of(a_name) in AGENT_ACTIONS


def test_namer_without_action_word_uses_the_objective():
    namer = KeywordNamer(lang="en")
    texts = ["savings interest", "interest on savings", "mortgage payment", "payment of mortgage"]
    namer.prepare(None, texts)
    (name,) = namer.name([_view([0, 1])])
    assert action_of(name) is None and set(name.split("_")) == {"savings", "interest"}


def test_action_lexicons_and_action_of():
    assert {"inquire", "询问", "投诉"} <= CUSTOMER_ACTIONS and {"answer", "解答", "推荐"} <= AGENT_ACTIONS
    assert not CUSTOMER_ACTIONS & AGENT_ACTIONS
    assert action_of("inquire-card_arrival") == "inquire"
    assert action_of("Inquire-Insurance") == "inquire"
    assert action_of("询问-餐馆") == "询问"
    assert action_of("card_arrival") is None and action_of("") is None
    with pytest.raises(RuntimeError, match="before prepare"):
        KeywordNamer().name([_view([0])])
    with pytest.raises(ValueError, match="lang"):
        KeywordNamer(lang="fr").prepare(None, ["x"])


def test_union_view_marks_its_sides(english_sample, english_lsa):
    view = make_union_view(range(5), range(5, 12), english_sample.texts, english_lsa, per_side=3)
    assert view.split == 5 and view.members[: view.split] == tuple(range(5))
    assert make_view(range(12), english_sample.texts, english_lsa).split == 0


@pytest.fixture(scope="module")
def union_judge(english_sample, english_lsa) -> HeuristicJudge:
    j = HeuristicJudge(union_quantile=0.5)
    j.prepare(english_lsa, english_sample.texts)
    return j


def test_union_of_one_intent_links_more_than_two_intents(union_judge, english_sample):
    labels = np.array(english_sample.labels)
    intents = sorted(set(english_sample.labels))
    same, mixed = [], []
    for i, intent in enumerate(intents):
        rows = np.flatnonzero(labels == intent)
        other = np.flatnonzero(labels == intents[(i + 1) % len(intents)])
        same.append(union_judge._union_score(rows[:15], rows[15:]))
        mixed.append(union_judge._union_score(rows[:15], other[15:]))
    assert np.mean(same) > np.mean(mixed) + 0.2
    assert np.mean(np.array(same) > 0.5) > np.mean(np.array(mixed) > 0.5)


def test_union_verdict_depends_on_the_sides(union_judge, english_sample, english_lsa):
    labels = np.array(english_sample.labels)
    intents = sorted(set(english_sample.labels))
    a, b = np.flatnonzero(labels == intents[0]), np.flatnonzero(labels == intents[1])
    whole = np.concatenate([a, b])
    split_by_intent = make_union_view(a, b, english_sample.texts, english_lsa)
    split_in_halves = make_union_view(whole[::2], whole[1::2], english_sample.texts, english_lsa)
    assert union_judge.cache_key(split_by_intent) != union_judge.cache_key(split_in_halves)
    swapped = make_union_view(b, a, english_sample.texts, english_lsa)
    assert union_judge.cache_key(swapped) == union_judge.cache_key(split_by_intent)
    by_intent, halves = union_judge.judge([split_by_intent, split_in_halves])
    assert by_intent.good is False and halves.good is True
    # without union_quantile a union is judged on its members, whatever the split
    plain = HeuristicJudge()
    plain.prepare(english_lsa, english_sample.texts)
    assert plain.judge([split_by_intent]) == plain.judge([split_in_halves])
    with pytest.raises(ValueError, match="union_quantile"):
        HeuristicJudge(union_quantile=1.0).prepare(english_lsa, english_sample.texts)
