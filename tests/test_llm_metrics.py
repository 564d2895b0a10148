"""The service's LLM backends feed Prometheus: calls by task and outcome, latency, tokens."""

from __future__ import annotations


from dialin.models import ClusterView
from dialin.streams.service import metrics
from dialin.streams.factory import build_judge, build_namer
from dialin.streams.settings import Settings


def _value(name: str, **labels) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_judge_and_namer_calls_reach_the_llm_metrics(llm_server):
    settings = Settings(judge="openai", namer="openai", llm_url=llm_server.url, llm_model="m",
                        pii_redaction=False)
    judge = build_judge(settings, on_call=metrics.observe_llm_call)
    namer = build_namer(settings, on_call=metrics.observe_llm_call)
    view = ClusterView(members=(0, 1), texts=("where is my card", "my card has not arrived"))
    before_ok = _value("dialin_llm_calls_total", task="judge", outcome="ok")
    before_name = _value("dialin_llm_calls_total", task="name", outcome="ok")
    before_n = _value("dialin_llm_request_duration_seconds_count", task="judge")

    judge.judge([view])
    namer.name([view])

    assert _value("dialin_llm_calls_total", task="judge", outcome="ok") == before_ok + 1
    assert _value("dialin_llm_calls_total", task="name", outcome="ok") == before_name + 1
    assert _value("dialin_llm_request_duration_seconds_count", task="judge") == before_n + 1
    assert _value("dialin_llm_tokens_total", task="judge", kind="prompt") > 0


def test_garbage_answers_are_counted_as_invalid(llm_server):
    llm_server.answer = lambda body: "Perhaps, it depends"
    settings = Settings(judge="openai", llm_url=llm_server.url, llm_model="m", pii_redaction=False)
    judge = build_judge(settings, on_call=metrics.observe_llm_call)
    before = _value("dialin_llm_calls_total", task="judge", outcome="invalid")
    (verdict,) = judge.judge([ClusterView(members=(0,), texts=("hello",))])
    assert verdict.good is None
    assert _value("dialin_llm_calls_total", task="judge", outcome="invalid") > before
