"""Account for every utterance from the service's topics alone (what downstream sees).

Why from topics and not from a worker's counters: counters reset when a worker dies
and double-count after a redelivery, while the topics are the durable truth. Each
accepted utterance must end in exactly one place, de-duplicated by utterance_id:
assigned (``intent-assignments``), still buffered (live key on the compacted
``dialin-buffer``) or dead-lettered after acceptance (aged out, or processing failed,
on the DLQ with its utterance_id). Rejected payloads are the other DLQ records, counted once per source
offset. A *retraction* (an assignment record with no intent and cause ``rejected``: a
reviewer rejected the utterance's intent) withdraws the assignment: the utterance is back
in the buffer (the leader rewrites its buffer entry right after), not assigned, and it is
counted in ``retracted`` while the withdrawal is its latest assignment record. The demo's summary, the end-to-end tests and the benchmark all read this.

The sets above keep the latest record per key, as a subscriber of a compacted topic
does; that alone cannot see an utterance written twice. So :func:`audit` also walks
every raw record of each utterance_id in the order written (record timestamps, one
clock per deployment) and sorts each repeated record into what the contract allows,
counted apart, or a violation (the rules, with their reasons, are in
``docs/guarantees.md``, "Delivery"):

- ``redelivered``: the same decision written again (a buffer entry rewritten, an
  assignment to the same intent again, a dead letter after processing failed), what
  an at-least-once redelivery of the inbound record does;
- ``reassigned``: an assignment to another intent with a higher ``version`` and a
  ``cause`` (``consolidation``, ``merge``, ``split``: the leader re-examined the
  intents, see docs/guarantees.md, "Reassignments"); or, for records without one, an
  assignment to another intent with a cause the audit infers: the earlier intent was
  merged into the later one (``merged``), the utterance was in the buffer when it was
  decided again (``buffered``: a discovery run re-run after a crash, or a redelivery
  re-buffered it), or one of the two intents was published anew since the utterance
  first arrived (``catalog``: a redelivered event matched against a newer catalog);
- a violation: another decision with none of these causes (an assignment to another
  intent, or after an age-out), or an age-out letter for an utterance that was not in
  the buffer (age-out acts on buffer entries only).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..service.records import REASSIGNMENT_CAUSES
from ..settings import Settings
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
    failed: set[str] = field(default_factory=set)  # accepted, dead-lettered: processing failed
    redelivered: Counter = field(default_factory=Counter)  # utterance_id -> repeated records
    reassigned: dict[str, str] = field(default_factory=dict)  # utterance_id -> cause
    violations: list[str] = field(default_factory=list)  # records the contract does not allow
    retracted: set[str] = field(default_factory=set)  # latest assignment withdrawn (a reject)

    @property
    def accepted(self) -> set[str]:
        return (set(self.assigned) | self.buffered | self.aged_out | self.ever_buffered
                | self.failed)

    @property
    def lost(self) -> set[str]:
        """Accepted utterances that ended nowhere (must stay empty)."""
        return (self.ever_buffered - set(self.assigned) - self.buffered - self.aged_out
                - self.failed)

    @property
    def dangling(self) -> set[str]:
        """Assignments naming an intent never published on the updates topic."""
        return {u for u, a in self.assigned.items() if a.get("intent_id") not in self.intents}


#: How far a worker's view of the catalog may lag the updates topic (it reads the catalog
#: topic back): an intent published this long before an utterance arrived may still have
#: been unknown to the worker that first decided it.
CATALOG_LAG_MS = 10_000

#: Order of steps written in the same millisecond: a discovery run writes assignments or
#: age-out letters before tombstones, a buffer entry precedes what is decided on it, and
#: a retraction precedes the buffer entry that puts its utterance back.
_RANK = {"retracted": -1, "buffered": 0, "assigned": 1, "aged_out": 1, "failed": 1,
         "unbuffered": 2}


def is_retraction(assignment: Mapping) -> bool:
    """An assignment record that withdraws the utterance's assignment (a reviewer rejected
    its intent): no intent, cause ``rejected``."""
    return assignment.get("intent_id") is None and assignment.get("cause") == "rejected"


@dataclass(frozen=True)
class Step:
    """One raw record about an utterance: when it was written and what it says."""

    at_ms: int
    kind: str  # buffered | unbuffered | assigned | retracted | aged_out | failed
    intent_id: str | None = None
    version: int = 1
    cause: str | None = None


@dataclass
class Audit:
    """Repeated records sorted into allowed (counted apart) and violations."""

    redelivered: Counter = field(default_factory=Counter)
    reassigned: dict[str, str] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)


def _merged_into(intents: Mapping[str, dict], old: str, new: str) -> bool:
    """True when ``old`` was merged, directly or through a chain, into ``new``."""
    seen = set()
    while old not in seen and old in intents and intents[old].get("status") == "merged":
        seen.add(old)
        old = intents[old].get("merged_into")
        if old == new:
            return True
    return False


def audit(steps: Mapping[str, Sequence[Step]], intents: Mapping[str, dict],
          published_ms: Mapping[str, Sequence[int]]) -> Audit:
    """Walk each utterance's records in write order (pure; ``read_tally`` feeds it).

    ``intents`` is the latest update per intent_id; ``published_ms`` the timestamps of
    every update record per intent_id.
    """
    out = Audit()
    for uid, walk in steps.items():
        walk = sorted(walk, key=lambda st: (st.at_ms, _RANK[st.kind]))
        first_ms = walk[0].at_ms if walk else 0
        live = False
        decision: str | None = None  # "intent:<id>", "aged_out", "failed" or None
        version = 0  # of the latest assignment
        for st in walk:
            if st.kind == "unbuffered":
                live = False
                continue
            if st.kind == "retracted":
                # withdrawn: the utterance is undecided again and goes back to the buffer
                # (its entry follows); a later, lower version is still reported below
                if st.version < version:
                    out.violations.append(f"{uid}: retraction version {st.version} written "
                                          f"after version {version}")
                if decision is not None and decision.startswith("intent:"):
                    out.reassigned[uid] = "rejected"
                else:
                    out.violations.append(f"{uid}: retracted while not assigned to an intent")
                decision, live = None, False
                version = max(version, st.version)
                continue
            if st.kind == "buffered":
                if live or decision is not None:
                    out.redelivered[uid] += 1
                live = True
                continue
            if st.kind == "aged_out" and not live:
                out.violations.append(f"{uid}: dead-lettered as aged out while not in the buffer")
            now = f"intent:{st.intent_id}" if st.kind == "assigned" else st.kind
            if st.kind == "assigned" and st.version < version:
                out.violations.append(f"{uid}: assignment version {st.version} written after "
                                      f"version {version} (a subscriber would see the older one)")
            if decision is None:
                pass
            elif (st.kind == "assigned" and st.version > version
                  and st.cause in REASSIGNMENT_CAUSES and decision.startswith("intent:")):
                out.reassigned[uid] = st.cause
            elif decision == now or "failed" in (st.kind, decision):
                out.redelivered[uid] += 1  # the same decision again, or a failed try's letter
            elif live:
                out.reassigned[uid] = "buffered"
            elif st.kind == "assigned":
                old = decision[len("intent:"):] if decision.startswith("intent:") else None
                new = st.intent_id or ""
                since = first_ms - CATALOG_LAG_MS
                if old is not None and _merged_into(intents, old, new):
                    out.reassigned[uid] = "merged"
                elif any(since <= t <= st.at_ms for i in (old, new) for t in published_ms.get(i, ())):
                    out.reassigned[uid] = "catalog"
                else:
                    out.violations.append(f"{uid}: {decision.replace(':', ' ')}, then assigned to "
                                          f"{new} with no merge, no buffer entry and no catalog "
                                          "change between")
            decision = now
            if st.kind == "assigned":
                version = max(version, st.version)
    return out


def _position(rec: Record, data: dict) -> str:
    """Where a rejected payload came from: its source offset, else a hash of the letter."""
    if data.get("source_topic") is not None and data.get("offset") is not None:
        return f"{data['source_topic']}/{data.get('partition')}/{data['offset']}"
    return hashlib.sha256(rec.value or b"").hexdigest()


def read_tally(settings: Settings, *, timeout: float = 60.0) -> Tally:
    """Read the assignment, buffer, DLQ and update topics to the end, account and audit."""
    tally = Tally()
    steps: dict[str, list[Step]] = defaultdict(list)
    for rec in read_topic(settings, settings.topic_assignments, timeout=timeout):
        if isinstance(rec.data, dict) and "utterance_id" in rec.data:
            uid = rec.data["utterance_id"]
            withdrawn = is_retraction(rec.data)
            if withdrawn:  # back in the buffer: not assigned (nor dangling)
                tally.assigned.pop(uid, None)
                tally.retracted.add(uid)
            else:
                tally.assigned[uid] = rec.data
                tally.retracted.discard(uid)
            steps[uid].append(Step(rec.timestamp_ms, "retracted" if withdrawn else "assigned",
                                   rec.data.get("intent_id"), int(rec.data.get("version") or 1),
                                   rec.data.get("cause")))
    live: dict[str, bool] = {}
    for rec in read_topic(settings, settings.topic_buffer, timeout=timeout):
        uid = rec.key_str
        if uid is not None:
            live[uid] = rec.value is not None
            steps[uid].append(Step(rec.timestamp_ms, "buffered" if rec.value is not None
                                   else "unbuffered"))
            if rec.value is not None:
                tally.ever_buffered.add(uid)
    for rec in read_topic(settings, settings.topic_dlq, timeout=timeout):
        data = rec.data if isinstance(rec.data, dict) else {}
        reason = str(data.get("reason", ""))
        uid = data.get("utterance_id")
        if uid and reason.startswith("aged_out"):
            tally.aged_out.add(uid)
            steps[uid].append(Step(rec.timestamp_ms, "aged_out"))
        elif uid and reason.startswith("processing failed"):
            tally.failed.add(uid)
            steps[uid].append(Step(rec.timestamp_ms, "failed"))
        else:
            tally.rejected[_position(rec, data)] = reason
    # Updates last: the worker publishes an intent's update before its assignments, so
    # every assignment read above has its intent on the updates topic by now.
    published: dict[str, list[int]] = defaultdict(list)
    for rec in read_topic(settings, settings.topic_updates, timeout=timeout):
        if isinstance(rec.data, dict) and "intent_id" in rec.data:
            tally.intents[rec.data["intent_id"]] = rec.data
            published[rec.data["intent_id"]].append(rec.timestamp_ms)
            if rec.data.get("status") == "created":
                tally.created[rec.data["intent_id"]] += 1
    tally.buffered = {u for u, alive in live.items() if alive and u not in tally.assigned}
    tally.aged_out -= set(tally.assigned)
    tally.failed -= set(tally.assigned) | tally.buffered | tally.aged_out
    found = audit(steps, tally.intents, published)
    tally.redelivered, tally.reassigned, tally.violations = (found.redelivered, found.reassigned,
                                                             found.violations)
    return tally
