"""LLM outages: the circuit breaker, a discovery run that fails cleanly and is retried,
and a stalled LLM that never stalls ingestion (issue 7, item 3).

The LLM is always the real local HTTP server of ``openai_server.py``, misbehaving on
purpose; the worker test runs ``dialin serve`` on the embedded broker.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from kafka_harness import wait_for

from dialin.models import CircuitBreaker, ClusterView, LLMUnavailableError, OpenAIJudge
from dialin.streams.service import metrics
from dialin.streams.service.buffer import BufferStore
from dialin.streams.service.discovery import Discovery
from dialin.streams.service.records import BufferEntry
from dialin.streams.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def view(*texts: str) -> ClusterView:
    return ClusterView(members=tuple(range(len(texts))), texts=texts)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# --- the breaker itself ------------------------------------------------------------------

def test_breaker_opens_after_consecutive_failures_and_probes_once_when_half_open():
    clock = Clock()
    b = CircuitBreaker(failures=3, reset_seconds=10, clock=clock)
    for _ in range(2):
        assert b.allow()
        b.failure()
    b.success()  # a success in between resets the count
    for _ in range(2):
        b.failure()
    assert b.state == "closed" and b.allow()
    b.failure()
    assert b.state == "open" and b.is_open and not b.allow()
    clock.now = 9.9
    assert not b.allow()
    clock.now = 10.0
    assert b.state == "half-open"
    assert b.allow() and not b.allow()  # exactly one probe
    b.failure()  # the probe failed: open again, for another full period
    assert b.state == "open" and not b.allow()
    clock.now = 20.0
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow() and b.allow()
    assert b.opened_count == 2


# --- the breaker in the OpenAI backend, over HTTP ------------------------------------------

def test_a_dead_llm_opens_the_breaker_and_later_calls_fail_fast(llm_server):
    llm_server.fail = lambda i, body: "500"
    with OpenAIJudge(llm_server.url, "test-model", timeout=5, max_retries=0, concurrency=1,
                     breaker_failures=3, breaker_reset_seconds=0.5) as judge:
        with pytest.raises(LLMUnavailableError, match="circuit open after 3 consecutive failures"):
            judge.judge([view(f"a{i}", f"b{i}") for i in range(10)])
        assert len(llm_server.chat_requests()) == 3  # not ten: the rest were never sent
        with pytest.raises(LLMUnavailableError):
            judge.judge([view("c", "d")])
        assert len(llm_server.chat_requests()) == 3  # failed fast, nothing sent
        llm_server.fail = lambda i, body: None  # the server recovers
        wait_for(lambda: judge._breaker.state == "half-open", 10, 0.05, "the breaker to half-open")
        assert judge.judge([view("e", "f")])[0].good is True  # the probe closes it
        assert judge._breaker.state == "closed"


def test_a_client_error_is_not_an_outage(llm_server):
    llm_server.fail = lambda i, body: "400"
    llm_server.reject_structured = False
    with OpenAIJudge(llm_server.url, "test-model", max_retries=0, concurrency=1, structured=False,
                     logprobs=False, breaker_failures=2) as judge:
        with pytest.warns(UserWarning):
            verdicts = judge.judge([view(f"a{i}", f"b{i}") for i in range(5)])
        assert all(v.good is None for v in verdicts) and judge._breaker.state == "closed"


def test_a_stalled_llm_trips_the_breaker_by_timeouts(llm_server):
    llm_server.stall_seconds = 3.0
    llm_server.fail = lambda i, body: "stall"
    with OpenAIJudge(llm_server.url, "test-model", timeout=0.3, max_retries=0, concurrency=4,
                     breaker_failures=2, breaker_reset_seconds=60) as judge:
        with pytest.raises(LLMUnavailableError, match="Timeout"):
            judge.judge([view(f"a{i}", f"b{i}") for i in range(4)])


# --- a discovery run against a dead LLM ------------------------------------------------------

class JudgedArgmax:
    """A tiny estimator: clusters by largest coordinate and asks the real judge about each."""

    def __init__(self, judge) -> None:
        self.judge = judge

    def fit(self, X, texts=None):
        from dialin.models import Intent

        labels = np.argmax(X, axis=1)
        clusters = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        verdicts = self.judge.judge([view(*[texts[i] for i in rows[:5]]) for rows in clusters])
        self.intents_ = [Intent(intent_id=k, label=f"topic-{k}", members=tuple(rows),
                                examples=(texts[rows[0]],), verdict=v)
                         for k, (rows, v) in enumerate(zip(clusters, verdicts))]
        self.calls_by_phase_ = {"judge": len(clusters)}
        return self


class Recording:
    def __init__(self) -> None:
        self.sent: list[tuple] = []

    async def send_all(self, records) -> None:
        self.sent += list(records)


def _buffer(n_each: int = 10) -> BufferStore:
    buffer = BufferStore()
    rng = np.random.default_rng(0)
    for d in range(3):
        for i in range(n_each):
            v = np.eye(8, dtype=np.float32)[d] + rng.normal(0, 0.05, 8).astype(np.float32)
            v /= np.linalg.norm(v)
            e = BufferEntry(utterance_id=f"u{d}-{i}", call_id="c", text=f"text {d} {i}",
                            role="customer", embedding=BufferEntry.pack(v), accepted_at=1.0)
            buffer.apply(e.utterance_id.encode(), e.model_dump_json().encode())
    return buffer


def test_a_run_against_a_dead_llm_fails_cleanly_and_is_retried_after_a_backoff(llm_server):
    llm_server.fail = lambda i, body: "500"
    judge = OpenAIJudge(llm_server.url, "test-model", timeout=5, max_retries=0, concurrency=1,
                        breaker_failures=2, breaker_reset_seconds=0.2)
    settings = Settings(discovery_min_utterances=20, discovery_max_age_seconds=1e9,
                        discovery_interval_seconds=5, match_threshold=0.99)
    from dialin.models import IntentCatalog

    buffer, publisher = _buffer(), Recording()
    disco = Discovery(settings, IntentCatalog("emb"), buffer, publisher, lambda: JudgedArgmax(judge))
    failed = metrics.DISCOVERY_RUNS.labels("failed")._value.get()
    try:
        with pytest.warns(RuntimeWarning, match="LLMUnavailableError"):
            assert asyncio.run(disco.tick(now=100.0)) is None
        assert len(buffer) == 30 and publisher.sent == []  # buffer untouched, nothing published
        assert metrics.DISCOVERY_RUNS.labels("failed")._value.get() == failed + 1
        sent = len(llm_server.chat_requests())
        assert asyncio.run(disco.tick(now=101.0)) is None  # backing off: not asked again
        assert len(llm_server.chat_requests()) == sent
        llm_server.fail = lambda i, body: None  # the LLM is back
        time.sleep(0.3)  # past the breaker's reset period
        counts = asyncio.run(disco.tick(now=100.0 + 2 * settings.discovery_interval_seconds))
        assert counts is not None and counts["created"] == 3 and counts["assigned"] == 30
        assert len(buffer) == 0 and disco.failures == 0
    finally:
        judge.close()


def test_the_failed_runs_alert_exists():
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules/dialin.rules.yml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    expr = alerts["DialinDiscoveryFailing"]["expr"]
    assert 'dialin_discovery_runs_total{result="failed"}' in expr


# --- the whole worker with a stalled LLM -------------------------------------------------------

def _events(n: int, start: int = 0) -> list[tuple[bytes, bytes]]:
    import csv

    with open(ROOT / "tests/data/banking77_sample.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[start:start + n]
    out = []
    for i, row in enumerate(rows, start):
        event = {"call_id": f"c{i}", "utterance_id": f"o-{i}", "role": "customer", "text": row["text"]}
        out.append((event["call_id"].encode(), json.dumps(event).encode()))
    return out


@pytest.mark.slow
def test_a_stalled_llm_never_stalls_ingestion(workers, kafka_settings, llm_server):
    from dialin.streams.tools.replay import replay
    from dialin.streams.tools.supervise import metric

    release = threading.Event()
    llm_server.stall_seconds = 0.0
    llm_server.fail = lambda i, body: (release.wait(120), "500")[1]  # hangs until released
    worker = workers.start({
        "DIALIN_JUDGE": "openai", "DIALIN_LLM_URL": llm_server.url, "DIALIN_LLM_MODEL": "test-model",
        "DIALIN_LLM_TIMEOUT": "60", "DIALIN_LLM_MAX_RETRIES": "0", "DIALIN_EMBEDDER": "lsa",
        "DIALIN_EMBEDDER_FIT_FILE": str(ROOT / "tests/data/banking77_sample.csv"),
        "DIALIN_MATCH_THRESHOLD": "0.99", "DIALIN_DISCOVERY_MIN_UTTERANCES": "40",
        "DIALIN_DISCOVERY_INTERVAL_SECONDS": "1", "DIALIN_BATCH_SIZE": "16",
        "DIALIN_BATCH_SECONDS": "0.2"})
    try:
        assert replay(iter(_events(80)), kafka_settings).sent == 80
        wait_for(lambda: llm_server.in_flight > 0, 120, message="a discovery run asking the LLM")
        # The LLM hangs; a second wave must still be decided while that request is open.
        assert replay(iter(_events(60, start=80)), kafka_settings).sent == 60
        wait_for(lambda: metric(worker.metrics(), "dialin_events_total") >= 140, 120,
                 message="every event decided while the LLM hangs")
        assert llm_server.in_flight > 0 and not release.is_set()
        samples = worker.metrics()
        assert metric(samples, "dialin_events_total", outcome="buffered") == 140
        assert metric(samples, "dialin_discovery_runs_total", result="ok") == 0
        assert worker.ready()
    finally:
        release.set()  # the LLM now answers 500: the run fails, the breaker opens
    wait_for(lambda: metric(worker.metrics(), "dialin_discovery_runs_total", result="failed") >= 1,
             120, message="the failed discovery run to be counted")
    wait_for(lambda: metric(worker.metrics(), "dialin_buffer_utterances") == 140, 60,
             message="the buffer gauge after the failed run")  # nothing lost, nothing assigned
    samples = worker.metrics()
    assert metric(samples, "dialin_discovery_runs_total", result="ok") == 0
