"""The streaming worker: the ingest agent (faust ``test_context``), the discovery run, the
Kafka client security settings, and the whole worker on the real embedded broker."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from kafka_harness import records_of, wait_for
from openai_server import task_of

from dialin.models import CatalogIntent, Embedder, Intent, IntentCatalog, Verdict
from dialin.models import LSAEmbedder
from dialin.streams.service import metrics
from dialin.streams.service.app import InputProgress
from dialin.streams.service.buffer import BufferStore
from dialin.streams.service.discovery import Discovery, DiscoveryFailedWarning
from dialin.streams.service.kafka_config import KafkaConfigError, security_kwargs
from dialin.streams.service.records import BufferEntry, MemoryEntry
from dialin.streams.settings import Settings


class RecordingPublisher:
    """Stands in for the Kafka publisher: keeps ``(topic, key, value)`` in send order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str | None, bytes | None]] = []

    async def send_all(self, records) -> None:
        for topic, key, value in records:
            key = key.decode() if isinstance(key, bytes) else key
            self.sent.append((topic, key, value))

    def on(self, topic: str) -> list[tuple[str | None, dict | None]]:
        return [(k, None if v is None else json.loads(v)) for t, k, v in self.sent if t == topic]


def counter(c, *labels) -> float:
    return (c.labels(*labels) if labels else c)._value.get()


@pytest.fixture(scope="module")
def lsa(english_sample) -> LSAEmbedder:
    return LSAEmbedder(n_components=64, random_state=0).fit(english_sample.texts)


# --- ingest agent ----------------------------------------------------------------------

def test_ingest_agent_assigns_buffers_and_dead_letters(lsa, english_sample, tmp_path):
    from dialin.streams.service.worker import Worker

    settings = Settings(data_dir=str(tmp_path), batch_size=4, batch_seconds=0.05,
                        app_id="t-ingest", match_threshold=0.9)
    parts = Worker(settings, embedder=lsa, make_estimator=lambda: None)
    app = parts.app
    text = english_sample.texts[0]
    parts.catalog.put(CatalogIntent(intent_id="intent-known", label="known", role="customer",
                                    centroid=lsa.encode([text])[0], size=5))
    publisher = RecordingPublisher()
    parts.ingestor.publisher = publisher
    before = counter(metrics.EVENTS, "invalid")
    good = {"call_id": "c1", "utterance_id": "c1-0", "turn": 0, "role": "customer", "text": text}
    payloads = [json.dumps(good).encode(), b"\xff not utf-8",
                json.dumps({"call_id": "c1", "role": "customer",
                            "text": "zzzz qqqq unrelated words"}).encode(),
                json.dumps(good).encode()]  # the first again: the same utterance_id

    async def run() -> None:
        parts.catalog_ready.set()
        agent = app.agents["dialin-ingest"]
        async with agent.test_context() as ctx:
            for p in payloads:
                await ctx.put(p, key=b"c1")
            for _ in range(200):
                if len(publisher.sent) >= 3:
                    break
                await asyncio.sleep(0.05)

    asyncio.run(run())
    [(akey, assignment)] = publisher.on(settings.topic_assignments)
    assert assignment["label"] == "known" and assignment["score"] >= 0.9
    assert akey == assignment["utterance_id"]
    [(_, entry)] = publisher.on(settings.topic_buffer)
    assert entry["text"] == "zzzz qqqq unrelated words" and entry["role"] == "customer"
    assert entry["utterance_id"] == f"{settings.topic_utterances}/0/2"  # no id: its position
    assert len(BufferEntry.model_validate(entry).vector()) == 64
    [(_, dead)] = publisher.on(settings.topic_dlq)
    assert dead["reason"].startswith("invalid UTF-8") and dead["payload_encoding"] == "base64"
    [(_, remembered)] = publisher.on(settings.topic_memory)  # kept for consolidation
    assert (remembered["intent_id"], remembered["version"]) == ("intent-known", 1)
    assert (assignment["version"], assignment["cause"]) == (1, "matched")
    assert assignment["intent_state"] == "active"  # the matched intent's lifecycle state
    assert len(publisher.sent) == 4  # the redelivered event was de-duplicated
    assert counter(metrics.EVENTS, "invalid") == before + 1


class BrokenEmbedder(Embedder):
    name = "broken"

    def encode(self, texts):
        raise MemoryError("no memory")


def test_a_batch_that_cannot_be_embedded_is_dead_lettered_not_lost():
    from dialin.streams.service.ingest import Inbound, Ingestor

    settings = Settings()
    publisher = RecordingPublisher()
    ingestor = Ingestor(settings, BrokenEmbedder(), IntentCatalog("broken"), publisher)
    raw = json.dumps({"call_id": "c9", "text": "hello"}).encode()
    counts = asyncio.run(ingestor.process([Inbound(key=b"c9", value=raw)]))
    assert counts["invalid"] == 1
    [(key, dead)] = publisher.on(settings.topic_dlq)
    assert key == "c9" and dead["reason"] == "processing failed: MemoryError"
    assert json.loads(dead["payload"])["text"] == "hello" and dead["utterance_id"].startswith("u-")


def test_the_encoder_process_embeds_as_a_thread_does_and_outlives_its_death(lsa, english_sample):
    """DIALIN_ENCODER_PROCESSES: the embeddings that come back from the encoder's processes
    are the thread's, also from a batch cut between two; when the process dies (killed for
    memory, say), the batch in flight is embedded by a new one, not dead-lettered."""
    import os
    import signal

    from dialin.streams.service.encoder import ProcessEncoder, ThreadEncoder
    from dialin.streams.service.ingest import Inbound, Ingestor

    s = Settings(embedder="lsa", match_threshold=0.9)
    texts = english_sample.texts[:20]
    encoder = ProcessEncoder(lsa, s)
    try:
        there = asyncio.run(encoder.encode(texts))
        here = asyncio.run(ThreadEncoder(lsa).encode(texts))
        assert there.dtype == np.float32 and there.shape == (20, lsa.n_components_)
        np.testing.assert_allclose(there, here, atol=1e-6)
        two = ProcessEncoder(lsa, s, processes=2)
        try:
            many = english_sample.texts[:90]
            (short, long), _ = two._cut(many)
            assert len(short) + len(long) == 90 and max(map(len, short)) <= min(map(len, long))
            work = [sum(len(t) + 20 for t in part) for part in (short, long)]
            assert abs(work[0] - work[1]) <= max(len(t) + 20 for t in many)  # equal work
            np.testing.assert_allclose(asyncio.run(two.encode(many)),
                                       asyncio.run(ThreadEncoder(lsa).encode(many)), atol=1e-6)
        finally:
            two.close()

        [pid] = list(encoder._pool._processes)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not Path(f"/proc/{pid}").exists()
                 or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2], 10,
                 message="the encoder process to die")
        restarts = counter(metrics.ENCODER_RESTARTS)
        ingestor = Ingestor(s, lsa, IntentCatalog(lsa.name), RecordingPublisher(), encoder=encoder)
        raws = [json.dumps({"call_id": f"c{i}", "text": t}).encode() for i, t in enumerate(texts[:3])]
        counts = asyncio.run(ingestor.process([Inbound(key=b"k", value=r) for r in raws]))
        assert counts == {"assigned": 0, "buffered": 3, "invalid": 0, "duplicate": 0}
        assert encoder.restarts == 1 and not ingestor.publisher.on(s.topic_dlq)
        assert counter(metrics.ENCODER_RESTARTS) == restarts + 1
        assert list(encoder._pool._processes) != [pid]
    finally:
        encoder.close()


ENCODING_PARENT = """
import asyncio, sys, time
from dialin.models import LSAEmbedder
from dialin.streams.service.encoder import ProcessEncoder
from dialin.streams.settings import Settings

if __name__ == "__main__":
    texts = ["where is my card", "my card has not arrived", "cancel my transfer", "top up failed"]
    encoder = ProcessEncoder(LSAEmbedder(n_components=2).fit(texts), Settings(embedder="lsa"))
    asyncio.run(encoder.encode(texts))
    print(*encoder._pool._processes, flush=True)
    time.sleep(600)
"""


FITTING_PARENT = """
import time
import numpy as np
from dialin.streams import factory
from dialin.streams.service.fitter import ProcessFitter
from dialin.streams.settings import Settings

if __name__ == "__main__":
    s = Settings()
    X = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    fitter = ProcessFitter()
    fitter.fit(factory.build_estimator(s, factory.build_judge(s), factory.build_namer(s)),
               X, [f"text {i}" for i in range(40)])
    print(*fitter._pool._processes, flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize("parent_script", [ENCODING_PARENT, FITTING_PARENT],
                         ids=["encoder", "discovery fit"])
def test_a_helper_process_exits_when_the_worker_is_killed(tmp_path, parent_script):
    """A worker killed without its shutdown (SIGKILL, the OOM killer) leaves no encoder or
    fit process behind holding its memory."""
    import os
    import signal
    import subprocess
    import sys

    script = tmp_path / "parent.py"
    script.write_text(parent_script)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert Path(f"/proc/{child}").exists()
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)

    def gone() -> bool:
        try:
            return os.waitpid(child, os.WNOHANG) != (0, 0)  # not ours: raises ChildProcessError
        except ChildProcessError:
            stat = Path(f"/proc/{child}/stat")
            return not stat.exists() or stat.read_text().split()[2] == "Z"

    wait_for(gone, 15, message="the orphaned helper process to exit")


def test_the_discovery_fit_runs_in_a_lower_priority_process_and_outlives_its_death(
        english_sample, english_lsa):
    """DIALIN_DISCOVERY_PROCESS: the offline fit runs in a process of its own, at a lower
    CPU priority than the worker, and finds what the same fit on a thread finds; the judge
    comes back prepared (a consolidation asks it union questions after the fit). A fit
    process that dies fails that fit only: the next fit starts another."""
    import os
    import signal
    from concurrent.futures.process import BrokenProcessPool

    from dialin.streams import factory
    from dialin.streams.service.fitter import FIT_NICENESS, ProcessFitter, ThreadFitter

    s = Settings()
    assert factory.fits_in_process(s) and isinstance(factory.build_fitter(s), ProcessFitter)
    for other in (Settings(discovery_process=False),
                  Settings(judge="openai", llm_url="http://127.0.0.1:9/v1")):
        assert isinstance(factory.build_fitter(other), ThreadFitter)

    X, texts = english_lsa[:240], english_sample.texts[:240]

    def estimator():
        return factory.build_estimator(s, factory.build_judge(s), factory.build_namer(s))

    fitter = ProcessFitter()
    try:
        there = fitter.fit(estimator(), X, texts)
        here = ThreadFitter().fit(estimator(), X, texts)
        assert there.n_clusters_ > 1
        np.testing.assert_array_equal(there.labels_, here.labels_)
        assert [i.label for i in there.intents_] == [i.label for i in here.intents_]
        assert there.calls_by_phase_ == here.calls_by_phase_
        assert there.judge.X_.shape == X.shape  # prepared there, usable here
        # a consolidation's warm start reaches the fit process (fit parameters go along)
        prior = np.where(here.in_group_, here.labels_, -1)
        warm_there = fitter.fit(estimator(), X, texts, prior_labels=prior)
        warm_here = ThreadFitter().fit(estimator(), X, texts, prior_labels=prior)
        assert warm_there.calls_by_phase_.get("recheck", 0) > 0
        np.testing.assert_array_equal(warm_there.labels_, warm_here.labels_)
        [pid] = list(fitter._pool._processes)
        assert pid != os.getpid()
        assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0) + FIT_NICENESS

        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not Path(f"/proc/{pid}").exists()
                 or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2], 10,
                 message="the fit process to die")
        time.sleep(0.5)  # the pool's manager thread notices
        with pytest.raises(BrokenProcessPool):
            fitter.fit(estimator(), X, texts)
        assert fitter.restarts == 1
        again = fitter.fit(estimator(), X, texts)
        np.testing.assert_array_equal(again.labels_, here.labels_)
        assert list(fitter._pool._processes) != [pid]
    finally:
        fitter.close()


def _failing_route(ingestor, monkeypatch, fail_calls: set[int]) -> list[int]:
    """Make ``ingestor._route`` raise on the given call numbers (1-based); return the calls."""
    calls: list[int] = []
    route = ingestor._route

    def flaky(*args, **kwargs):
        calls.append(len(calls) + 1)
        if calls[-1] in fail_calls:
            raise RuntimeError("injected")
        return route(*args, **kwargs)

    monkeypatch.setattr(ingestor, "_route", flaky)
    return calls


def test_a_failure_after_embedding_is_retried_then_dead_lettered(lsa, monkeypatch):
    """faust acks a batch even when the body raises: a failure in routing or publishing is
    retried once (keyed outputs overwrite), then every valid event is dead-lettered with its
    raw payload and source position, never acked with nothing produced."""
    from dialin.streams.service.ingest import Inbound, Ingestor

    s = Settings(match_threshold=0.9)
    raws = [json.dumps({"call_id": f"c{i}", "text": f"words number {i}"}).encode() for i in range(3)]
    batch = [Inbound(key=b"k", value=r, topic="utt", partition=0, offset=i) for i, r in enumerate(raws)]
    batch.append(Inbound(key=b"k", value=b"not json", topic="utt", partition=0, offset=3))

    once = Ingestor(s, lsa, IntentCatalog(lsa.name), RecordingPublisher())
    calls = _failing_route(once, monkeypatch, {1})
    assert asyncio.run(once.process(batch)) == {"assigned": 0, "buffered": 3, "invalid": 1,
                                                 "duplicate": 0}
    assert calls == [1, 2]
    assert [k for k, _ in once.publisher.on(s.topic_buffer)] == ["utt/0/0", "utt/0/1", "utt/0/2"]
    assert len(once.publisher.on(s.topic_dlq)) == 1  # the bad payload only

    twice = Ingestor(s, lsa, IntentCatalog(lsa.name), RecordingPublisher())
    _failing_route(twice, monkeypatch, {1, 2})
    assert asyncio.run(twice.process(batch))["invalid"] == 4
    assert not twice.publisher.on(s.topic_buffer) and not twice.publisher.on(s.topic_assignments)
    letters = {d["offset"]: d for _, d in twice.publisher.on(s.topic_dlq)}
    assert sorted(letters) == [0, 1, 2, 3]
    for i, raw in enumerate(raws):
        assert letters[i]["reason"] == "processing failed: RuntimeError"
        assert letters[i]["payload"].encode() == raw and letters[i]["utterance_id"] == f"utt/0/{i}"
        assert letters[i]["source_topic"] == "utt" and letters[i]["partition"] == 0


# --- discovery -------------------------------------------------------------------------

class UnionJudge:
    """The judge a consolidation asks about unions of known intents: Good unless
    ``refuse``; keeps the views it was shown."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.asked: list = []

    def judge(self, views):
        self.asked += views
        return [Verdict(good=not self.refuse, confidence=0.9, backend="test") for _ in views]


class DirectionEstimator:
    """Clusters rows by their largest coordinate; clusters in ``bad`` get a Bad verdict,
    those in ``unjudged`` none at all. ``judge`` answers union questions."""

    def __init__(self, bad=(), fail=False, unjudged=(), judge=None) -> None:
        self.bad = bad
        self.fail = fail
        self.unjudged = unjudged
        self.judge = judge if judge is not None else UnionJudge()

    def fit(self, X, texts=None):
        if self.fail:
            raise RuntimeError("LLM down")
        self.labels_ = np.argmax(X, axis=1)
        self.intents_ = [
            Intent(intent_id=int(c), label=f"topic-{c}", members=tuple(np.flatnonzero(self.labels_ == c)),
                   examples=(texts[int(np.flatnonzero(self.labels_ == c)[0])],),
                   verdict=None if int(c) in self.unjudged
                   else Verdict(good=int(c) not in self.bad, confidence=0.8, backend="test"))
            for c in np.unique(self.labels_)]
        self.calls_by_phase_ = {"judge": len(self.intents_)}
        return self


class BlockedEstimator(DirectionEstimator):
    """A fit that blocks in its thread until released, as a slow LLM holds a real one."""

    def __init__(self) -> None:
        super().__init__()
        self.started, self.release = threading.Event(), threading.Event()

    def fit(self, X, texts=None):
        self.started.set()
        assert self.release.wait(60), "the test never released the fit"
        return super().fit(X, texts)


def fill(buffer: BufferStore, directions, n_each: int, accepted_at: float, role="customer",
         tag="a") -> None:
    rng = np.random.default_rng(len(buffer))
    for d in directions:
        for i in range(n_each):
            v = np.zeros(8, np.float32)
            v[d] = 1.0
            v += rng.normal(0, 0.05, 8).astype(np.float32)
            v /= np.linalg.norm(v)
            e = BufferEntry(utterance_id=f"{tag}{d}-{i}", call_id="c", text=f"text {d} {i}", role=role,
                            embedding=BufferEntry.pack(v), accepted_at=accepted_at)
            buffer.apply(e.utterance_id.encode(), e.model_dump_json().encode())


def make_discovery(estimator, **overrides):
    """A Discovery with the redactor the worker hands it, publishing to a recorder."""
    from dialin.streams.factory import build_redactor

    settings = Settings(discovery_min_utterances=20, discovery_max_age_seconds=1e9,
                        match_threshold=0.9, **overrides)
    catalog = IntentCatalog("emb", match_threshold=settings.match_threshold)
    buffer, publisher = BufferStore(), RecordingPublisher()
    return Discovery(settings, catalog, buffer, publisher, lambda: estimator,
                     redactor=build_redactor(settings)), publisher


def remember(disco: Discovery, directions, n_each: int, intent_id: str, tag: str,
             accepted_at: float) -> None:
    """Put assigned utterances in the discovery's memory, as its reader would."""
    staging = BufferStore()
    fill(staging, directions, n_each, accepted_at, tag=tag)
    for e in staging.entries.values():
        m = MemoryEntry(**e.model_dump(exclude={"version"}), intent_id=intent_id, version=1)
        disco.memory.apply(m.utterance_id.encode(), m.model_dump_json().encode())


def test_discovery_publishes_good_clusters_in_a_crash_safe_order():
    disco, pub = make_discovery(DirectionEstimator(bad={2}))
    fill(disco.buffer, [0, 1, 2], 10, accepted_at=time.time())
    counts = asyncio.run(disco.tick())
    s = disco.settings
    assert counts["created"] == 2 and counts["assigned"] == 20
    topics = [t for t, _, _ in pub.sent]
    # catalog records, then updates, then assignments, then tombstones
    order = [topics.index(t) for t in (s.topic_catalog, s.topic_updates, s.topic_assignments, s.topic_buffer)]
    assert order == sorted(order)
    updates = [u for _, u in pub.on(s.topic_updates)]
    assert {u["status"] for u in updates} == {"created"} and all("centroid" not in u for u in updates)
    assert all(u["judge"] == {"backend": "test", "confidence": 0.8} for u in updates)
    ids = {u["intent_id"] for u in updates}
    assert {a["intent_id"] for _, a in pub.on(s.topic_assignments)} == ids
    assert all(json.loads(v)["centroid"] for t, _, v in pub.sent if t == s.topic_catalog)
    tombstones = [k for k, v in pub.on(s.topic_buffer) if v is None]
    assert len(tombstones) == 20
    assert sorted(disco.buffer.entries) == [f"a2-{i}" for i in range(10)]  # the Bad cluster stays


def test_a_pause_in_the_traffic_examines_what_arrived_at_once():
    """Below the size trigger nothing runs while utterances keep arriving; once none arrived
    for discovery_idle_seconds, what arrived is examined: the buffer, then (the memory now
    holding what arrived since the last consolidation) one consolidation; then nothing
    until something new arrives. 0 turns it off."""
    disco, _ = make_discovery(DirectionEstimator(), discovery_idle_seconds=30)
    t0 = time.time()
    fill(disco.buffer, [0, 1], 5, accepted_at=t0)  # 10 buffered: under the size trigger of 20
    assert asyncio.run(disco.tick(now=t0 + 29)) is None  # still within the pause
    assert asyncio.run(disco.tick(now=t0 + 31))["created"] == 2
    # what the run assigned arrived since the last consolidation (none): one consolidation
    assert asyncio.run(disco.tick(now=t0 + 62))["updated"] == 2
    assert asyncio.run(disco.tick(now=t0 + 93)) is None  # nothing arrived since: no more
    remember(disco, [2], 3, "intent-old", "m", accepted_at=t0 + 100)  # under the growth trigger
    assert not disco.should_consolidate(t0 + 120) and disco.should_consolidate(t0 + 131)
    off, _ = make_discovery(DirectionEstimator(), discovery_idle_seconds=0)
    fill(off.buffer, [0, 1], 5, accepted_at=t0)
    assert asyncio.run(off.tick(now=t0 + 3600)) is None


class Shouting:
    """Stands in for the PII redactor: upper-cases every text it is given."""

    def redact_many(self, texts):
        return [t.upper() for t in texts]

    def redact_label(self, label):
        return label.upper()


def test_discovery_publishes_labels_and_examples_through_the_redactor_it_is_handed():
    settings = Settings(discovery_min_utterances=20, discovery_max_age_seconds=1e9)
    buffer, publisher = BufferStore(), RecordingPublisher()
    disco = Discovery(settings, IntentCatalog("emb"), buffer, publisher, DirectionEstimator,
                      redactor=Shouting())
    fill(buffer, [0, 1], 10, accepted_at=time.time())
    assert asyncio.run(disco.tick())["created"] == 2
    updates = [u for _, u in publisher.on(settings.topic_updates)]
    assert sorted(u["label"] for u in updates) == ["TOPIC-0", "TOPIC-1"]
    assert {e.split()[0] for u in updates for e in u["examples"]} == {"TEXT"}


def test_the_worker_hands_its_parts_the_embedder_and_the_factorys_redactor(lsa, tmp_path):
    from dialin.streams import factory
    from dialin.streams.service.worker import Worker

    for redaction in (True, False):
        settings = Settings(data_dir=str(tmp_path), app_id="t-parts", pii_redaction=redaction)
        worker = Worker(settings, embedder=lsa, make_estimator=DirectionEstimator)
        assert worker.discovery.redactor is factory.build_redactor(settings)
        assert (worker.discovery.redactor is None) == (not redaction)
        assert worker.ingestor.embedder is lsa and worker.catalog.embedder == lsa.name
        assert worker.discovery.catalog is worker.catalog and worker.discovery.memory is worker.memory
        assert not hasattr(worker.app, "dialin")  # nothing glued onto the faust app


def test_the_service_embedder_is_fitted_once_then_loaded_by_every_worker(tmp_path):
    from dialin.streams.factory import SettingsError, build_service_embedder

    settings = Settings(embedder="lsa", data_dir=str(tmp_path))
    with pytest.raises(SettingsError, match="DIALIN_EMBEDDER_FIT_FILE"):
        build_service_embedder(settings)
    fit_file = Path(__file__).parent / "data" / "banking77_sample.csv"
    fitted = build_service_embedder(settings.model_copy(update={"embedder_fit_file": str(fit_file)}))
    assert (tmp_path / "lsa" / "lsa.json").is_file()
    again = build_service_embedder(settings)  # no fit file needed any more: the saved model
    assert again.name == fitted.name
    np.testing.assert_allclose(again.encode(["I lost my card"]), fitted.encode(["I lost my card"]),
                               atol=1e-6)


def test_known_traffic_is_matched_and_a_consolidation_continues_the_same_ids():
    disco, pub = make_discovery(DirectionEstimator())
    fill(disco.buffer, [0, 1], 15, accepted_at=time.time())
    asyncio.run(disco.tick())
    s = disco.settings
    first = {u["intent_id"] for _, u in pub.on(s.topic_updates)}
    assert len(disco.memory) == 30  # what it assigned is remembered at once
    assert {(a["version"], a["cause"]) for _, a in pub.on(s.topic_assignments)} == {(1, "discovered")}
    pub.sent.clear()
    fill(disco.buffer, [0, 1], 15, accepted_at=time.time() + 1, tag="b")
    counts = asyncio.run(disco.tick(now=time.time() + 2))
    matched = [a for _, a in pub.on(s.topic_assignments)]
    assert len(matched) == 30 and {a["cause"] for a in matched} == {"matched"}  # the re-match
    assert {a["intent_id"] for a in matched} == first
    assert disco.consolidations == 1 and counts["reassigned"] == 0 and counts["created"] == 0
    second = [u for _, u in pub.on(s.topic_updates)]
    assert {u["intent_id"] for u in second} == first
    assert {(u["status"], u["version"], u["size"]) for u in second} == {("updated", 2, 15 + 15)}


def test_a_consolidation_continues_an_intent_a_crashed_run_published_without_its_members():
    """A run killed after publishing an intent's catalog record and ``created`` update,
    before its assignments, leaves the intent in the catalog and its members buffered.
    A consolidation that finds the same cluster gets the same id (it comes from the
    members): it continues that intent, and never publishes ``created`` for it again
    under a suffixed label (seen in test_delivery's random SIGKILLs)."""
    from dialin.models import new_intent_id

    disco, pub = make_discovery(DirectionEstimator())
    s = disco.settings
    fill(disco.buffer, [0, 1], 15, accepted_at=time.time())
    asyncio.run(disco.tick())  # intents topic-0 and topic-1, their members remembered
    known = next(u["intent_id"] for _, u in pub.on(s.topic_updates))
    # the crashed run's intent: published, its 15 members still buffered
    fill(disco.buffer, [2], 15, accepted_at=time.time() + 1, tag="b")
    crashed = new_intent_id("customer", sorted(disco.buffer.entries))
    disco.catalog.put(replace(disco.catalog.get(known), intent_id=crashed, label="topic-2",
                              examples=("text 2 0",)))
    fill(disco.buffer, [0], 15, accepted_at=time.time() + 1, tag="c")  # a consolidation is due
    pub.sent.clear()
    asyncio.run(disco.tick(now=time.time() + 2))
    assert disco.consolidations == 1
    updates = [u for _, u in pub.on(s.topic_updates) if u["intent_id"] == crashed]
    assert [(u["status"], u["label"]) for u in updates] == [("updated", "topic-2")], updates
    assert not [u for _, u in pub.on(s.topic_updates) if u["status"] == "created"]
    assert {a["intent_id"] for _, a in pub.on(s.topic_assignments)
            if a["utterance_id"].startswith("b2-")} == {crashed}


def _broad_intent(disco: Discovery) -> float:
    """A known intent ``intent-broad`` whose 30 remembered members the direction estimator
    cuts in two (20 x-utterances on coordinate 0, 10 y-utterances on 1); returns now."""
    now = time.time()
    disco.catalog.put(CatalogIntent(intent_id="intent-broad", label="broad", role="customer",
                                    centroid=np.ones(8, np.float32), size=30))
    remember(disco, [0], 20, "intent-broad", "x", now)
    remember(disco, [1], 10, "intent-broad", "y", now)
    return now


def test_a_consolidation_splits_a_broad_intent_and_reassigns_with_version_and_cause():
    """The fit cuts a known intent in two; the judge refuses the union of the parts, so the
    split stands: the smaller part is a new intent and its members move with a cause."""
    judge = UnionJudge(refuse=True)
    disco, pub = make_discovery(DirectionEstimator(judge=judge), consolidation_split_check="on")
    now = _broad_intent(disco)
    counts = asyncio.run(disco.tick(now=now + 1))
    s = disco.settings
    [view] = judge.asked
    assert view.split == 20 and len(view.members) == 30  # the larger part's rows, then the other's
    assert disco.consolidations == 1 and counts["created"] == 1 and counts["reassigned"] == 10
    updates = {u["intent_id"]: u for _, u in pub.on(s.topic_updates)}
    assert updates["intent-broad"]["status"] == "updated"  # the larger part keeps the id
    [new] = [u for u in updates.values() if u["status"] == "created"]
    assert new["split_from"] == "intent-broad" and new["size"] == 10
    moved = {k: a for k, a in pub.on(s.topic_assignments)}
    assert sorted(moved) == sorted(f"y1-{i}" for i in range(10))
    assert {(a["intent_id"], a["version"], a["cause"]) for a in moved.values()} == {
        (new["intent_id"], 2, "split")}
    assert {m["intent_id"] for k, m in pub.on(s.topic_memory)} == {new["intent_id"]}
    assert disco.memory.entries["y1-0"].version == 2
    topics = [t for t, _, _ in pub.sent]
    order = [topics.index(t) for t in (s.topic_catalog, s.topic_updates, s.topic_assignments,
                                       s.topic_memory)]
    assert order == sorted(order)
    # The new intent matches its own members from now on (its exemplars were published).
    ids, _ = disco.catalog.match(np.vstack([disco.memory.vectors["y1-3"]]), ["customer"])
    assert ids == [new["intent_id"]]


@pytest.mark.parametrize("mode, judge, asked", [("on", "heuristic", True), ("auto", "openai", True),
                                                ("auto", "heuristic", False), ("off", "openai", False)])
def test_a_consolidation_keeps_an_intent_whole_when_the_judge_holds_its_parts_are_one(mode, judge, asked):
    """A re-fit may cut a known intent in two clusters only because its merge phase ran out
    of budget: with the split check (``auto``: an LLM judge) the judge is asked about the two
    parts, and a Good union keeps the intent whole (no new intent, nobody moved). Without it
    the re-fit's split stands."""
    union = UnionJudge()
    disco, pub = make_discovery(DirectionEstimator(judge=union), consolidation_split_check=mode,
                                judge=judge)
    now = _broad_intent(disco)
    counts = asyncio.run(disco.tick(now=now + 1))
    s = disco.settings
    assert disco.consolidations == 1 and Discovery.split_check_on(disco.settings) is asked
    if not asked:
        assert not union.asked and counts["created"] == 1 and counts["reassigned"] == 10
        return
    [view] = union.asked
    assert view.split == 20 and len(view.members) == 30
    assert counts["created"] == 0 and counts["reassigned"] == 0
    [update] = [u for _, u in pub.on(s.topic_updates)]
    assert (update["intent_id"], update["status"], update["size"]) == ("intent-broad", "updated", 30)
    assert not pub.on(s.topic_assignments)


def test_the_split_check_asks_nothing_about_an_intent_a_person_decided():
    """A person's intent keeps its remembered members whatever the re-fit cut (see the
    imported-intents test), so there is no split to ask about: no judge call is spent."""
    from dialin.streams.service.discovery import IMPORTED

    union = UnionJudge()
    disco, pub = make_discovery(DirectionEstimator(judge=union), consolidation_split_check="on")
    now = _broad_intent(disco)
    disco.catalog.put(replace(disco.catalog.get("intent-broad"), judge_backend=IMPORTED))
    asyncio.run(disco.tick(now=now + 1))
    assert disco.consolidations == 1 and not union.asked
    assert not pub.on(disco.settings.topic_assignments)


def _split_setup(committed: dict[int, int] | None, lag: int = 0, fail: bool = False):
    """The broad-intent split above, with the y-utterances at input offsets 0-9 of
    partition 0 and a consumer group that has committed ``committed``."""
    disco, pub = make_discovery(DirectionEstimator(judge=UnionJudge(refuse=True)),
                                consolidation_max_lag=100)
    now = _broad_intent(disco)
    for i in range(10):
        m = disco.memory.entries[f"y1-{i}"].model_copy(update={"source_partition": 0,
                                                               "source_offset": i})
        disco.memory.apply(m.utterance_id.encode(), m.model_dump_json().encode())

    async def progress():
        if fail:
            raise ConnectionError("broker unreachable")
        return InputProgress(dict(committed or {}), lag)

    disco.progress = progress
    return disco, pub, now


def test_a_reassignment_waits_until_the_utterances_input_offset_is_committed():
    """A redelivered event writes version 1 again; the leader must not have written version
    2 before it (a subscriber of the compacted topic would keep the older decision)."""
    deferred = counter(metrics.REASSIGNMENTS_DEFERRED)
    disco, pub, now = _split_setup({0: 6})
    counts = asyncio.run(disco.tick(now=now + 1))
    s = disco.settings
    assert counts["reassigned"] == 6 and counts["deferred"] == 4
    assert counter(metrics.REASSIGNMENTS_DEFERRED) == deferred + 4
    moved = {k for k, _ in pub.on(s.topic_assignments)}
    assert moved == {f"y1-{i}" for i in range(6)}  # offsets 0-5 are committed, 6-9 are not
    assert {disco.memory.entries[f"y1-{i}"].version for i in range(6, 10)} == {1}
    # Once the group has committed past them, a later tick moves the rest, without a fit.
    pub.sent.clear()
    disco.progress = _split_setup({0: 8})[0].progress
    assert asyncio.run(disco.tick(now=now + 2)) is None and disco.consolidations == 1
    assert sorted(k for k, _ in pub.on(s.topic_assignments)) == ["y1-6", "y1-7"]
    disco.progress = _split_setup({0: 10})[0].progress
    asyncio.run(disco.tick(now=now + 3))
    later = {k: a for k, a in pub.on(s.topic_assignments)}
    assert sorted(later) == [f"y1-{i}" for i in range(6, 10)] and not disco.pending
    assert {(a["version"], a["cause"]) for a in later.values()} == {(2, "split")}
    assert {disco.memory.entries[k].version for k in later} == {2}


def test_no_reassignment_while_the_committed_offsets_cannot_be_read():
    disco, pub, now = _split_setup(None, fail=True)
    counts = asyncio.run(disco.tick(now=now + 1))
    assert counts["created"] == 1  # the intents are still published ...
    assert counts["reassigned"] == 0 and counts["deferred"] == 10  # ... nobody moves yet
    assert not pub.on(disco.settings.topic_assignments)


def test_a_due_consolidation_waits_while_the_input_lags():
    waited = counter(metrics.CONSOLIDATIONS_DEFERRED)
    disco, pub, now = _split_setup({0: 10}, lag=101)
    assert disco.should_consolidate(now + 1)
    assert asyncio.run(disco.tick(now=now + 1)) is None and disco.consolidations == 0
    assert counter(metrics.CONSOLIDATIONS_DEFERRED) == waited + 1
    disco.progress = _split_setup({0: 10}, lag=100)[0].progress  # at the limit: it runs
    assert asyncio.run(disco.tick(now=now + 2))["reassigned"] == 10
    assert disco.consolidations == 1


def test_a_redelivered_copy_of_an_assigned_utterance_is_dropped_not_decided_again():
    disco, pub, now = _split_setup({0: 10})
    fill(disco.buffer, [1], 10, accepted_at=now, tag="y")  # y1-0..9 buffered again
    fill(disco.buffer, [2], 10, accepted_at=now, tag="z")
    counts = asyncio.run(disco.tick(now=now + 1))
    s = disco.settings
    dropped = [k for k, v in pub.on(s.topic_buffer) if v is None]
    assert {f"y1-{i}" for i in range(10)} <= set(dropped)
    decided = [a for k, a in pub.on(s.topic_assignments) if k.startswith("y1-")]
    assert len(decided) == 10 and {a["version"] for a in decided} == {2}  # once, as a split
    assert counts["assigned"] == 10  # the z-utterances: the only buffered ones decided


def test_a_consolidation_merges_two_intents_the_fit_puts_together():
    disco, pub = make_discovery(DirectionEstimator())
    now = time.time()
    for iid in ("intent-a", "intent-b"):
        disco.catalog.put(CatalogIntent(intent_id=iid, label=iid, role="customer",
                                        centroid=np.eye(8, dtype=np.float32)[0], size=10))
    remember(disco, [0], 20, "intent-a", "a", now)
    remember(disco, [0], 8, "intent-b", "b", now)
    asyncio.run(disco.tick(now=now + 1))
    s = disco.settings
    updates = {u["intent_id"]: u for _, u in pub.on(s.topic_updates)}
    assert updates["intent-b"]["status"] == "merged" and updates["intent-b"]["merged_into"] == "intent-a"
    assert updates["intent-a"]["status"] == "updated"
    moved = [a for _, a in pub.on(s.topic_assignments)]
    assert len(moved) == 8 and {(a["intent_id"], a["cause"]) for a in moved} == {("intent-a", "merge")}
    assert not disco.catalog.get("intent-b").active


def test_a_consolidation_asks_the_judge_before_merging_and_a_refused_union_keeps_both():
    """The fit puts two known intents in one cluster: merging them is the judge's
    question. Refused, each keeps its own members and the new rows go to the nearer one."""
    for refuse in (False, True):
        judge = UnionJudge(refuse=refuse)
        disco, pub = make_discovery(DirectionEstimator(judge=judge))
        now = time.time()
        remember(disco, [0], 20, "intent-a", "a", now)
        for iid, d in (("intent-a", 0), ("intent-b", 0)):
            c = np.zeros(8, np.float32)
            c[d] = 1.0
            disco.catalog.put(CatalogIntent(intent_id=iid, label=iid, role="customer",
                                            centroid=c, size=10))
        # intent-b's members lean towards coordinate 7, still largest on 0: one cluster
        staging = BufferStore()
        fill(staging, [0], 8, now, tag="b")
        for e in staging.entries.values():
            v = e.vector().copy()
            v[7] = 0.8
            v /= np.linalg.norm(v)
            m = MemoryEntry(**e.model_dump(exclude={"version", "embedding"}),
                            embedding=BufferEntry.pack(v), intent_id="intent-b", version=1)
            disco.memory.apply(m.utterance_id.encode(), m.model_dump_json().encode())
        counts = asyncio.run(disco.tick(now=now + 1))
        [view] = judge.asked
        assert view.split == 20 and len(view.members) == 28  # A's 20 rows, then B's 8
        updates = {u["intent_id"]: u for _, u in pub.on(disco.settings.topic_updates)}
        moved = [a for _, a in pub.on(disco.settings.topic_assignments)]
        if not refuse:
            assert updates["intent-b"]["status"] == "merged" and len(moved) == 8
            continue
        assert counts["merged"] == 0 and counts["reassigned"] == 0 and not moved
        assert {(u["status"], u["size"]) for u in updates.values()} == {("updated", 20), ("updated", 8)}
        assert disco.catalog.get("intent-b").active and disco.catalog.get("intent-a").active


def test_a_consolidation_never_merges_or_regroups_imported_intents():
    """The fit puts the members of two imported intents together (as the merge test above
    does for discovered ones); a person's taxonomy is kept: nothing merged, nobody moved."""
    from dialin.streams.service.discovery import IMPORTED

    disco, pub = make_discovery(DirectionEstimator())
    now = time.time()
    for iid in ("intent-a", "intent-b"):
        disco.catalog.put(CatalogIntent(intent_id=iid, label=iid, role="customer",
                                        centroid=np.eye(8, dtype=np.float32)[0], size=10,
                                        judge_backend=IMPORTED))
    remember(disco, [0], 20, "intent-a", "a", now)
    remember(disco, [0], 8, "intent-b", "b", now)
    remember(disco, [1], 6, "intent-b", "c", now)  # a group the fit draws apart from intent-b
    asyncio.run(disco.tick(now=now + 1))
    s = disco.settings
    statuses = {u["intent_id"]: u["status"] for _, u in pub.on(s.topic_updates)}
    assert "merged" not in statuses.values() and "created" not in statuses.values()
    assert not pub.on(s.topic_assignments)
    assert disco.catalog.get("intent-b").active


class RenamingEstimator(DirectionEstimator):
    """Names each cluster ``<prefix>-<direction>``: a namer whose names can change."""

    prefix = "topic"

    def fit(self, X, texts=None):
        super().fit(X, texts)
        self.intents_ = [replace(i, label=f"{self.prefix}-{i.intent_id}") for i in self.intents_]
        return self


def _named_consolidation(remembered: int, arrived: int, **overrides):
    """An intent ``old-name`` the engine named for ``remembered`` utterances, ``arrived``
    new ones of the same direction buffered; one consolidation. Its catalog centroid points
    elsewhere, so the re-match leaves the new ones to the fit."""
    estimator = RenamingEstimator()
    intent = overrides.pop("intent", {})
    disco, pub = make_discovery(estimator, **overrides)
    now = time.time()
    disco.catalog.put(CatalogIntent(intent_id="intent-a", label="old-name", role="customer",
                                    centroid=np.eye(8, dtype=np.float32)[5], size=remembered,
                                    **intent))
    remember(disco, [0], remembered, "intent-a", "a", now)
    fill(disco.buffer, [0], arrived, accepted_at=now, tag="b")
    asyncio.run(disco.tick(now=now + 1))
    assert disco.consolidations == 1
    [update] = [u for _, u in pub.on(disco.settings.topic_updates) if u["intent_id"] == "intent-a"]
    return disco, pub, estimator, update


def test_a_consolidation_renames_an_intent_whose_members_are_mostly_not_those_it_was_named_for():
    disco, pub, estimator, update = _named_consolidation(remembered=5, arrived=20,
                                                         consolidation_growth=0.1)
    assert (update["event"], update["actor"], update["label"], update["renamed_from"]) == (
        "renamed", "engine", "topic-0", "old-name")
    assert update["status"] == "updated" and update["size"] == 25
    assert disco.catalog.get("intent-a").label == "topic-0"
    # Named again for these 25: 5 more (30, 25 named: 83%) keep the name though the namer
    # would now say otherwise; 8 more after those (38, 25 named: 66%) change it (counted
    # from the last consolidation's 30 instead, 79%, they would not).
    estimator.prefix = "other"
    for extra, expected in ((5, ("updated", "topic-0")), (8, ("renamed", "other-0"))):
        pub.sent.clear()
        later = time.time() + 10 * extra
        fill(disco.buffer, [0], extra, accepted_at=later, tag=f"c{extra}-")
        asyncio.run(disco.tick(now=later + 1))
        [u] = [u for _, u in pub.on(disco.settings.topic_updates) if u["intent_id"] == "intent-a"]
        assert (u["event"], u["label"]) == expected, u
    assert disco.consolidations == 3
    # What it keeps is bounded by the memory: no dead intents, no utterances trimmed away.
    disco.named_for["intent-gone"] = frozenset({"a0-0"})
    disco.named_for["intent-a"] |= {"trimmed-long-ago"}
    later += 100
    fill(disco.buffer, [0], 10, accepted_at=later, tag="d")
    asyncio.run(disco.tick(now=later + 1))
    assert disco.consolidations == 4 and set(disco.named_for) == {"intent-a"}
    assert disco.named_for["intent-a"] <= set(disco.memory.entries)
    assert u["renamed_from"] == "topic-0"


@pytest.mark.parametrize("case", ["mostly its own", "renames off", "a person's", "name taken"])
def test_a_consolidation_keeps_an_intents_name(case):
    """Kept: most members are those it was named for; renaming is off; a person decided
    about it; or the new name is another active intent's."""
    overrides: dict = {}
    if case == "renames off":
        overrides["rename_overlap"] = 0.0
    if case == "a person's":
        overrides["intent"] = {"pinned": True}
    remembered, arrived = (20, 5) if case == "mostly its own" else (5, 20)
    if case == "name taken":
        estimator = RenamingEstimator()
        disco, pub = make_discovery(estimator)
        now = time.time()
        for iid, label, d in (("intent-a", "old-name", 5), ("intent-z", "Topic_0", 6)):
            disco.catalog.put(CatalogIntent(intent_id=iid, label=label, role="customer",
                                            centroid=np.eye(8, dtype=np.float32)[d], size=5))
        remember(disco, [0], remembered, "intent-a", "a", now)
        remember(disco, [3], 5, "intent-z", "z", now)
        fill(disco.buffer, [0], arrived, accepted_at=now, tag="b")
        asyncio.run(disco.tick(now=now + 1))
        [update] = [u for _, u in pub.on(disco.settings.topic_updates) if u["intent_id"] == "intent-a"]
    else:
        _, _, _, update = _named_consolidation(remembered, arrived, **overrides)
    assert (update["event"], update["label"], update["renamed_from"]) == ("updated", "old-name", None)
    assert update["size"] == 25


@pytest.mark.parametrize("taken", ["Topic-0", "TOPIC_0"])  # case, and "_" read as "-"
def test_a_created_intent_never_takes_the_label_of_an_active_one(taken):
    disco, pub = make_discovery(DirectionEstimator())
    disco.catalog.put(CatalogIntent(intent_id="intent-old", label=taken, role="customer",
                                    centroid=np.eye(8, dtype=np.float32)[5], size=5))
    fill(disco.buffer, [0], 25, accepted_at=time.time())
    asyncio.run(disco.tick())
    [created] = [u for _, u in pub.on(disco.settings.topic_updates) if u["status"] == "created"]
    assert created["label"] == "topic-0 (2)"  # "topic-0" reads as the active one's name


def test_memory_is_trimmed_oldest_first_but_never_below_the_floor_per_intent():
    disco, pub = make_discovery(DirectionEstimator(), memory_cap=25, memory_min_per_intent=10)
    now = time.time()
    remember(disco, [0], 12, "intent-old", "o", now - 100)
    remember(disco, [1], 20, "intent-new", "n", now)
    assert asyncio.run(disco.trim_memory()) == 7
    left = Counter(e.intent_id for e in disco.memory.entries.values())
    assert left == {"intent-old": 10, "intent-new": 15}  # the old one kept its floor
    assert len([k for k, v in pub.on(disco.settings.topic_memory) if v is None]) == 7


def test_buffered_utterances_matching_the_catalog_are_assigned_without_a_fit():
    disco, pub = make_discovery(DirectionEstimator(fail=True))
    disco.catalog.put(CatalogIntent(intent_id="intent-known", label="known", role="customer",
                                    centroid=np.eye(8, dtype=np.float32)[3], size=5))
    fill(disco.buffer, [3], 5, accepted_at=time.time())
    asyncio.run(disco.tick())
    assert len(pub.on(disco.settings.topic_assignments)) == 5 and len(disco.buffer) == 0


def test_a_failed_run_leaves_the_buffer_and_is_counted():
    disco, pub = make_discovery(DirectionEstimator(fail=True))
    fill(disco.buffer, [0, 1], 15, accepted_at=time.time())
    before = counter(metrics.DISCOVERY_RUNS, "failed")
    with pytest.warns(DiscoveryFailedWarning, match="LLM down"):
        assert asyncio.run(disco.tick()) is None
    assert len(disco.buffer) == 30 and pub.sent == []
    assert counter(metrics.DISCOVERY_RUNS, "failed") == before + 1


def test_age_out_and_cap_are_dead_lettered_and_counted():
    disco, pub = make_discovery(DirectionEstimator(), buffer_cap=5, buffer_max_age_seconds=100)
    now = time.time()
    fill(disco.buffer, [0], 3, accepted_at=now - 1000, tag="old")
    fill(disco.buffer, [1], 8, accepted_at=now - 10, tag="new")
    aged, capped = counter(metrics.BUFFER_AGED_OUT, "age"), counter(metrics.BUFFER_AGED_OUT, "cap")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert asyncio.run(disco.age_out(now)) == 6
    reasons = sorted(d["reason"] for _, d in pub.on(disco.settings.topic_dlq))
    assert reasons == ["aged_out: age"] * 3 + ["aged_out: cap"] * 3
    assert all(json.loads(d["payload"])["text"] for _, d in pub.on(disco.settings.topic_dlq))
    assert len(disco.buffer) == 5 and all(k.startswith("new") for k in disco.buffer.entries)
    assert counter(metrics.BUFFER_AGED_OUT, "age") == aged + 3
    assert counter(metrics.BUFFER_AGED_OUT, "cap") == capped + 3


def test_the_cap_holds_and_the_gauge_shows_the_real_size_while_a_fit_runs():
    est = BlockedEstimator()
    disco, pub = make_discovery(est, buffer_cap=30)
    s = disco.settings
    fill(disco.buffer, [0, 1], 15, accepted_at=time.time() - 100, tag="a")  # at the cap
    capped = counter(metrics.BUFFER_AGED_OUT, "cap")

    async def scenario() -> dict:
        run = asyncio.create_task(disco.tick())
        try:
            while not est.started.is_set():
                await asyncio.sleep(0.01)
            # The reader applies a batch of 12 newer entries while the fit is blocked ...
            fill(disco.buffer, [2], 12, accepted_at=time.time(), tag="b")
            await asyncio.wait_for(disco.after_read(), 5)  # ... and trims without waiting for it
            assert not run.done() and not est.release.is_set()
            assert counter(metrics.BUFFER_PEAK) == 42  # the real size, seen before the trim
            assert counter(metrics.BUFFER_UTTERANCES) == len(disco.buffer) == 30
        finally:
            est.release.set()
        return await asyncio.wait_for(run, 30)

    counts = asyncio.run(scenario())
    dead = [json.loads(d["payload"])["utterance_id"] for _, d in pub.on(s.topic_dlq)]
    assert len(dead) == 12 and all(u.startswith("a") for u in dead)  # the oldest went
    assert counter(metrics.BUFFER_AGED_OUT, "cap") == capped + 12
    assigned = {a["utterance_id"] for _, a in pub.on(s.topic_assignments)}
    assert counts["assigned"] == len(assigned) == 18 and not assigned & set(dead)
    assert sorted(disco.buffer.entries) == sorted(f"b2-{i}" for i in range(12))
    assert counter(metrics.BUFFER_UTTERANCES) == 12 and counter(metrics.BUFFER_PEAK) == 42


def test_clusters_without_a_good_verdict_are_not_published_and_stay_buffered():
    disco, pub = make_discovery(DirectionEstimator(bad={0}, unjudged={1}))
    fill(disco.buffer, [0, 1], 15, accepted_at=time.time())
    runs = counter(metrics.DISCOVERY_RUNS, "certified_nothing")
    uncertified = counter(metrics.DISCOVERY_UNCERTIFIED)
    counts = asyncio.run(disco.tick())
    assert counts["created"] == counts["assigned"] == 0 and counts["uncertified"] == 30
    assert pub.sent == [] and len(disco.buffer) == 30
    assert counter(metrics.DISCOVERY_RUNS, "certified_nothing") == runs + 1
    assert counter(metrics.DISCOVERY_UNCERTIFIED) == uncertified + 30


def test_a_new_leader_republishes_the_same_versions():
    disco, pub = make_discovery(DirectionEstimator())
    fill(disco.buffer, [0, 1], 15, accepted_at=time.time())
    asyncio.run(disco.tick())
    s = disco.settings
    restored = IntentCatalog("emb")
    for _, rec in pub.on(s.topic_catalog):
        restored.apply_record(rec)
    again, pub2 = make_discovery(DirectionEstimator())
    again.catalog = restored
    assert asyncio.run(again.republish()) == 2
    assert sorted(map(str, pub2.on(s.topic_updates))) == sorted(map(str, pub.on(s.topic_updates)))


# --- topics ----------------------------------------------------------------------------

def test_keyed_output_topics_are_created_compacted(kafka_settings, monkeypatch):
    """Assignments (key = utterance_id), updates, buffer and catalog are compacted, so a
    subscriber keeps the latest record per key; utterances and dead letters stay logs.
    The embedded broker answers DescribeConfigs with no entries, so the test records the
    CreateTopics request the worker sends to the real broker."""
    from aiokafka.admin import AIOKafkaAdminClient

    from dialin.streams.service.app import ensure_topics

    s = kafka_settings
    sent = {}
    create = AIOKafkaAdminClient.create_topics

    async def recording(self, new_topics, *args, **kwargs):
        sent.update({t.name: (t.num_partitions, t.topic_configs) for t in new_topics})
        return await create(self, new_topics, *args, **kwargs)

    monkeypatch.setattr(AIOKafkaAdminClient, "create_topics", recording)
    asyncio.run(ensure_topics(s))
    compact = {"cleanup.policy": "compact"}
    assert sent == {s.topic_utterances: (s.topic_partitions, {}),
                    s.topic_assignments: (s.topic_partitions, compact),
                    s.topic_dlq: (1, {}), s.topic_updates: (1, compact),
                    s.topic_buffer: (s.topic_partitions, compact), s.topic_catalog: (1, compact),
                    s.topic_memory: (s.topic_partitions, compact),
                    s.topic_events: (1, {}), s.topic_decisions: (1, compact),
                    s.topic_volume: (1, {})}
    from dialin.streams.tools.watch import make_consumer

    consumer = make_consumer(s)
    try:
        assert set(sent) <= consumer.topics()  # created on the broker
    finally:
        consumer.close()


# --- Kafka client security -------------------------------------------------------------

def test_sasl_settings_reach_every_client_library():
    s = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-512",
                 kafka_sasl_username="svc", kafka_sasl_password="s3cret")
    ak = security_kwargs(s, "aiokafka")
    kp = security_kwargs(s, "kafka-python")
    for kw in (ak, kp):
        assert kw == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                      "sasl_plain_username": "svc", "sasl_plain_password": "s3cret"}
    creds = security_kwargs(s, "faust")["broker_credentials"]
    assert (creds.username, creds.password, creds.mechanism.value) == ("svc", "s3cret", "SCRAM-SHA-512")
    assert creds.protocol.value == "SASL_PLAINTEXT"


def test_tls_settings_and_clear_errors(tmp_path):
    import ssl

    assert security_kwargs(Settings(), "aiokafka") == {"security_protocol": "PLAINTEXT"}
    assert security_kwargs(Settings(), "faust") == {}
    tls = Settings(kafka_security_protocol="SSL")
    assert isinstance(security_kwargs(tls, "aiokafka")["ssl_context"], ssl.SSLContext)
    assert security_kwargs(tls, "faust")["broker_credentials"].context.verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(KafkaConfigError, match="KAFKA_SSL_CAFILE=.*not a readable file"):
        security_kwargs(Settings(kafka_security_protocol="SSL",
                                 kafka_ssl_cafile=str(tmp_path / "none.pem")), "kafka-python")
    with pytest.raises(KafkaConfigError, match="SASL_MECHANISM"):
        security_kwargs(Settings(kafka_security_protocol="SASL_SSL"), "aiokafka")


@pytest.mark.parametrize("bad, named", [
    ({}, "DIALIN_EMBEDDER_FIT_FILE"),  # a setting the factory cannot use
    ({"DIALIN_LLM_MAX_CALLS_PER_HOUR": "-5"}, "DIALIN_LLM_MAX_CALLS_PER_HOUR"),  # one pydantic refuses
    ({"DIALIN_CONSOLIDATION_MAX_LAG": "lots"}, "DIALIN_CONSOLIDATION_MAX_LAG"),
])
def test_serve_reports_an_unusable_setting_in_one_line(tmp_path, bad, named):
    import os
    import subprocess
    import sys

    env = {**os.environ, "DIALIN_EMBEDDER": "lsa", "DIALIN_DATA_DIR": str(tmp_path),
           "DIALIN_KAFKA_BOOTSTRAP": "127.0.0.1:1", **bad}
    env.pop("DIALIN_EMBEDDER_FIT_FILE", None)
    run = subprocess.run([sys.executable, "-c", "from dialin.streams.cli import main; main()", "serve"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [run.stderr.strip()]
    assert named in run.stderr and "Traceback" not in run.stderr


# --- the whole worker on the real broker -----------------------------------------------

def _http(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _latest(records) -> dict[str, dict | None]:
    out: dict[str, dict | None] = {}
    for r in records:
        out[r.key_str] = r.data if r.value is not None else None
    return out


@pytest.mark.slow
def test_worker_survives_sigkill_with_its_buffer_and_catalog(workers, kafka_settings, tmp_path):
    from kafka import KafkaProducer

    s = kafka_settings
    fit_file = "tests/data/crosswoz_sample.jsonl"
    env = {"DIALIN_EMBEDDER": "lsa", "DIALIN_EMBEDDER_FIT_FILE": fit_file,
           "DIALIN_DISCOVERY_MIN_UTTERANCES": "1000000", "DIALIN_DISCOVERY_MAX_AGE_SECONDS": "1e9",
           "DIALIN_DISCOVERY_IDLE_SECONDS": "0",
           "DIALIN_DISCOVERY_INTERVAL_SECONDS": "1", "DIALIN_BATCH_SIZE": "32"}
    data_dir = tmp_path / "shared-data"
    worker = workers.start(env, data_dir=data_dir)
    lines = open(fit_file, "rb").read().splitlines()[:150]
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap)
    for line in lines:
        producer.send(s.topic_utterances, key=json.loads(line)["call_id"].encode(), value=line)
    producer.send(s.topic_utterances, key=b"bad", value=b'{"call_id": "x"}')
    producer.flush()
    producer.close()

    buffered = wait_for(lambda: (b := _latest(records_of(s, s.topic_buffer))) and len(b) >= 150 and b,
                        timeout=120, message="150 buffered utterances")
    assert all(v is not None for v in buffered.values())
    [dead] = wait_for(lambda: records_of(s, s.topic_dlq), timeout=30, message="a dead letter")
    assert "text" in dead.data["reason"] and dead.data["payload"] == '{"call_id": "x"}'
    assert _http(worker.metrics_port, "/healthz")[0] == 200
    assert _http(worker.metrics_port, "/readyz")[0] == 200
    body = _http(worker.metrics_port, "/metrics")[1]
    assert 'dialin_events_total{outcome="buffered"} 150.0' in body
    texts = [json.loads(line)["text"] for line in lines]
    assert not any(t in body for t in texts)

    worker.kill()  # SIGKILL: nothing in memory survives
    worker = workers.start({**env, "DIALIN_DISCOVERY_MIN_UTTERANCES": "50"}, data_dir=data_dir)
    wait_for(lambda: [r for r in records_of(s, s.topic_updates) if r.data], timeout=120,
             message="intent updates after restart")
    wait_for(lambda: len([r for r in records_of(s, s.topic_assignments)]) > 0, timeout=60,
             message="assignments")
    def settled():  # a run publishes its intents one after another: none came in 5 s
        before = [r for r in records_of(s, s.topic_updates) if r.data]
        time.sleep(5)
        after = [r for r in records_of(s, s.topic_updates) if r.data]
        return after if len(after) == len(before) else None

    updates = wait_for(settled, 120, interval=0, message="the restarted worker's intent updates to settle")
    created = {u.data["intent_id"] for u in updates if u.data["status"] == "created"}
    assert created
    assigned = _latest(records_of(s, s.topic_assignments))
    # Updates are written before the assignments that name them (docs/guarantees.md), so
    # every intent assigned by now is on the updates topic: read it after the assignments.
    published = {u.data["intent_id"] for u in records_of(s, s.topic_updates) if u.data}
    assert {a["intent_id"] for a in assigned.values()} <= published
    still = {k for k, v in _latest(records_of(s, s.topic_buffer)).items() if v is not None}
    # every accepted utterance is accounted for: assigned or still buffered
    assert set(buffered) <= set(assigned) | still

    worker.kill()
    n_before = len(records_of(s, s.topic_updates))
    worker = workers.start(env, data_dir=data_dir)
    wait_for(lambda: len(records_of(s, s.topic_updates)) > n_before, timeout=60,
             message="the new leader's republished updates")
    again = [r.data for r in records_of(s, s.topic_updates) if r.data]
    created_again = {(u["intent_id"], u["version"]) for u in again if u["status"] == "created"}
    assert {i for i, _ in created_again} == created  # no new id published as created
    assert {v for _, v in created_again} == {1}
    assert worker.stop() == 0  # SIGTERM drains and exits cleanly


@pytest.mark.slow
def test_a_judge_that_answers_bad_to_everything_publishes_nothing(workers, kafka_settings, llm_server):
    """The real test LLM answers Bad to every judge question: no intent, the buffer kept."""
    import csv

    from dialin.streams.tools.replay import replay
    from dialin.streams.tools.supervise import metric

    s = kafka_settings
    llm_server.answer = lambda body: "Bad" if task_of(body) == "judge" else "inquire-test"
    sample = "tests/data/banking77_sample.csv"
    worker = workers.start({
        "DIALIN_JUDGE": "openai", "DIALIN_LLM_URL": llm_server.url, "DIALIN_LLM_MODEL": "test-model",
        "DIALIN_EMBEDDER": "lsa", "DIALIN_EMBEDDER_FIT_FILE": sample, "DIALIN_MATCH_THRESHOLD": "0.99",
        "DIALIN_DISCOVERY_MIN_UTTERANCES": "60", "DIALIN_DISCOVERY_INTERVAL_SECONDS": "1",
        "DIALIN_BATCH_SIZE": "16", "DIALIN_BATCH_SECONDS": "0.2"})
    with open(sample, newline="", encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)][:80]
    events = [(f"c{i}".encode(), json.dumps({"call_id": f"c{i}", "utterance_id": f"bad-{i}",
                                             "role": "customer", "text": t}).encode())
              for i, t in enumerate(texts)]
    assert replay(iter(events), s).sent == 80
    wait_for(lambda: metric(worker.metrics(), "dialin_discovery_runs_total", result="certified_nothing"),
             180, message="a discovery run that certifies nothing")
    samples = worker.metrics()
    assert metric(samples, "dialin_discovery_runs_total", result="ok") == 0
    assert metric(samples, "dialin_discovery_uncertified_utterances_total") == 80
    assert metric(samples, "dialin_buffer_utterances") == 80  # left buffered, not published
    assert metric(samples, "dialin_intent_updates_total") == 0
    assert [task_of(b) for b in llm_server.chat_requests()].count("judge") > 0
    assert records_of(s, s.topic_updates) == [] and records_of(s, s.topic_assignments) == []
    buffered = _latest(records_of(s, s.topic_buffer))
    assert len(buffered) == 80 and all(v is not None for v in buffered.values())
    assert "80 of 80 fitted utterances are covered by no Good verdict" in worker.log_tail(200)


def test_send_all_keeps_a_bounded_number_of_records_in_flight_and_returns_when_all_are_acked():
    """A discovery run publishes thousands of records in one step; the publisher hands
    them to the producer a chunk at a time (the next once those are acknowledged), so the
    ingest agent's records never queue behind all of them (issue 17), and it still
    returns only when every record is acknowledged."""
    from dialin.streams.service.app import SEND_CHUNK, Publisher

    state = {"in_flight": 0, "most": 0, "acked": 0}

    class Topic:
        async def send(self, key, value):
            state["in_flight"] += 1
            state["most"] = max(state["most"], state["in_flight"])
            ack = asyncio.get_running_loop().create_future()

            def acked():
                state["in_flight"] -= 1
                state["acked"] += 1
                ack.set_result(None)

            asyncio.get_running_loop().call_later(0.001, acked)
            return ack

    class App:
        def topic(self, *args, **kwargs):
            return Topic()

    n = 3 * SEND_CHUNK + 17
    asyncio.run(Publisher(App()).send_all([("t", f"k{i}", b"v") for i in range(n)]))
    assert state["acked"] == n and state["in_flight"] == 0
    assert state["most"] == SEND_CHUNK
