"""A new LLM backend is one small ChatClient: the judge, namer and pruner above it bring
the prompts, cache, invalid-answer retries, sampling policy, breaker and accounting."""

from __future__ import annotations

import asyncio

import pytest

from dialin.models import (ChatClient, ClusterView, Completion, LLMJudge, LLMNamer, LLMPruner,
                           LLMUnavailableError, LLMWarning)


class Scripted(ChatClient):
    """A whole client: answers from a queue, then Good (or a label, or counts)."""

    backend, model = "scripted", "scripted-1"

    def __init__(self, *queued: str | Completion) -> None:
        self.queued, self.asked = list(queued), []

    def complete(self, conversations, *, task, temperatures, seeds, **options):
        self.asked += list(zip(conversations, temperatures, seeds))
        default = {"judge": "Good", "name": "check-balance", "prune": "[30, 40]"}[task]
        answers = [self.queued.pop(0) if self.queued else default for _ in conversations]
        return [a if isinstance(a, Completion) else Completion(text=a) for a in answers]


def view(*texts: str) -> ClusterView:
    return ClusterView(members=tuple(range(len(texts))), texts=texts)


def test_a_client_in_a_few_lines_serves_the_judge_with_retries_and_a_cache():
    client = Scripted("Good, I think")  # the first answer does not parse
    judge = LLMJudge(client)
    views = [view("what is my balance", "balance please"), view("top up", "add money")]
    verdicts = judge.judge(views)
    assert [v.good for v in verdicts] == [True, True]
    assert {v.backend for v in verdicts} == {"scripted"}
    # The invalid answer was asked again, sampled afresh; nothing else was.
    assert [(t, s) for _, t, s in client.asked] == [(0.0, None), (0.0, None), (0.7, 1)]
    assert "what is my balance" in client.asked[0][0][-1]["content"]
    assert judge.stats.as_dict()["calls"]["judge"] == {"invalid": 1, "ok": 2}
    assert judge.judge(views) == verdicts and len(client.asked) == 3  # from the cache
    assert asyncio.run(judge.ajudge(views)) == verdicts and judge.stats.cache_hits == 4


def test_a_client_in_a_few_lines_serves_the_namer_and_the_pruner():
    client = Scripted()
    namer = LLMNamer(client)
    assert namer.name([view("what is my balance", "balance please")]) == ["check-balance"]
    assert namer.stats.count("name", "ok") == 1 and namer.backend == "scripted"
    pruner = LLMPruner(client=client)
    log = [{"iteration": 1, "n_cluster": 50, "good": 300, "bad": 100}]
    counts = pruner.propose(log, n_remaining=100, lo=10, hi=60, k=3)
    assert counts[:2] == [30, 40] and len(counts) == 3
    assert pruner.stats.count("prune", "ok") == 1


def test_failures_a_client_reports_reach_the_verdicts_the_warning_and_the_breaker():
    failed = Completion(text=None, error="ConnectionError: refused")
    judge = LLMJudge(Scripted(failed, failed))
    with pytest.warns(LLMWarning, match="refused"):
        assert [v.good for v in judge.judge([view("a"), view("b")])] == [None, None]
    assert judge.stats.count("judge", "error") == 2
    down = Completion(text=None, error="LLM at x unavailable: circuit open", unavailable=True)
    with pytest.raises(LLMUnavailableError, match="circuit open"):
        LLMJudge(Scripted(down)).judge([view("c")])
