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

import random
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from kafka_harness import broker, kafka_settings, records_of, wait_for, workers  # noqa: F401
from test_e2e_service import accounted, assert_each_once, banking_events

from dialin.streams.replay import replay
from dialin.streams.supervise import metric
from dialin.streams.tally import read_tally

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
    assert read_tally(s).assignment_records >= len(tally.assigned)
