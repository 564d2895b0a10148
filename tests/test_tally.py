"""The tally's audit of raw records: each sequence the delivery contract allows is counted
apart, and a record it does not allow is reported (docs/guarantees.md, "Delivery").

The pure rules on hand-made steps, then the same on the real embedded broker: records
written to fresh topics with one forbidden duplicate, read back by ``read_tally``.
"""

from __future__ import annotations

import json

import pytest

from dialin.streams.tools.tally import CATALOG_LAG_MS, Step, audit, read_tally

T0 = 1_000_000  # ms

A, B = "i-a", "i-b"
STABLE = {A: {"intent_id": A, "status": "created"}, B: {"intent_id": B, "status": "created"}}
OLD = {A: [T0 - 10 * CATALOG_LAG_MS], B: [T0 - 10 * CATALOG_LAG_MS]}  # published long before


def run(*steps: Step, intents=STABLE, published=OLD):
    return audit({"u": list(steps)}, intents, published)


def test_one_record_per_decision_is_clean():
    for walk in ([Step(T0, "assigned", A)],
                 [Step(T0, "buffered"), Step(T0 + 5, "assigned", A), Step(T0 + 5, "unbuffered")],
                 [Step(T0, "buffered"), Step(T0 + 5, "aged_out"), Step(T0 + 6, "unbuffered")],
                 [Step(T0, "buffered")], [Step(T0, "failed")]):
        found = run(*walk)
        assert not found.violations and not found.redelivered and not found.reassigned, walk


def test_redelivery_rewrites_are_counted_apart():
    found = run(Step(T0, "assigned", A), Step(T0 + 9, "assigned", A))
    assert found.redelivered == {"u": 1} and not found.violations and not found.reassigned
    # buffered, assigned by discovery, then the inbound record is redelivered and buffered again
    found = run(Step(T0, "buffered"), Step(T0 + 5, "assigned", A), Step(T0 + 6, "unbuffered"),
                Step(T0 + 9, "buffered"))
    assert found.redelivered == {"u": 1} and not found.violations
    found = run(Step(T0, "failed"), Step(T0 + 9, "assigned", A))  # a later try succeeded
    assert found.redelivered == {"u": 1} and not found.violations


def test_a_versioned_reassignment_with_its_cause_is_allowed_and_an_older_version_is_not():
    for cause in ("consolidation", "merge", "split"):
        found = run(Step(T0, "assigned", A, 1, "matched"), Step(T0 + 9, "assigned", B, 2, cause))
        assert found.reassigned == {"u": cause} and not found.violations, cause
    # the same version again for another intent, with a cause: not a reassignment
    found = run(Step(T0, "assigned", A, 2, "split"), Step(T0 + 9, "assigned", B, 2, "split"))
    assert found.violations and not found.reassigned
    # an old decision written after a newer one (a late redelivery): the subscriber goes back
    found = run(Step(T0, "assigned", A, 1, "matched"), Step(T0 + 5, "assigned", B, 2, "split"),
                Step(T0 + 9, "assigned", A, 1, "matched"))
    assert any("version 1 written after version 2" in v for v in found.violations)


def test_another_intent_is_allowed_only_with_a_cause():
    merged = {**STABLE, A: {"intent_id": A, "status": "merged", "merged_into": B}}
    found = run(Step(T0, "assigned", A), Step(T0 + 9, "assigned", B), intents=merged)
    assert found.reassigned == {"u": "merged"} and not found.violations
    # decided again while still in the buffer (a discovery run re-run after a crash)
    found = run(Step(T0, "buffered"), Step(T0 + 5, "assigned", A), Step(T0 + 9, "assigned", B),
                Step(T0 + 9, "unbuffered"))
    assert found.reassigned == {"u": "buffered"} and not found.violations
    # B was published after the utterance first arrived: a redelivery matched a newer catalog
    found = run(Step(T0, "assigned", A), Step(T0 + 9, "assigned", B),
                published={**OLD, B: [T0 + 3]})
    assert found.reassigned == {"u": "catalog"} and not found.violations


def test_a_retraction_puts_the_utterance_back_in_the_buffer():
    """A reviewer's reject withdraws the assignment (no intent, cause ``rejected``, version
    + 1) and the leader buffers the utterance again: counted apart, not a violation, and
    the buffer entry that follows (even in the same millisecond) is not a redelivery."""
    for gap in (0, 4):
        found = run(Step(T0, "assigned", A, 1, "matched"),
                    Step(T0 + 9, "retracted", None, 2, "rejected"),
                    Step(T0 + 9 + gap, "buffered"))
        assert found.reassigned == {"u": "rejected"}, gap
        assert not found.violations and not found.redelivered, gap
    # a retraction of an utterance never assigned to an intent is not allowed
    [violation] = run(Step(T0, "buffered"), Step(T0 + 9, "retracted", None, 2, "rejected")).violations
    assert "retracted while not assigned" in violation


@pytest.mark.parametrize("walk, words", [
    ([Step(T0, "assigned", A), Step(T0 + 9, "assigned", B)], "then assigned to i-b"),
    ([Step(T0, "assigned", A), Step(T0 + 9, "aged_out")], "aged out while not in the buffer"),
    ([Step(T0, "buffered"), Step(T0 + 5, "aged_out"), Step(T0 + 6, "unbuffered"),
      Step(T0 + 9, "assigned", A)], "aged_out, then assigned to i-a"),
])
def test_a_record_the_contract_does_not_allow_is_a_violation(walk, words):
    [violation] = run(*walk).violations
    assert violation.startswith("u: ") and words in violation


# --- on the real broker ------------------------------------------------------------------


def _write(settings, records) -> None:
    """``(topic, key, value dict or None, timestamp_ms)`` records, in this order."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    try:
        for topic, key, value, at in records:
            producer.send(topic, key=key.encode(), timestamp_ms=at,
                          value=None if value is None else json.dumps(value).encode())
        producer.flush(30)
    finally:
        producer.close()


def _assignment(uid: str, intent_id: str) -> dict:
    return {"utterance_id": uid, "call_id": "c", "intent_id": intent_id, "label": intent_id,
            "role": "customer", "score": 0.9}


def test_read_tally_reports_one_injected_forbidden_duplicate(kafka_settings):
    s = kafka_settings
    update = {"intent_id": A, "label": "a", "role": "customer", "version": 1, "status": "created"}
    entry = {"utterance_id": "u-2", "call_id": "c", "text": "hello"}
    _write(s, [
        (s.topic_updates, A, update, T0 - 100_000),
        (s.topic_updates, B, {**update, "intent_id": B, "label": "b"}, T0 - 100_000),
        (s.topic_assignments, "u-1", _assignment("u-1", A), T0),
        (s.topic_assignments, "u-1", _assignment("u-1", A), T0 + 10),  # a redelivery: allowed
        (s.topic_buffer, "u-2", entry, T0),
        (s.topic_assignments, "u-2", _assignment("u-2", B), T0 + 20),  # decided by discovery
        (s.topic_buffer, "u-2", None, T0 + 21),
        (s.topic_assignments, "u-3", _assignment("u-3", A), T0),
        (s.topic_assignments, "u-3", _assignment("u-3", B), T0 + 30),  # forbidden
    ])
    tally = read_tally(s)
    assert set(tally.assigned) == {"u-1", "u-2", "u-3"} and tally.assigned["u-3"]["intent_id"] == B
    assert tally.redelivered == {"u-1": 1} and not tally.reassigned
    [violation] = tally.violations
    assert violation.startswith("u-3: intent i-a, then assigned to i-b")


def test_read_tally_reads_a_retraction_as_the_utterance_back_in_the_buffer(kafka_settings):
    """A withdrawn assignment names no intent: it is not dangling, the utterance is not
    assigned, and its buffer entry written after it is live (buffered, not lost)."""
    s = kafka_settings
    update = {"intent_id": A, "label": "a", "role": "customer", "version": 1, "status": "created"}
    retraction = {**_assignment("u-4", A), "intent_id": None, "label": None, "score": None,
                  "version": 2, "cause": "rejected"}
    _write(s, [
        (s.topic_updates, A, update, T0 - 100_000),
        (s.topic_assignments, "u-4", _assignment("u-4", A), T0),
        (s.topic_assignments, "u-4", retraction, T0 + 50),
        (s.topic_buffer, "u-4", {"utterance_id": "u-4", "call_id": "c", "text": "hi"}, T0 + 50),
        (s.topic_assignments, "u-5", _assignment("u-5", A), T0),
    ])
    tally = read_tally(s)
    assert set(tally.assigned) == {"u-5"} and tally.buffered == {"u-4"}
    assert tally.retracted == {"u-4"} and not tally.dangling and not tally.lost
    assert tally.reassigned == {"u-4": "rejected"} and not tally.violations and not tally.redelivered
