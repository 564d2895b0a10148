"""LLM spend caps (issue 16, part 1): calls and tokens per hour, shared by the judge, namer
and pruner of a process, kept across restarts on a compacted topic; what the cap refuses
goes to the offline judge and namer (or waits for the next window), counted.

Against the real test LLM server (``llm_server``, HTTP on loopback) and, for the restart,
the embedded Kafka broker.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dialin.models import (CatalogIntent, ClusterView, Judge, LLMJudge, OpenAIClient, SpendCap,
                           SpendCapStopped, Verdict)
from dialin.streams import factory
from dialin.streams.cli import app
from dialin.streams.service import metrics
from dialin.streams.service.spend import KafkaSpendLedger
from dialin.streams.settings import Settings

BANKING = str(Path(__file__).parent / "data" / "banking77_sample.csv")
#: Middle of a clock hour: a restart "inside the hour" must not depend on when CI runs, nor
#: may a test that counts calls (windows start on the hour: one run at 23:00:00 once let the
#: SDK's retries through into a new window).
FROZEN = 1_790_000_000.0 + 1800.0


def llm_settings(server, **overrides) -> Settings:
    # At most 4 requests in flight: the test server's listen backlog is 5, and a connection
    # it drops is retried by the SDK, a request sent and so a call counted, that it never read.
    return Settings(judge="openai", namer="openai", llm_url=server.url, llm_model="test-model",
                    embedder="lsa", llm_concurrency=4, **overrides)


def views(sizes, tag="q") -> list[ClusterView]:
    """One view per size; its texts name it, so a request body says which view it asks."""
    return [ClusterView(members=tuple(range(k)), texts=tuple(f"{tag}{k} utterance {i}"
                                                              for i in range(k)))
            for k in sizes]


def asked(server) -> list[str]:
    """The first utterance of every request the server received, in arrival order."""
    out = []
    for body in server.chat_requests():
        user = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        out.append(next(line for line in user.splitlines() if "utterance 0" in line))
    return out


def fallbacks(task: str, reason: str) -> float:
    return metrics.LLM_FALLBACKS.labels(task, reason)._value.get()


class Offline(Judge):
    """A stand-in offline judge: Good, and it records that it was prepared."""

    backend = "offline"

    def __init__(self) -> None:
        self.prepared = None

    def prepare(self, X, texts) -> None:
        self.prepared = len(texts)

    def judge(self, views):
        return [Verdict(good=True, confidence=0.5, backend=self.backend) for _ in views]


# --- the acceptance run: a cap of 50 calls an hour --------------------------------------


def test_a_cap_of_50_calls_lets_exactly_50_requests_reach_the_server_and_the_rest_fall_back(
        llm_server, english_sample, english_lsa):
    settings = llm_settings(llm_server, llm_max_calls_per_hour=50)
    spend = factory.build_spend_cap(settings, on_fallback=metrics.observe_llm_fallback)
    spend.clock = lambda: FROZEN  # the fit's 50 calls must not straddle the top of an hour
    judge = factory.build_judge(settings, spend=spend)
    namer = factory.build_namer(settings, spend=spend)
    before = {t: fallbacks(t, "call_cap") for t in ("judge", "name")}

    est = factory.build_estimator(settings, judge, namer, spend=spend)
    est.fit(english_lsa, texts=english_sample.texts)

    assert len(llm_server.chat_requests()) == 50  # not one more, retries included
    summary = spend.summary()
    assert summary["calls"] == 50 and summary["hit"] == "call_cap"
    fell = {t: fallbacks(t, "call_cap") - before[t] for t in ("judge", "name")}
    assert summary["fallbacks"] == {"judge": {"call_cap": fell["judge"]},
                                    "name": {"call_cap": fell["name"]}}
    # Every judge question went to the LLM or to the offline judge, counted.
    llm_answered = judge.stats.count("judge", "ok") + judge.stats.count("judge", "cached")
    assert judge.stats.count("judge", "ok") + namer.stats.count("name", "ok") == 50
    assert llm_answered + fell["judge"] == est.n_judge_calls_ and fell["judge"] > 0
    # Naming came after the cap: the keyword namer named every intent.
    assert fell["name"] == len(est.intents_) > 0
    assert all(it.label and it.label != "inquire-test" for it in est.intents_)
    offline = [it.verdict for it in est.intents_ if it.verdict.fallback == "call_cap"]
    assert offline and {v.backend for v in offline} == {"heuristic"}
    assert spend.streak() == 1


def test_the_largest_clusters_get_the_calls_that_are_left(llm_server):
    offline = Offline()
    judge = LLMJudge(OpenAIClient(llm_server.url, "test-model", concurrency=4),
                     spend=SpendCap(max_calls=5, clock=lambda: FROZEN), fallback=offline)
    judge.prepare(np.zeros((12, 2), np.float32), [f"t{i}" for i in range(12)])
    sizes = [3, 9, 1, 11, 5, 7, 2, 10, 4, 8, 6]
    verdicts = judge.judge(views(sizes))

    assert sorted(asked(llm_server)) == sorted(f'1. "q{k} utterance 0"' for k in (11, 10, 9, 8, 7))
    by_size = dict(zip(sizes, verdicts))
    assert all(by_size[k].backend == "openai" and by_size[k].fallback is None for k in (7, 8, 9, 10, 11))
    assert all(by_size[k].backend == "offline" and by_size[k].fallback == "call_cap"
               for k in (1, 2, 3, 4, 5, 6))
    assert offline.prepared == 12  # prepared on the fit's data, once a fallback was needed


def test_a_retry_takes_a_call_and_the_cap_stops_it_before_it_is_sent(llm_server):
    llm_server.fail = lambda i, body: "500"
    judge = LLMJudge(OpenAIClient(llm_server.url, "test-model", max_retries=3),
                     spend=SpendCap(max_calls=2, clock=lambda: FROZEN), breaker_failures=10)
    (verdict,) = judge.judge(views([4]))
    assert len(llm_server.chat_requests()) == 2  # the first request and one SDK retry
    assert verdict.good is None and verdict.fallback == "call_cap"  # no fallback judge given
    assert judge.spend.summary()["calls"] == 2
    assert judge._state()._consecutive == 1  # the refused retry followed an outage


def test_the_token_cap_is_passed_by_at_most_the_requests_in_flight(llm_server):
    # The test server reports 101 tokens per answer.
    one_at_a_time = LLMJudge(OpenAIClient(llm_server.url, "test-model", concurrency=1),
                             spend=SpendCap(max_tokens=500, clock=lambda: FROZEN), fallback=Offline())
    one_at_a_time.prepare(np.zeros((20, 2), np.float32), ["t"] * 20)
    verdicts = one_at_a_time.judge(views(range(2, 14)))
    assert len(llm_server.chat_requests()) == 5  # 404 tokens let the fifth go: 505 after it
    assert one_at_a_time.spend.summary()["tokens"] == 505
    assert [v.fallback for v in verdicts].count("token_cap") == 12 - 5

    concurrency = 4
    spend = SpendCap(max_tokens=500, clock=lambda: FROZEN)
    judge = LLMJudge(OpenAIClient(llm_server.url, "test-model", concurrency=concurrency),
                     spend=spend, fallback=Offline())
    judge.prepare(np.zeros((20, 2), np.float32), ["t"] * 20)
    llm_server.delay = 0.05
    judge.judge(views(range(2, 14), tag="c"))
    sent = len(llm_server.chat_requests()) - 5
    assert 5 <= sent <= 5 + concurrency - 1
    assert spend.summary()["tokens"] <= 500 + (concurrency - 1) * 101 + 101


def test_wait_asks_again_in_the_next_window_and_stops_waiting_on_close(llm_server):
    spend = SpendCap(max_calls=2, window_seconds=1.0, window_origin=None, action="wait")
    judge = LLMJudge(OpenAIClient(llm_server.url, "test-model"), spend=spend)
    started = time.monotonic()
    verdicts = judge.judge(views([5, 4, 3]))
    assert len(llm_server.chat_requests()) == 3
    assert all(v.good and v.fallback is None for v in verdicts)
    assert time.monotonic() - started >= 0.5  # the third waited for the next window

    stopping = SpendCap(max_calls=0, action="wait")
    blocked = LLMJudge(OpenAIClient(llm_server.url, "test-model"), spend=stopping)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            blocked.judge(views([3], tag="w"))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)  # a broken close() must not hang the run
    thread.start()
    time.sleep(0.3)
    stopping.close()  # what a stopping worker does
    thread.join(10)
    assert not thread.is_alive() and isinstance(errors[0], SpendCapStopped)
    assert len(llm_server.chat_requests()) == 3  # nothing was sent at a cap of 0


# --- kept across restarts: the Kafka-backed ledger on the embedded broker ---------------


def test_a_restart_inside_the_hour_does_not_reset_the_spend(llm_server, kafka_settings):
    from dialin.streams.service.app import ensure_topics, topic_specs
    from dialin.streams.tools.watch import read_topic

    settings = llm_settings(llm_server, llm_max_calls_per_hour=50).model_copy(update={
        **{k: getattr(kafka_settings, k) for k in ("kafka_bootstrap", "app_id", "data_dir")},
        "topic_llm_spend": f"spend-{kafka_settings.app_id}"})
    assert topic_specs(settings)[settings.topic_llm_spend] == (1, {"cleanup.policy": "compact"})
    asyncio.run(ensure_topics(settings))

    def process():
        """What a worker builds: the ledger, the cap on it, a judge; the cap read back."""
        ledger = KafkaSpendLedger(settings)
        spend = factory.build_spend_cap(settings, ledger=ledger)
        spend.clock = lambda: FROZEN
        spend.restore()  # Worker.start_leading
        return ledger, spend, factory.build_judge(settings, spend=spend)

    X = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    ledger, spend, judge = process()
    judge.prepare(X, ["t"] * len(X))
    judge.judge(views(range(2, 32), tag="a"))  # 30 questions
    assert len(llm_server.chat_requests()) == 30
    ledger.close()  # the process stops

    ledger, spend, judge = process()
    assert spend.current().calls == 30
    judge.prepare(X, ["t"] * len(X))
    verdicts = judge.judge(views(range(2, 42), tag="b"))  # 40 more
    assert len(llm_server.chat_requests()) == 50
    assert [v.fallback for v in verdicts].count("call_cap") == 20
    ledger.close()

    records = [r for r in read_topic(settings, settings.topic_llm_spend)
               if r.key == settings.app_id.encode()]
    assert records[-1].data["calls"] == 50 and records[-1].data["hit"] == "call_cap"


def test_the_worker_builds_one_cap_on_the_kafka_ledger_for_judge_and_namer(llm_server, tmp_path):
    from dialin.models import LSAEmbedder
    from dialin.streams.service.worker import Worker

    settings = llm_settings(llm_server, llm_max_calls_per_hour=7, llm_max_tokens_per_hour=900,
                            metrics_port=-1, data_dir=str(tmp_path))
    embedder = LSAEmbedder(n_components=8).fit([f"text {i} of {i % 3}" for i in range(30)])
    worker = Worker(settings, embedder=embedder)
    est = worker.discovery.make_estimator()
    assert worker.spend.ledger is worker.spend_ledger and worker.spend.max_calls == 7
    assert est.judge.spend is worker.spend and est.namer.spend is worker.spend
    assert est.judge.fallback.backend == "heuristic" and est.namer.fallback.backend == "keywords"
    assert metrics.REGISTRY.get_sample_value("dialin_llm_spend_cap_streak") == 0


def test_a_fallback_reaches_the_published_intents_judge():
    from dialin.streams.service.discovery import update_of

    intent = CatalogIntent(intent_id="i-1", label="check-balance", role="customer",
                           centroid=np.ones(4, np.float32) / 2, size=5, judge_backend="heuristic",
                           judge_fallback="call_cap")
    record = intent.to_record("emb")
    assert record["judge"] == {"backend": "heuristic", "confidence": None, "fallback": "call_cap"}
    assert CatalogIntent.from_record(record).judge_fallback == "call_cap"
    published = json.loads(update_of(intent).model_dump_json())
    assert published["judge"] == {"backend": "heuristic", "confidence": None, "fallback": "call_cap"}


# --- the command line -------------------------------------------------------------------

runner = CliRunner()


@pytest.mark.usefixtures("clean_settings")
def test_discover_max_llm_calls_caps_a_file_run(tmp_path, llm_server, monkeypatch):
    out = tmp_path / "intents.json"
    monkeypatch.setenv("DIALIN_LLM_CONCURRENCY", "4")  # see llm_settings
    result = runner.invoke(app, [
        "discover", BANKING, "--text-field", "text", "--embedder", "lsa", "--judge", "openai",
        "--namer", "openai", "--llm-url", llm_server.url, "--llm-model", "test-model",
        "--max-llm-calls", "20", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert len(llm_server.chat_requests()) == 20
    doc = json.loads(out.read_text(encoding="utf-8"))
    spend = doc["metadata"]["llm_spend"]
    assert spend["calls"] == 20 and spend["max_calls"] == 20 and spend["hit"] == "call_cap"
    assert spend["fallbacks"]["judge"]["call_cap"] > 0
    assert any(it.get("fallback") == "call_cap" for it in doc["intents"])
    assert "cap reached" in result.stderr


@pytest.mark.usefixtures("clean_settings")
@pytest.mark.parametrize("args, env, says", [
    (["--max-llm-calls", "-1"], {}, "invalid --max-llm-calls / DIALIN_LLM_MAX_CALLS_PER_HOUR"),
    ([], {"DIALIN_LLM_MAX_TOKENS_PER_HOUR": "-5"}, "DIALIN_LLM_MAX_TOKENS_PER_HOUR"),
    ([], {"DIALIN_LLM_CAP_ACTION": "later"}, "DIALIN_LLM_CAP_ACTION"),
])
def test_bad_spend_settings_get_one_clear_line(tmp_path, monkeypatch, args, env, says):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = runner.invoke(app, ["discover", BANKING, "--text-field", "text", *args,
                                 "--out", str(tmp_path / "x.json")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "x.json").exists()


def test_a_spend_cap_checks_its_parameters_when_first_used():
    for bad, says in [({"max_calls": -1}, "max_calls"), ({"action": "later"}, "action"),
                      ({"window_seconds": 0}, "window_seconds")]:
        with pytest.raises(ValueError, match=says):
            SpendCap(**bad).take()
