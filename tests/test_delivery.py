"""Delivery under repeated crashes (issue 7, item 1): SIGKILL the worker at random points
during ingest, during a discovery run and while it publishes, several times in one test,
restart it each time, and account from the topics alone.

Checked at the end: every accepted utterance ends assigned, buffered or dead-lettered,
each utterance_id once after de-duplication; every assignment names a published intent;
intent ids are stable (each id's ``created`` record is always version 1 with one label,
and no two active intents of a role share a label, i.e. no cluster was created twice
under a new id); and the worker never processed the topics into an inconsistent state.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from kafka_harness import records_of, wait_for
from test_e2e_service import accounted, assert_each_once, banking_events

from dialin.streams.service.ingest import EXIT_UNACKED
from dialin.streams.tools.replay import replay
from dialin.streams.tools.supervise import metric
from dialin.streams.tools.tally import read_tally

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ENV = {"DIALIN_EMBEDDER": "lsa", "DIALIN_EMBEDDER_FIT_FILE": str(ROOT / "tests/data/banking77_sample.csv"),
       "DIALIN_DISCOVERY_MIN_UTTERANCES": "60", "DIALIN_DISCOVERY_INTERVAL_SECONDS": "1",
       "DIALIN_BATCH_SECONDS": "0.2", "DIALIN_BATCH_SIZE": "16", "DIALIN_MATCH_THRESHOLD": "0.75"}


def _kill_when(worker, condition, timeout: float = 90.0) -> None:
    """Poll the worker's metrics quickly; SIGKILL it the moment ``condition(samples)`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and worker.alive:
        if condition(worker.metrics()):
            break
        time.sleep(0.02)
    worker.kill()


def test_repeated_sigkills_at_random_points_lose_and_duplicate_nothing(workers, kafka_settings,
                                                                      tmp_path):
    s = kafka_settings
    rng = random.Random()
    seed = rng.randrange(10**6)
    rng.seed(seed)
    events = banking_events(600, prefix="k")
    expected = {f"k-{i}" for i in range(len(events))}
    data_dir = tmp_path / "worker-data"
    sender = threading.Thread(target=replay, args=(iter(events), s), kwargs={"rate": 60})

    # 1. during ingest: traffic is flowing and the worker is part-way through it
    w = workers.start(ENV, data_dir=data_dir)
    sender.start()
    target = rng.randint(40, 120)
    _kill_when(w, lambda m: metric(m, "dialin_events_total") >= target)
    kills = ["ingest"]

    # 2. during a discovery run: a random moment while the leader runs its timer
    w = workers.start(ENV, data_dir=data_dir)
    wait_for(lambda: metric(w.metrics(), "dialin_events_total") > 0, 60, 0.1, "the restarted worker to ingest")
    time.sleep(rng.uniform(0.5, 3.0))
    w.kill()
    kills.append("discovery")

    # 3. while publishing: right after intent updates went out, before assignments/tombstones
    for _ in range(2):
        w = workers.start(ENV, data_dir=data_dir)
        _kill_when(w, lambda m: metric(m, "dialin_intent_updates_total") > 0, timeout=45)
        kills.append("publish")

    # 4. one more random point anywhere, then a worker that is left to finish
    w = workers.start(ENV, data_dir=data_dir)
    time.sleep(rng.uniform(0.0, 4.0))
    w.kill()
    kills.append("random")
    sender.join(120)
    assert not sender.is_alive()
    workers.start(ENV, data_dir=data_dir)

    tally = wait_for(lambda: accounted(s, expected), 300,
                     message=f"every utterance accounted for after kills {kills} (seed {seed})")
    assert_each_once(tally, expected)
    assert not tally.dangling, f"seed {seed}"

    assert_intents_stable(s, tally, seed)


def assert_intents_stable(s, tally, seed: int) -> None:
    """Each intent id was created once (version 1, one label) and no cluster got a second id."""
    created = defaultdict(set)  # intent_id -> {(version, label)} of its "created" records
    for rec in records_of(s, s.topic_updates):
        if isinstance(rec.data, dict) and rec.data.get("status") == "created":
            created[rec.data["intent_id"]].add((rec.data["version"], rec.data["label"]))
    assert created, "no intent was ever created"
    for intent_id, seen in created.items():
        assert len(seen) == 1 and next(iter(seen))[0] == 1, (intent_id, seen, seed)
    active = [u for u in tally.intents.values() if u["status"] in ("created", "updated")]
    keys = [(u["role"], u["label"].strip().lower()) for u in active]
    assert len(keys) == len(set(keys)), f"an intent created twice under a new id (seed {seed})"


def _committed(s) -> dict[int, int]:
    """Committed offset per input partition of the workers' consumer group (OffsetFetch)."""
    from kafka import KafkaConsumer, TopicPartition

    # A group_id but no subscription: committed() fetches offsets without joining the group.
    consumer = KafkaConsumer(bootstrap_servers=s.kafka_bootstrap, group_id=s.app_id,
                             enable_auto_commit=False)
    try:
        offsets = {p: consumer.committed(TopicPartition(s.topic_utterances, p))
                   for p in range(s.topic_partitions)}
    finally:
        consumer.close()
    return {p: offset for p, offset in offsets.items() if offset is not None}


def test_two_workers_sigkill_one_mid_stream_rebalance_loses_and_duplicates_nothing(
        workers, kafka_settings, tmp_path):
    """Two workers share the partitions; one (at random the discovery leader or not) is
    SIGKILLed mid-stream, so its partitions and possibly the leadership move to the
    survivor; it is then restarted, which rebalances the group once more."""
    s = kafka_settings
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    env = {**ENV, "DIALIN_KAFKA_SESSION_TIMEOUT_SECONDS": "6"}
    events = banking_events(600, prefix="r")
    expected = {f"r-{i}" for i in range(len(events))}
    dirs = [tmp_path / "a-data", tmp_path / "b-data"]
    pair = [workers.start(env, data_dir=dirs[0]), workers.start(env, data_dir=dirs[1])]

    def done() -> float:
        return sum(metric(w.metrics(), "dialin_events_total") for w in pair if w.alive)

    # Small chunks until both workers have taken part (the group may still be settling).
    sent = 0
    deadline = time.monotonic() + 90
    while not all(metric(w.metrics(), "dialin_events_total") > 0 for w in pair):
        assert time.monotonic() < deadline, "the two workers never both took part"
        assert replay(iter(events[sent:sent + 20]), s).sent == 20
        sent += 20
        wait_for(lambda n=sent: done() >= n, 90, 0.2, "the workers to catch up with a chunk")

    # The rest flows while one worker dies part-way through it.
    sender = threading.Thread(target=replay, args=(iter(events[sent:]), s), kwargs={"rate": 25})
    sender.start()
    victim = rng.randrange(2)
    target = sent + rng.randint(40, 160)
    _kill_when(pair[victim], lambda m: done() >= target, timeout=60)
    # With the victim dead, committed offsets move only where the survivor consumes: once
    # every input partition has moved, the victim's partitions have been handed over.
    at_kill = _committed(s)
    wait_for(lambda: (now := _committed(s)) and all(now[p] > at_kill.get(p, -1) for p in now)
             and len(now) == s.topic_partitions, 90, 0.3,
             f"the survivor to take over every input partition (seed {seed})")
    pair[victim] = workers.start(env, data_dir=dirs[victim])
    sender.join(120)
    assert not sender.is_alive()

    tally = wait_for(lambda: accounted(s, expected), 240,
                     message=f"every utterance accounted for after the rebalance (seed {seed})")
    assert all(w.alive for w in pair)
    assert_each_once(tally, expected)
    assert not tally.dangling, f"seed {seed}"
    assert_intents_stable(s, tally, seed)


# --- a failure inside the ingest agent after the embed step -----------------------------

#: Loaded by the worker child through PYTHONPATH (``sitecustomize``): makes the ingest
#: agent's routing step raise on chosen calls, or its whole batch processing raise.
FAULTS = '''
import os

from dialin.streams.service.ingest import Ingestor

_fail = {int(n) for n in os.environ.get("DIALIN_TEST_FAIL_ROUTE", "").split(",") if n}
_calls = []
_route = Ingestor._route


def _flaky(self, valid, *args, **kwargs):
    _calls.append(1)
    if len(_calls) in _fail:
        uids = ",".join(u.uid for u, _ in valid)
        print(f"injected failure at route call {len(_calls)}: {uids}", flush=True)
        raise RuntimeError("injected")
    return _route(self, valid, *args, **kwargs)


async def _broken(self, batch):
    raise RuntimeError("injected")


Ingestor._route = _flaky
if os.environ.get("DIALIN_TEST_FAIL_PROCESS"):
    Ingestor.process = _broken
'''


def _faulty(tmp_path, **env) -> dict[str, str]:
    folder = tmp_path / "faults"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(FAULTS)
    return {**ENV, "PYTHONPATH": str(folder), **env}


def test_a_failure_after_embedding_is_retried_or_dead_lettered_never_acked(workers, kafka_settings,
                                                                          tmp_path):
    """faust acks a ``take_events`` batch in a ``finally``: routing raises on the first batch
    twice (dead-lettered) and on the second once (retried); every event ends somewhere."""
    s = kafka_settings
    w = workers.start(_faulty(tmp_path, DIALIN_TEST_FAIL_ROUTE="1,2,4"))
    events = banking_events(120, prefix="f")
    expected = {f"f-{i}" for i in range(len(events))}
    assert replay(iter(events), s, rate=200).sent == len(events)
    tally = wait_for(lambda: accounted(s, expected), 240, message="every event accounted for")
    assert_each_once(tally, expected)
    failed_at = dict(line.split("injected failure at route call ", 1)[1].strip().split(": ")
                     for line in w.log_tail(10_000).splitlines() if "injected failure" in line)
    assert sorted(failed_at) == ["1", "2", "4"], w.log_tail()
    assert tally.failed == set(failed_at["1"].split(",")) == set(failed_at["2"].split(","))
    retried = set(failed_at["4"].split(","))
    assert retried and not retried & tally.failed and retried <= set(tally.assigned) | tally.buffered
    letters = [r.data for r in records_of(s, s.topic_dlq)]
    assert {d["utterance_id"] for d in letters} == tally.failed
    for d in letters:
        assert d["reason"] == "processing failed: RuntimeError" and d["source_topic"] == s.topic_utterances
        assert d["offset"] is not None and json.loads(d["payload"])["utterance_id"] == d["utterance_id"]


def test_a_batch_that_cannot_even_be_dead_lettered_stops_the_worker_unacked(workers, kafka_settings,
                                                                            tmp_path):
    """If processing and dead-lettering both fail, the worker exits before faust's ack: no
    offset is committed, and a restarted worker processes every event."""
    s = kafka_settings
    data_dir = tmp_path / "worker-data"
    broken = workers.start(_faulty(tmp_path, DIALIN_TEST_FAIL_PROCESS="1"), data_dir=data_dir)
    events = banking_events(40, prefix="x")
    assert replay(iter(events), s).sent == len(events)
    wait_for(lambda: not broken.alive, 90, 0.2, "the worker to exit")
    assert broken.returncode == EXIT_UNACKED, broken.log_tail()
    assert "neither processed nor dead-lettered" in broken.log_tail(200)
    time.sleep(3)  # a commit would have landed by now (the commit interval is 1 s)
    assert not any(_committed(s).values()), _committed(s)
    assert not read_tally(s).accepted

    workers.start(ENV, data_dir=data_dir)
    expected = {f"x-{i}" for i in range(len(events))}
    tally = wait_for(lambda: accounted(s, expected), 180, message="the restarted worker to decide")
    assert_each_once(tally, expected)
    assert not tally.failed
