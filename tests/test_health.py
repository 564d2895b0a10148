"""Health and operations (issue 7, item 8): liveness without Kafka, readiness that follows
Kafka and drops on SIGTERM, a graceful drain, consumer lag, the stalled-consumer detector,
and endpoints that never carry utterance text."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from kafka_harness import WorkerFactory, wait_for

from dialin.streams.service.app import LagProbe
from dialin.streams.tools.broker import EmbeddedBroker, free_port
from dialin.streams.service.health import StallDetector
from dialin.streams.tools.replay import replay
from dialin.streams.tools.supervise import metric

ROOT = Path(__file__).resolve().parents[1]
#: An lsa worker starts in seconds; discovery never runs in these tests.
ENV = {"DIALIN_EMBEDDER": "lsa", "DIALIN_EMBEDDER_FIT_FILE": str(ROOT / "tests/data/banking77_sample.csv"),
       "DIALIN_DISCOVERY_MIN_UTTERANCES": "1000000", "DIALIN_DISCOVERY_MAX_AGE_SECONDS": "1e9",
       "DIALIN_DISCOVERY_IDLE_SECONDS": "0",
       "DIALIN_LAG_INTERVAL_SECONDS": "1", "DIALIN_BATCH_SECONDS": "0.2"}


def http(port: int, path: str) -> tuple[int | None, str]:
    """(status, body); (None, "") when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return None, ""


# --- the stall detector ---------------------------------------------------------------------

def test_stall_detector_flags_only_a_partition_without_committed_progress():
    d = StallDetector(stall_seconds=30)
    p = ("utt", 0)
    assert not d.observe(p, committed=10, lag=5, now=0)
    assert not d.observe(p, committed=10, lag=8, now=29)  # not long enough yet
    assert d.observe(p, committed=10, lag=9, now=31)  # no progress while lag grows
    assert not d.observe(p, committed=12, lag=9, now=32)  # progress resets it
    assert not d.observe(p, committed=12, lag=0, now=100)  # nothing to do is not a stall
    assert not d.observe(p, committed=12, lag=3, now=120)  # new work, not yet overdue
    assert d.observe(p, committed=12, lag=4, now=131)  # idle consumer that never picks it up


@pytest.mark.slow
def test_lag_and_a_stall_are_measured_on_the_real_broker(kafka_settings):
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    from dialin.streams.service.app import ensure_topics

    s = kafka_settings.model_copy(update={"topic_partitions": 1})
    asyncio.run(ensure_topics(s))
    replay(iter([(b"k", b"x")] * 5), s)
    probe, d = LagProbe(s), StallDetector(stall_seconds=10)
    tp = (s.topic_utterances, 0)

    async def run() -> list[tuple[int, bool]]:
        seen = []
        try:
            for now in (0, 20):
                lag = (await probe.measure([tp]))[tp]
                seen.append((lag, d.observe(tp, probe.committed[tp], lag, now)))
                await asyncio.to_thread(replay, iter([(b"k", b"y")] * 3), s)
            committer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, group_id=s.app_id,
                                         enable_auto_commit=False)
            await committer.start()
            try:
                committer.assign([TopicPartition(*tp)])
                await committer.commit({TopicPartition(*tp): OffsetAndMetadata(11, "")})
            finally:
                await committer.stop()
            lag = (await probe.measure([tp]))[tp]
            seen.append((lag, d.observe(tp, probe.committed[tp], lag, 40)))
            assert await probe.reachable()
        finally:
            await probe.stop()
        return seen

    seen = asyncio.run(run())
    assert seen[0][0] >= 1 and not seen[0][1]
    assert seen[1][0] > seen[0][0] and seen[1][1]  # lag grew, nothing committed: stalled
    assert not seen[2][1]  # committed progress clears it


# --- the whole worker ------------------------------------------------------------------------

@pytest.mark.slow
def test_readiness_follows_kafka_while_liveness_does_not(tmp_path):
    port = free_port()
    tag = uuid.uuid4().hex[:8]
    from dialin.streams.settings import Settings

    settings = Settings(kafka_bootstrap=f"127.0.0.1:{port}", app_id=f"h-{tag}",
                        topic_utterances=f"utt-{tag}", topic_assignments=f"asg-{tag}",
                        topic_updates=f"upd-{tag}", topic_dlq=f"dlq-{tag}", topic_buffer=f"buf-{tag}",
                        topic_catalog=f"cat-{tag}", topic_partitions=1)
    factory = WorkerFactory(settings, tmp_path)
    embedded = EmbeddedBroker(port, log_path=tmp_path / "broker.log").start()
    try:
        worker = factory.start(ENV)
        assert http(worker.metrics_port, "/readyz")[0] == 200
        embedded.stop()  # Kafka goes away after start
        status, body = wait_for(lambda: (r := http(worker.metrics_port, "/readyz"))[0] == 503 and r,
                                60, 0.2, "readiness to drop without Kafka")
        assert json.loads(body)["kafka"] is False
        assert http(worker.metrics_port, "/healthz")[0] == 200  # alive: no restart storm
        assert metric(worker.metrics(), "dialin_ready") == 0
        assert worker.alive
    finally:
        embedded.stop()
        factory.close()


@pytest.mark.slow
def test_sigterm_drops_readiness_drains_and_no_text_leaks(workers, kafka_settings):
    s = kafka_settings
    marker = f"zqx{uuid.uuid4().hex[:10]}"
    texts = [f"my card {marker} number {i} was declined" for i in range(40)]
    events = [(f"c{i}".encode(), json.dumps({"call_id": f"c{i}", "text": t}).encode())
              for i, t in enumerate(texts)]
    worker = workers.start(ENV)
    assert replay(iter(events), s).sent == len(events)
    wait_for(lambda: metric(worker.metrics(), "dialin_events_total") >= len(events), 120,
             message="every event decided")
    samples = wait_for(lambda: (m := worker.metrics()) and ("dialin_consumer_lag", frozenset(
        {("topic", s.topic_utterances), ("partition", "0")})) in m and metric(
        m, "dialin_consumer_lag") == 0 and m, 60, message="consumer lag exported and drained")
    assert metric(samples, "dialin_consumer_stalled") == 0
    for path in ("/metrics", "/healthz", "/readyz"):
        status, body = http(worker.metrics_port, path)
        assert status == 200 and marker not in body and "declined" not in body, path

    worker._proc.send_signal(signal.SIGTERM)  # what Kubernetes does first
    seen = []
    while worker.alive and len(seen) < 2000:
        seen.append(http(worker.metrics_port, "/readyz"))
        time.sleep(0.01)
    statuses = [st for st, _ in seen if st is not None]
    assert 503 in statuses, statuses[:5]  # not ready while draining...
    assert 200 not in statuses[statuses.index(503):]  # ...and never ready again
    assert json.loads(next(b for st, b in seen if st == 503))["stopping"] is True
    assert worker.stop() == 0  # drained and exited cleanly

    # Offsets were committed on the way out: a new worker redelivers nothing old.
    again = workers.start(ENV)
    assert replay(iter([(b"n", json.dumps({"call_id": "n", "text": "new one"}).encode())]), s).sent == 1
    wait_for(lambda: (m := again.metrics()) and metric(m, "dialin_events_total") >= 1 and len(
        [k for k in m if k[0] == "dialin_consumer_lag"]) == s.topic_partitions and metric(
        m, "dialin_consumer_lag") == 0, 90, message="the new worker caught up")
    assert metric(again.metrics(), "dialin_events_total") == 1
