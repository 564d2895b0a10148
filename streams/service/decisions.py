"""Reviewers' decisions, applied by the leader: once, in order, never a stale one.

A decision (:class:`~.records.Decision`) is a record on the compacted
``intent-decisions`` topic (key = decision_id), written by the review page. The leader
follows the topic (:class:`~.buffer.TopicFollower`, like the buffer) into a
:class:`DecisionQueue`, and each discovery tick applies what is waiting, inside the
discovery lock and before any fit (:attr:`.discovery.Discovery.steps`), so a decision
and a discovery run never race on an intent's version.

A decision is applied when its ``expected_version`` is the intent's current version;
otherwise it is *stale* (someone or something changed the intent since the page showed
it): logged, counted in ``dialin_decisions{result="stale"}``, nothing changed. An
applied decision's id is kept on every intent it changed (``CatalogIntent.decisions``),
so after a restart, when the follower reads every decision again, one already applied is
recognised and skipped: the catalog and the decisions stay the same.

Each applied decision publishes its events with ``actor`` = the decision's actor, pins
the intents it decided (:func:`.discovery.kept_whole`: the machine keeps them whole and
keeps their label) and moves the utterances it concerns:

- ``approve``: candidate -> ``activated``;
- ``rename``: ``renamed`` with ``renamed_from`` = the old label;
- ``merge``: the intent ``merged`` into ``into`` (which gets ``updated``); its remembered
  utterances are reassigned (cause ``merge``);
- ``split``: the chosen remembered utterances go to a new intent (``created`` with
  ``split_from``, then ``activated`` by the same actor; cause ``split``), the rest stays
  (``split``);
- ``reject``: ``rejected``; its remembered utterances get a retraction (an assignment with
  no intent, cause ``rejected``) and go back to the buffer; its exemplars stay in the
  catalog as a blocked region (:meth:`dialin.models.IntentCatalog.match_rejected`): the
  same grouping is not proposed again, finer intents inside it are (``Discovery._unblocked``);
- ``retire``: ``retired`` (assignments stand; it is matched no more).

Library: pydantic (the decision records).
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np
from pydantic import ValidationError

from dialin.models import (CatalogIntent, DecidedExample, DecidedExamples, IntentCatalog,
                           detect_language, new_intent_id)

from . import metrics
from .discovery import Discovery, Record, intent_exemplars
from .lifecycle import transition
from .records import Assignment, BufferEntry, Decision, MemoryEntry, dumps, utc_now

log = logging.getLogger(__name__)

#: Decision ids an intent keeps (the most recent): enough to recognise any decision
#: about it that the follower reads again (a decision is about the version it saw).
MAX_DECISIONS = 50


class DecisionError(ValueError):
    """A decision that cannot be applied (unknown intent or target, nothing to split)."""


class DecisionQueue:
    """The decisions read from the topic and not yet applied, in the order they were read
    (a single-partition topic: the order they were written)."""

    def __init__(self) -> None:
        self.waiting: list[Decision] = []

    def receive(self, key: bytes | None, value: bytes | None) -> None:
        """The follower's callback: one decision (a tombstone or an invalid one is skipped)."""
        if value is None:
            return
        try:
            self.waiting.append(Decision.model_validate(json.loads(value)))
        except (ValidationError, ValueError) as exc:
            metrics.DECISIONS.labels("unknown", "invalid").inc()
            log.warning("skipping an invalid decision %s: %s", key, str(exc).splitlines()[0])

    def take(self) -> list[Decision]:
        out, self.waiting = self.waiting, []
        return out


def decided_examples(catalog: IntentCatalog) -> list[DecidedExample]:
    """The clusters people decided about, most recent first: the intents a reviewer
    activated (approved, renamed, split off: Good, with their label) or rejected (Bad).
    Read from the catalog, so a new leader has them at once. Examples are the published
    ones (PII-redacted when the intent was published)."""
    decided = [i for i in catalog.intents_.values()
               if i.decisions and i.state in ("active", "rejected") and i.examples]
    decided.sort(key=lambda i: (i.updated_at, i.intent_id), reverse=True)
    return [DecidedExample(texts=tuple(i.examples), good=i.state == "active",
                           label=i.label if i.state == "active" else None,
                           language=detect_language(list(i.examples)))
            for i in decided]


class DecisionApplier:
    """Applies the queue's decisions to the leader's catalog, memory and buffer, and keeps
    ``examples`` (the LLM judge's and namer's few-shot examples) up to date."""

    def __init__(self, discovery: Discovery, queue: DecisionQueue,
                 examples: DecidedExamples | None = None) -> None:
        self.discovery = discovery
        self.queue = queue
        self.examples = examples
        self.applied: list[Decision] = []  # what this leader applied, oldest first
        self._taught = False

    async def __call__(self, now: float) -> int:
        """Apply every waiting decision; returns how many were applied."""
        n = await self._apply_waiting()
        if self.examples is not None and (n or not self._taught):
            self.examples.replace(decided_examples(self.discovery.catalog))
            self._taught = True
        return n

    async def _apply_waiting(self) -> int:
        n = 0
        for d in self.queue.take():
            try:
                n += await self.apply(d)
            except DecisionError as exc:
                metrics.DECISIONS.labels(d.action, "invalid").inc()
                log.warning("decision %s (%s %s) not applied: %s", d.decision_id, d.action,
                            d.intent_id, exc)
        return n

    async def apply(self, d: Decision) -> int:
        """Apply one decision: 1 when applied, 0 when already applied or stale."""
        catalog = self.discovery.catalog
        intent = catalog.get(d.intent_id)
        if intent is None:
            raise DecisionError(f"unknown intent {d.intent_id}")
        if d.decision_id in intent.decisions:
            return 0  # applied before (read again after a restart)
        if d.expected_version != intent.version:
            metrics.DECISIONS.labels(d.action, "stale").inc()
            log.warning("stale decision %s: %s expected %s at version %d, it is at %d; nothing "
                        "changed", d.decision_id, d.action, d.intent_id, d.expected_version,
                        intent.version)
            return 0
        action = getattr(self, f"_{d.action}")
        await action(d, intent, utc_now())
        metrics.DECISIONS.labels(d.action, "applied").inc()
        self.applied.append(d)
        log.info("decision %s applied: %s %s by %s", d.decision_id, d.action, d.intent_id, d.actor)
        return 1

    # --- helpers ----------------------------------------------------------------------
    @staticmethod
    def _decided(intent: CatalogIntent, d: Decision, **changes) -> dict:
        return dict(changes, pinned=True,
                    decisions=(*intent.decisions, d.decision_id)[-MAX_DECISIONS:])

    def _require_matched(self, intent: CatalogIntent, d: Decision) -> None:
        if not intent.active:
            raise DecisionError(f"{intent.intent_id} is {intent.state}, not a candidate or active")

    def _members(self, intent_id: str) -> list[MemoryEntry]:
        disco = self.discovery
        return [e for e in disco.memory.oldest_first()  # type: ignore[misc]
                if disco.resolve(e.intent_id) == intent_id]

    def _vectors(self, entries: list[MemoryEntry], fallback: CatalogIntent) -> dict:
        """Centroid, exemplars and threshold of an intent made of ``entries``."""
        if not entries:
            return {}
        X = np.vstack([self.discovery.memory.vectors[e.utterance_id] for e in entries])
        exemplars, threshold = intent_exemplars(self.discovery.settings, X)
        return dict(centroid=X.mean(axis=0), exemplars=exemplars, threshold=threshold)

    async def _move(self, entries: list[MemoryEntry], target: CatalogIntent, cause: str) -> None:
        disco = self.discovery
        assignments: list[Record] = []
        remembered: list[Record] = []
        for e in entries:
            a, m = disco.assignment(e, disco.memory.vectors[e.utterance_id], target,
                                    e.version + 1, cause)
            assignments.append(a)
            remembered.append(m)
            metrics.REASSIGNMENTS.labels(cause).inc()
        await disco.finish(assignments, remembered, [])

    async def _publish(self, *intents: CatalogIntent) -> None:
        await self.discovery.publish_intents(list(intents))
        for i in intents:
            metrics.LIFECYCLE_EVENTS.labels(i.event).inc()

    # --- actions ----------------------------------------------------------------------
    async def _approve(self, d: Decision, intent: CatalogIntent, now: str) -> None:
        if intent.state != "candidate":
            raise DecisionError(f"{intent.intent_id} is {intent.state}, not a candidate")
        await self._publish(transition(intent, "activated", d.actor, now, **self._decided(intent, d)))

    async def _rename(self, d: Decision, intent: CatalogIntent, now: str) -> None:
        self._require_matched(intent, d)
        await self._publish(transition(intent, "renamed", d.actor, now, **self._decided(
            intent, d, label=d.label, renamed_from=intent.label)))

    async def _retire(self, d: Decision, intent: CatalogIntent, now: str) -> None:
        self._require_matched(intent, d)
        await self._publish(transition(intent, "retired", d.actor, now, **self._decided(intent, d)))

    async def _merge(self, d: Decision, intent: CatalogIntent, now: str) -> None:
        self._require_matched(intent, d)
        target = self.discovery.catalog.get(self.discovery.resolve(str(d.into)))
        if target is None or not target.active or target.intent_id == intent.intent_id:
            raise DecisionError(f"merge target {d.into} is not a live intent")
        gone_members = self._members(intent.intent_id)
        members = self._members(target.intent_id) + gone_members
        gone = transition(intent, "merged", d.actor, now,
                          **self._decided(intent, d, merged_into=target.intent_id))
        into = transition(target, "updated", d.actor, now, **self._decided(
            target, d, size=target.size + intent.size, merged_into=None,
            **self._vectors(members, target)))
        await self._publish(gone, into)
        await self._move(gone_members, into, "merge")

    async def _split(self, d: Decision, intent: CatalogIntent, now: str) -> None:
        self._require_matched(intent, d)
        members = self._members(intent.intent_id)
        chosen = set(d.utterance_ids or ())
        apart = [e for e in members if e.utterance_id in chosen]
        stay = [e for e in members if e.utterance_id not in chosen]
        if not apart:
            raise DecisionError("none of the utterances to split off is a remembered member")
        if not stay:
            raise DecisionError("every remembered member would go apart: nothing is split")
        texts = [e.text for e in apart[:10]]
        redactor = self.discovery.redactor
        examples = tuple(redactor.redact_many(texts) if redactor is not None else texts)
        child_id = new_intent_id(intent.role, [e.utterance_id for e in apart])
        if self.discovery.catalog.get(child_id) is not None:
            raise DecisionError(f"the part split off is already intent {child_id}")
        child = CatalogIntent(
            intent_id=child_id, label=d.label or f"{intent.label} (split)", role=intent.role,
            size=len(apart), examples=examples, created_at=now, updated_at=now,
            split_from=intent.intent_id, state="candidate", event="created", actor=d.actor,
            judge_backend="reviewer", decisions=(d.decision_id,),
            **self._vectors(apart, intent))  # type: ignore[arg-type]
        active = transition(child, "activated", d.actor, now, pinned=True)
        parent = transition(intent, "split", d.actor, now, **self._decided(
            intent, d, size=max(1, intent.size - len(apart)),
            examples=tuple(x for x in intent.examples if x not in set(examples)) or intent.examples,
            **self._vectors(stay, intent)))
        await self._publish(child, active, parent)
        await self._move(apart, active, "split")

    async def _reject(self, d: Decision, intent: CatalogIntent, now: str) -> None:
        self._require_matched(intent, d)
        disco, s = self.discovery, self.discovery.settings
        members = self._members(intent.intent_id)
        await self._publish(transition(intent, "rejected", d.actor, now,
                                       **self._decided(intent, d)))
        retractions: list[Record] = []
        buffered: list[Record] = []
        for e in members:
            a = Assignment(utterance_id=e.utterance_id, call_id=e.call_id, intent_id=None,
                           label=None, role=e.role, score=None, version=e.version + 1,
                           cause="rejected", intent_state=None)
            retractions.append((s.topic_assignments, e.utterance_id, dumps(a)))
            back = BufferEntry(**e.model_dump(exclude={"intent_id", "version", "accepted_at"}),
                               accepted_at=time.time(), version=a.version)
            buffered.append((s.topic_buffer, e.utterance_id, dumps(back)))
        await disco.publisher.send_all(retractions)
        await disco.publisher.send_all(buffered)
        for _, key, value in buffered:  # the reader applies them again later: idempotent
            disco.buffer.apply(str(key).encode(), value)
        await disco.publisher.send_all([(s.topic_memory, e.utterance_id, None) for e in members])
        disco.memory.discard([e.utterance_id for e in members])
        metrics.REASSIGNMENTS.labels("rejected").inc(len(members))

