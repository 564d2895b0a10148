"""Repeated evaluation and the LLM crowd: majority votes, ties, invalid votes, resampling."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from dialin.models import ClusterView, CrowdJudge, Judge, OpenAIJudge, RepeatedJudge, Verdict


class ScriptedJudge(Judge):
    """Answers from a queue and records every view it was shown."""

    backend = "scripted"

    def __init__(self, answers: Sequence[bool | None]) -> None:
        self.answers = list(answers)
        self.seen: list[ClusterView] = []

    def judge(self, views):
        self.seen.extend(views)
        return [Verdict(good=self.answers.pop(0), backend=self.backend) for _ in views]


def view(members=(0, 1, 2, 3, 4, 5), texts=("a", "b")) -> ClusterView:
    return ClusterView(members=tuple(members), texts=tuple(texts))


@pytest.mark.parametrize("answers, good, confidence", [
    ([True, True, False], True, 2 / 3),
    ([True, False, False], False, 1 / 3),
    ([True, None, False], False, 0.5),  # a tie of valid votes is Bad
    ([None, None, True], True, 1.0),
    ([None, None, None], None, None),
])
def test_repeated_judge_takes_the_majority_of_valid_votes(answers, good, confidence):
    inner = ScriptedJudge(answers)
    (verdict,) = RepeatedJudge(inner, t=3).judge([view()])
    assert verdict.good is good and verdict.confidence == confidence
    assert [v.repetition for v in inner.seen] == [0, 1, 2]
    assert verdict.backend == "scriptedx3"


def test_repetitions_resample_the_members_once_the_data_set_is_known():
    texts = [f"utterance {i}" for i in range(50)]
    inner = ScriptedJudge([True] * 6)
    judge = RepeatedJudge(inner, t=3, random_state=1)
    judge.prepare(np.zeros((50, 2), dtype=np.float32), texts)
    cluster = view(members=range(10, 30), texts=("utterance 10", "utterance 11", "utterance 12"))
    judge.judge([cluster])
    first, second, third = inner.seen
    assert first.texts == cluster.texts
    assert second.texts != first.texts and third.texts != second.texts
    assert all(len(v.texts) == 3 and set(v.texts) <= set(texts[10:30]) for v in inner.seen)
    # The same cluster asked again draws the same samples: the ledger's cache stays valid.
    judge.judge([cluster])
    assert [v.texts for v in inner.seen[3:]] == [v.texts for v in inner.seen[:3]]


def test_unions_are_asked_again_as_they_are():
    inner = ScriptedJudge([True, True])
    judge = RepeatedJudge(inner, t=2)
    judge.prepare(None, [f"u{i}" for i in range(10)])
    union = ClusterView(members=tuple(range(10)), texts=("u1", "u2"), parts=(("u1",), ("u2",)))
    judge.judge([union])
    assert [v.parts for v in inner.seen] == [union.parts, union.parts]


def test_crowd_judge_majority_with_ties_bad():
    crowd = CrowdJudge([ScriptedJudge([True, True, None]), ScriptedJudge([True, False, None]),
                        ScriptedJudge([False, None, None])])
    verdicts = crowd.judge([view(), view(), view()])
    assert [v.good for v in verdicts] == [True, False, None]
    assert verdicts[0].confidence == pytest.approx(2 / 3)


def test_a_crowd_of_models_on_a_real_server(llm_server):
    # Three "models" behind one endpoint; the third disagrees about everything.
    llm_server.answer = lambda body: "Bad" if body["model"] == "contrarian" else "Good"
    judges = [OpenAIJudge(llm_server.url, name, logprobs=False)
              for name in ("qwen-a", "qwen-b", "contrarian")]
    try:
        crowd = CrowdJudge(judges)
        verdicts = crowd.judge([view(texts=("a", "b")), view(texts=("c", "d"))])
        assert [v.good for v in verdicts] == [True, True]
        assert verdicts[0].confidence == pytest.approx(2 / 3)
        assert {b["model"] for b in llm_server.chat_requests()} == {"qwen-a", "qwen-b", "contrarian"}
        assert crowd.stats.count("judge", "ok") == 6
    finally:
        for judge in judges:
            judge.close()
