"""The simulated judges of the benchmarks: what each one sees, and how it errs.

Each test of :class:`SampledOracleJudge` pins one of its three rules (sample truth, one
answer per prompt, leniency with nearly pure Bad samples) against a case where the
rule decides the answer, so removing the rule turns the test red.
"""

from __future__ import annotations

import numpy as np
import pytest

from dialin.models import ClusterView, OracleJudge, SampledOracleJudge

#: Row i has text t{i}; rows 0-99 are intent a, 100-199 b, 200-299 c.
TEXTS = [f"t{i}" for i in range(300)]
LABELS = ["a"] * 100 + ["b"] * 100 + ["c"] * 100


def sampled(**kwargs) -> SampledOracleJudge:
    judge = SampledOracleJudge(LABELS, **kwargs)
    judge.prepare(np.zeros((len(TEXTS), 2), dtype=np.float32), TEXTS)
    return judge


def view(members, shown, repetition: int = 0) -> ClusterView:
    return ClusterView(members=tuple(members), texts=tuple(TEXTS[i] for i in shown),
                       repetition=repetition)


def good(judge, views) -> list[bool]:
    return [v.good for v in judge.judge(views)]


# --- rule 1: the verdict comes from the gold labels of the sampled texts only ---------------

def test_a_mixed_cluster_with_a_pure_sample_is_good_and_the_reverse_bad():
    mixed = list(range(0, 20)) + list(range(100, 120))    # half a, half b: Bad in truth
    pure_sample = view(mixed, shown=range(0, 10))          # the prompt shows only a's
    mixed_sample = view(mixed, shown=[0, 1, 2, 3, 4, 100, 101, 102, 103, 104])
    exact = sampled(accuracy=1.0, leniency=0.0)
    assert good(exact, [pure_sample, mixed_sample]) == [True, False]
    # The member-reading oracle calls the cluster Bad whatever the prompt shows.
    oracle = OracleJudge(LABELS, accuracy=1.0)
    assert good(oracle, [pure_sample, mixed_sample]) == [False, False]


def union(side_a, side_b, shown_a, shown_b) -> ClusterView:
    """A union question as ``make_union_view`` builds one: members a then b, split, parts."""
    part_a, part_b = tuple(TEXTS[i] for i in shown_a), tuple(TEXTS[i] for i in shown_b)
    return ClusterView(members=tuple(side_a) + tuple(side_b), texts=part_a + part_b,
                       parts=(part_a, part_b), split=len(side_a))


def test_a_union_question_is_judged_on_both_sides_samples():
    side_a = list(range(0, 10))                            # all a
    side_b = list(range(10, 20)) + list(range(100, 110))   # half a, half b
    only_as = union(side_a, side_b, shown_a=range(0, 5), shown_b=range(10, 15))
    with_bs = union(side_a, side_b, shown_a=range(0, 5), shown_b=[10, 100, 101, 102, 103])
    exact = sampled(accuracy=1.0, leniency=0.0)
    # 30 members, 20 a: the oracle says Bad whatever is shown; the sampled judge reads
    # the two samples: 10 a's is Good, 6 a's and 4 b's is Bad.
    assert good(exact, [only_as, with_bs]) == [True, False]
    assert good(OracleJudge(LABELS, accuracy=1.0), [only_as, with_bs]) == [False, False]


# --- rule 2: one answer per distinct prompt ------------------------------------------------

def test_the_same_prompt_always_gets_the_same_answer():
    coin = sampled(accuracy=0.5, leniency=0.0)  # as wrong as right: every answer a coin toss
    prompts = [view(range(0, 30), shown=range(i, i + 10)) for i in range(20)]
    first = good(coin, prompts)
    assert 0 < sum(first) < len(first)  # distinct prompts do get different answers
    for _ in range(5):
        assert good(coin, prompts) == first
        assert good(coin, prompts[::-1]) == first[::-1]  # whatever the batch around it
    # A new judge with the same seed answers the same; another seed answers otherwise.
    assert good(sampled(accuracy=0.5, leniency=0.0), prompts) == first
    assert good(sampled(accuracy=0.5, leniency=0.0, random_state=1), prompts) != first
    # The member-reading oracle draws a fresh error at every call.
    oracle = OracleJudge(LABELS, accuracy=0.5, random_state=0)
    assert len({tuple(good(oracle, prompts)) for _ in range(5)}) > 1


def test_errors_come_at_the_stated_rate():
    judge = sampled(accuracy=0.8, leniency=0.0)
    prompts = [view(range(0, 30), shown=range(0, 10), repetition=r) for r in range(1000)]
    wrong = 1000 - sum(good(judge, prompts))
    assert 150 <= wrong <= 250  # 1 - accuracy = 0.2 of 1,000 distinct questions


# --- rule 3: a nearly pure Bad sample is called Good with probability `leniency` ------------

def test_a_nearly_pure_bad_sample_is_called_good_at_the_leniency_rate():
    members = list(range(0, 20)) + list(range(100, 120))
    near = [0, 1, 2, 3, 4, 5, 6, 7, 100, 101]            # 80% a: >= 0.7, < purity 0.9
    far = [0, 1, 2, 3, 4, 5, 100, 101, 102, 103]          # 60% a: plainly Bad
    lenient = sampled(accuracy=1.0, leniency=0.3)
    near_good = sum(good(lenient, [view(members, near, repetition=r) for r in range(1000)]))
    assert 240 <= near_good <= 360  # leniency 0.3 of 1,000 distinct questions
    assert sum(good(lenient, [view(members, far, repetition=r) for r in range(1000)])) == 0
    strict = sampled(accuracy=1.0, leniency=0.0)
    assert sum(good(strict, [view(members, near, repetition=r) for r in range(1000)])) == 0


# --- reports and mistakes -------------------------------------------------------------------

def test_both_oracles_describe_themselves_as_simulated():
    assert OracleJudge(LABELS, accuracy=0.9).describe() == {
        "backend": "oracle", "simulated": True, "knows_gold_labels": True,
        "sees": "every member", "accuracy": 0.9, "purity": 0.9}
    card = sampled().describe()
    assert card["backend"] == "oracle-sampled" and card["simulated"] is True
    assert card["sees"] == "the prompt's sample"
    assert (card["accuracy"], card["purity"], card["near_purity"], card["leniency"]) == (0.96, 0.9, 0.7, 0.3)


@pytest.mark.parametrize("kwargs", [{"leniency": 1.5}, {"near_purity": 0.95}, {"accuracy": 0.2}])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ValueError):
        SampledOracleJudge(LABELS, **kwargs)


def test_judging_before_prepare_or_with_foreign_texts_says_why():
    with pytest.raises(ValueError, match="prepare"):
        SampledOracleJudge(LABELS).judge([view(range(5), range(5))])
    with pytest.raises(ValueError, match="not among the cluster's members"):
        sampled().judge([view(range(5), range(5, 10))])
