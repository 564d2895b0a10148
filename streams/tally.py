"""Account for every utterance from the service's topics alone (what downstream sees).

Why from topics and not from a worker's counters: counters reset when a worker dies
and double-count after a redelivery, while the topics are the durable truth. Each
accepted utterance must end in exactly one place, de-duplicated by utterance_id:
assigned (``intent-assignments``), still buffered (live key on the compacted
``dialin-buffer``) or dead-lettered after acceptance (aged out, on the DLQ with its
utterance_id). Rejected payloads are the other DLQ records, counted once per source
offset. The demo's summary, the end-to-end tests and the benchmark all read this.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from .settings import Settings
from .watch import Record, read_topic


@dataclass
class Tally:
    """The state of the output topics, each set keyed by utterance_id."""

    assigned: dict[str, dict] = field(default_factory=dict)  # utterance_id -> last assignment
    buffered: set[str] = field(default_factory=set)  # live in the buffer, not assigned
    aged_out: set[str] = field(default_factory=set)  # accepted, then dead-lettered
    ever_buffered: set[str] = field(default_factory=set)
    rejected: dict[str, str] = field(default_factory=dict)  # source position -> reason
    intents: dict[str, dict] = field(default_factory=dict)  # intent_id -> latest update
    created: Counter = field(default_factory=Counter)  # intent_id -> "created" updates seen
    assignment_records: int = 0

    @property
    def accepted(self) -> set[str]:
        return set(self.assigned) | self.buffered | self.aged_out | self.ever_buffered

    @property
    def lost(self) -> set[str]:
        """Accepted utterances that ended nowhere (must stay empty)."""
        return self.ever_buffered - set(self.assigned) - self.buffered - self.aged_out

    @property
    def dangling(self) -> set[str]:
        """Assignments naming an intent never published on the updates topic."""
        return {u for u, a in self.assigned.items() if a.get("intent_id") not in self.intents}


def _position(rec: Record, data: dict) -> str:
    """Where a rejected payload came from: its source offset, else a hash of the letter."""
    if data.get("source_topic") is not None and data.get("offset") is not None:
        return f"{data['source_topic']}/{data.get('partition')}/{data['offset']}"
    return hashlib.sha256(rec.value or b"").hexdigest()


def read_tally(settings: Settings, *, timeout: float = 60.0) -> Tally:
    """Read the assignment, buffer, DLQ and update topics to the end and account."""
    tally = Tally()
    for rec in read_topic(settings, settings.topic_assignments, timeout=timeout):
        if isinstance(rec.data, dict) and "utterance_id" in rec.data:
            tally.assignment_records += 1
            tally.assigned[rec.data["utterance_id"]] = rec.data
    live: dict[str, bool] = {}
    for rec in read_topic(settings, settings.topic_buffer, timeout=timeout):
        uid = rec.key_str
        if uid is not None:
            live[uid] = rec.value is not None
            if rec.value is not None:
                tally.ever_buffered.add(uid)
    for rec in read_topic(settings, settings.topic_dlq, timeout=timeout):
        data = rec.data if isinstance(rec.data, dict) else {}
        reason = str(data.get("reason", ""))
        if reason.startswith("aged_out") and data.get("utterance_id"):
            tally.aged_out.add(data["utterance_id"])
        else:
            tally.rejected[_position(rec, data)] = reason
    # Updates last: the worker publishes an intent's update before its assignments, so
    # every assignment read above has its intent on the updates topic by now.
    for rec in read_topic(settings, settings.topic_updates, timeout=timeout):
        if isinstance(rec.data, dict) and "intent_id" in rec.data:
            tally.intents[rec.data["intent_id"]] = rec.data
            if rec.data.get("status") == "created":
                tally.created[rec.data["intent_id"]] += 1
    tally.buffered = {u for u, alive in live.items() if alive and u not in tally.assigned}
    tally.aged_out -= set(tally.assigned)
    return tally
