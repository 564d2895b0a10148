"""The whole service end to end: real broker, real ``dialin serve`` processes, real topics.

Every check reads the topics (:func:`dialin.streams.tools.tally.read_tally`), which is what
downstream consumers see, and every wait is a condition with a deadline.
"""

from __future__ import annotations

import base64
import csv
import json
import threading
import time
from pathlib import Path

import pytest
from kafka_harness import records_of, wait_for

from dialin.streams.tools.replay import replay
from dialin.streams.tools.supervise import metric
from dialin.streams.tools.tally import read_tally

pytestmark = pytest.mark.slow

DATA = Path(__file__).parent / "data"

#: Worker settings that make discovery run early and often on a small stream.
#: No idle-time runs (DIALIN_DISCOVERY_IDLE_SECONDS): the tests that use FAST wait until the
#: intents settle, then act on them (decisions, reviews); a consolidation 30 s after the
#: traffic stopped would change them under the test (seen in CI: test_decisions).
FAST = {"DIALIN_DISCOVERY_MIN_UTTERANCES": "60", "DIALIN_DISCOVERY_INTERVAL_SECONDS": "1",
        "DIALIN_BATCH_SECONDS": "0.2", "DIALIN_BATCH_SIZE": "32", "DIALIN_DISCOVERY_IDLE_SECONDS": "0"}

#: (raw payload, a word its dead-letter reason must contain)
MALFORMED = [
    (b"this is not json", "JSON"),
    (b'{"call_id": "bad-1", "text": "trunc', "JSON"),
    (b'{"call_id": "bad-2"}', "text"),
    (b'{"call_id": "bad-3", "text": "  \\t "}', "text"),
    (b'{"call_id": "bad-4", "text": "' + b"y" * 2500 + b'"}', "text"),
    (b'{"call_id": "bad-5", "text": "hi", "role": "robot"}', "role"),
    (b'{"call_id": "bad-6", "text": "hi", "turn": "2"}', "turn"),
    (b'{"call_id": "bad-7", "text": "caf\xe9"}', "UTF-8"),
    (b"[1, 2, 3]", "object"),
]


def banking_events(n: int, prefix: str = "u") -> list[tuple[bytes, bytes]]:
    """``n`` BANKING77 utterances as single-turn calls with explicit utterance ids."""
    with open(DATA / "banking77_sample.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:n]
    out = []
    for i, row in enumerate(rows):
        event = {"call_id": f"call-{i}", "utterance_id": f"{prefix}-{i}", "turn": 0,
                 "role": "customer", "text": row["text"]}
        out.append((event["call_id"].encode(), json.dumps(event).encode()))
    return out


def crosswoz_events(n: int) -> list[tuple[bytes, bytes]]:
    """The first ``n`` CrossWOZ lines (both roles), as they are in the file."""
    lines = (DATA / "crosswoz_sample.jsonl").read_bytes().splitlines()[:n]
    return [(json.loads(line)["call_id"].encode(), line) for line in lines]


def accounted(settings, expected: set[str]):
    """The tally once every expected utterance ended somewhere, else None."""
    tally = read_tally(settings)
    return tally if expected <= tally.accepted and not tally.lost else None


def assert_each_once(tally, expected: set[str]) -> None:
    """Every accepted utterance is in exactly one place after de-duplication by utterance_id,
    and no raw record on the way there is one the contract does not allow.

    Assignments are keyed by utterance_id on a compacted topic, so the latest one is
    what downstream keeps; an earlier record for the same utterance is allowed only as a
    redelivery's rewrite or a re-assignment with a cause (``read_tally``'s audit, rules in
    docs/guarantees.md), counted in ``tally.redelivered`` and ``tally.reassigned``.
    """
    assert tally.accepted == expected
    places = [set(tally.assigned), tally.buffered, tally.aged_out, tally.failed]
    assert sum(len(p) for p in places) == len(expected)
    assert not tally.lost
    assert not tally.violations, tally.violations[:10]


# --- one worker, a mixed stream ---------------------------------------------------------


def test_replay_publishes_intents_and_dead_letters_bad_input(kafka_settings, workers):
    worker = workers.start(FAST)
    # A caller says "yes" twice in a call without turn numbers or ids: two utterances.
    yes = (b"call-yes", json.dumps({"call_id": "call-yes", "role": "customer", "text": "yes"}).encode())
    good = banking_events(400) + crosswoz_events(120) + [yes, yes]
    bad = [(None, payload) for payload, _ in MALFORMED]
    stats = replay(iter(good[:200] + bad + good[200:]), kafka_settings)
    assert stats.sent == len(good) + len(bad) and stats.failed == 0

    wait_for(lambda: metric(worker.metrics(), "dialin_events_total") >= stats.sent, 240,
             message="the worker to decide on every event")
    tally = wait_for(lambda: (t := read_tally(kafka_settings)).intents and t.assigned and t,
                     240, message="a published intent with assignments")
    tally = wait_for(lambda: accounted(kafka_settings, tally.accepted | {f"u-{i}" for i in range(400)}),
                     120, message="every banking utterance accounted for")

    # intents are published and assignments point at published intents
    assert len(tally.accepted) == len(good)
    assert not tally.dangling
    said_yes = {r.data["utterance_id"] for topic in (kafka_settings.topic_assignments,
                                                     kafka_settings.topic_buffer)
                for r in records_of(kafka_settings, topic)
                if isinstance(r.data, dict) and r.data.get("call_id") == "call-yes"}
    assert len(said_yes) == 2 and said_yes <= tally.accepted, said_yes
    assert all(u.startswith(f"{kafka_settings.topic_utterances}/") for u in said_yes)
    for intent in tally.intents.values():
        assert intent["status"] in {"created", "updated", "merged", "retired"}
        assert intent["label"] and len(intent["examples"]) <= 10 and "centroid" not in intent
    assert all(count == 1 for count in tally.created.values()), "an intent created twice"
    assert_each_once(tally, tally.accepted)
    # One worker and no crash: nothing is redelivered, and a decision changes only by a
    # consolidation (a versioned record with its cause), never by a redelivery's guess.
    assert not tally.redelivered, tally.redelivered
    assert set(tally.reassigned.values()) <= {"consolidation", "merge", "split"}, tally.reassigned

    # malformed events land in the DLQ with a reason and the raw payload
    letters = [r.data for r in records_of(kafka_settings, kafka_settings.topic_dlq)]
    assert len(letters) == len(MALFORMED)
    by_payload = {}
    for letter in letters:
        raw = (letter["payload"].encode("utf-8") if letter["payload_encoding"] == "utf-8"
               else base64.b64decode(letter["payload"]))
        by_payload[raw] = letter["reason"]
    for payload, word in MALFORMED:
        assert word.lower() in by_payload[payload].lower(), (payload[:40], by_payload[payload])


# --- crash and restart ------------------------------------------------------------------


def test_sigkill_mid_stream_then_restart_accounts_for_every_utterance(kafka_settings, workers,
                                                                        tmp_path):
    events = banking_events(600)
    expected = {f"u-{i}" for i in range(600)}
    data_dir = tmp_path / "worker-data"
    first = workers.start(FAST, data_dir=data_dir)
    sender = threading.Thread(target=replay, args=(iter(events), kafka_settings), kwargs={"rate": 150})
    sender.start()
    wait_for(lambda: len(read_tally(kafka_settings).accepted) >= 150, 240,
             message="the first worker to accept part of the stream")
    first.kill()
    sender.join(120)
    assert not sender.is_alive()

    workers.start(FAST, data_dir=data_dir)
    tally = wait_for(lambda: accounted(kafka_settings, expected), 300,
                     message="every utterance accounted for after the restart")
    assert_each_once(tally, expected)
    assert not tally.dangling
    # Not checked here: that no intent id is published twice as "created" across the
    # restart (issue 7's repeated-kill test owns that guarantee).


# --- scale-out --------------------------------------------------------------------------


def test_two_workers_share_the_partitions(kafka_settings, workers):
    a = workers.start(FAST)
    b = workers.start(FAST)
    events = banking_events(600, prefix="s")

    # Traffic keeps coming in small chunks until both workers have taken part (the group
    # may still be rebalancing when the second one turns ready), then the rest follows.
    sent = 0
    deadline = time.monotonic() + 120
    while sent < len(events):
        both = all(metric(w.metrics(), "dialin_events_total") > 0 for w in (a, b))
        chunk = len(events) - sent if both or time.monotonic() > deadline else 20
        assert replay(iter(events[sent:sent + chunk]), kafka_settings).sent == chunk
        sent += chunk
        if not both:
            wait_for(lambda: sum(metric(w.metrics(), "dialin_events_total") for w in (a, b)) >= sent,
                     120, message="the workers to catch up with a chunk")
    expected = {f"s-{i}" for i in range(len(events))}
    tally = wait_for(lambda: accounted(kafka_settings, expected), 300,
                     message="every utterance accounted for by two workers")
    assert_each_once(tally, expected)
    done_a = metric(a.metrics(), "dialin_events_total")
    done_b = metric(b.metrics(), "dialin_events_total")
    assert done_a > 0 and done_b > 0, (done_a, done_b)
    assert done_a + done_b >= len(events)
