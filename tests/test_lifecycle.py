"""The intent lifecycle (issue 15, part 1) and per-intent volume (part 4): discovery makes
candidates, the leader's rules activate and retire them, every event is on the history,
assignments carry the state, volume windows are counted from the assignments read."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from test_worker import DirectionEstimator, counter, fill, make_discovery

from dialin.streams.catalog import Snapshot
from dialin.streams.service import metrics
from dialin.streams.service.lifecycle import LeaderRules
from dialin.streams.service.volume import VolumeCounter


def _run(**overrides):
    """A first discovery run on two clean clusters of 15; the rules and their counter."""
    disco, pub = make_discovery(DirectionEstimator(), **overrides)
    fill(disco.buffer, [0, 1], 15, accepted_at=time.time())
    asyncio.run(disco.tick())
    volume = VolumeCounter(disco.settings.volume_window_seconds, keep_seconds=3600)
    for key, value in [(k, v) for t, k, v in pub.sent if t == disco.settings.topic_assignments]:
        volume.observe(key.encode(), value)  # what the leader's assignment reader does
    return disco, pub, LeaderRules(disco, volume), volume


def test_a_discovered_intent_is_created_as_a_candidate_and_its_assignments_say_so():
    disco, pub, _, _ = _run()
    s = disco.settings
    updates = [u for _, u in pub.on(s.topic_updates)]
    assert len(updates) == 2
    for u in updates:
        assert (u["schema_version"], u["event"], u["state"], u["status"], u["actor"],
                u["version"]) == (2, "created", "candidate", "created", "engine", 1)
        assert u["renamed_from"] is None and u["merged_into"] is None
    # the history holds the same records, in the same order
    assert pub.on(s.topic_events) == pub.on(s.topic_updates)
    assignments = [a for _, a in pub.on(s.topic_assignments)]
    assert len(assignments) == 30 and {a["intent_state"] for a in assignments} == {"candidate"}
    assert all(i.active for i in disco.catalog.intents_.values())  # a candidate is matched


@pytest.mark.parametrize("overrides, activated", [
    (dict(activation_min_size=15, activation_min_growth=15), True),
    (dict(activation_min_size=16), False),  # too small
    (dict(activation_min_size=5, activation_min_growth=16), False),  # grew too little
    (dict(activation_min_size=5, activation_min_confidence=0.85), False),  # judge said 0.8
])
def test_the_activation_rule_needs_size_growth_and_confidence(overrides, activated):
    disco, pub, rules, _ = _run(**overrides)
    pub.sent.clear()
    before = counter(metrics.LIFECYCLE_EVENTS, "activated")
    asyncio.run(rules(time.time()))
    updates = [u for _, u in pub.on(disco.settings.topic_updates)]
    if not activated:
        assert not updates
        assert {i.state for i in disco.catalog.intents_.values()} == {"candidate"}
        return
    assert len(updates) == 2 and pub.on(disco.settings.topic_events) == pub.on(
        disco.settings.topic_updates)
    for u in updates:
        assert (u["event"], u["state"], u["status"], u["actor"], u["version"]) == (
            "activated", "active", "updated", "rule:activation", 2)
    assert counter(metrics.LIFECYCLE_EVENTS, "activated") == before + 2
    asyncio.run(rules(time.time()))  # once: an active intent is not activated again
    assert len(pub.on(disco.settings.topic_updates)) == 2


def test_an_intent_nothing_was_assigned_to_for_long_is_retired_by_the_rule():
    disco, pub, rules, volume = _run(retire_after_seconds=60, activation_min_size=1000)
    now = time.time()
    pub.sent.clear()
    asyncio.run(rules(now + 30))
    assert not pub.on(disco.settings.topic_updates)  # idle for 30 s only
    asyncio.run(rules(now + 61))
    updates = [u for _, u in pub.on(disco.settings.topic_updates)]
    assert {(u["event"], u["state"], u["status"], u["actor"]) for u in updates} == {
        ("retired", "retired", "retired", "rule:idle")}
    assert len(updates) == 2 and not disco.catalog.active()  # matched no more


def test_a_new_leader_never_retires_an_intent_it_has_not_watched_long_enough():
    volume = VolumeCounter(300, keep_seconds=3600, clock=lambda: 1000.0)
    assert volume.idle_seconds("intent-x", 1000.0 + 59) == 59  # from the counter's start


def test_volume_windows_are_published_once_and_the_replayed_history_is_not_counted():
    clock = [1000.0]
    volume = VolumeCounter(100, keep_seconds=1000, clock=lambda: clock[0])
    live = [False]
    volume.live = lambda: live[0]

    def assign(uid: str, intent_id: str | None, version: int = 1) -> None:
        volume.observe(uid.encode(), json.dumps(
            {"utterance_id": uid, "intent_id": intent_id, "version": version}).encode())

    assign("old-1", "intent-a")  # history read back at start: last seen, not counted
    live[0] = True
    for i in range(3):
        assign(f"u{i}", "intent-a")
    assign("u0", "intent-b", version=2)  # a reassignment is not new volume
    assign("u9", None, version=2)  # a retraction
    clock[0] = 1050.0
    assign("u5", "intent-b")
    assert volume.closed(1099.0) == []  # the window [1000, 1100) is still open
    got = {(w.intent_id, w.window_start, w.window_end, w.count) for w in volume.closed(1100.0)}
    assert got == {("intent-a", 1000.0, 1100.0, 3), ("intent-b", 1000.0, 1100.0, 1)}
    assert volume.closed(1200.0) == []  # published once
    assert volume.growth("intent-a", 200, 1150.0) == 3
    assert volume.last_window_max({"intent-a", "intent-b"}, 1150.0) == 3
    assert volume.last_window_max({"intent-b"}, 1150.0) == 1


def test_the_rules_publish_closed_windows_and_the_candidate_gauges():
    disco, pub, rules, volume = _run(activation_min_size=1000, volume_window_seconds=60)
    pub.sent.clear()
    now = time.time() + 120
    asyncio.run(rules(now))
    windows = [w for _, w in pub.on(disco.settings.topic_volume)]
    assert sorted(w["count"] for w in windows) == [15, 15]
    assert {w["intent_id"] for w in windows} == {i.intent_id for i in disco.catalog.intents_.values()}
    assert metrics.CANDIDATES_WAITING._value.get() == 2
    assert 119 <= metrics.CANDIDATE_OLDEST_AGE._value.get() <= 200


def test_an_export_leaves_out_candidates_nobody_approved():
    records = [{"intent_id": "a", "status": "created", "state": "candidate"},
               {"intent_id": "b", "status": "updated", "state": "active"},
               {"intent_id": "c", "status": "created"},  # written before states: active
               {"intent_id": "d", "status": "retired", "state": "rejected"}]
    snap = Snapshot(records=records, embedder="emb", source="test")
    assert [r["intent_id"] for r in snap.active()] == ["b", "c"]


def test_a_subscriber_rebuilds_the_current_state_from_the_history():
    disco, pub, rules, _ = _run(activation_min_size=15)
    asyncio.run(rules(time.time()))
    s = disco.settings
    rebuilt: dict[str, dict] = {}
    for key, event in pub.on(s.topic_events):
        if key not in rebuilt or rebuilt[key]["version"] < event["version"]:
            rebuilt[key] = event
    current = dict(pub.on(s.topic_updates))  # what compaction keeps: the last per key
    assert rebuilt == current and {u["state"] for u in current.values()} == {"active"}
