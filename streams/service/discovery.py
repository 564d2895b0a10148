"""The discovery run: the leader turns the buffer into intents, and re-examines them.

Each tick of the leader-only timer (``@app.timer(interval, on_leader=True)``):

1. **age-out**: entries older than ``buffer_max_age_seconds``, and the oldest beyond
   ``buffer_cap``, go to the DLQ with reason ``aged_out`` and are tombstoned; counted
   in ``dialin_buffer_aged_out{reason}`` (never silent). The cap is also enforced
   between ticks: the buffer reader calls :meth:`Discovery.after_read` after every
   batch it applies, which exports the buffer's real size and trims it at once, so a
   fit that holds the tick for minutes (it runs in a thread) does not let it grow.
   The memory (assigned utterances kept for consolidation, ``dialin-memory``) is
   trimmed to ``memory_cap`` the same way, oldest first, never below
   ``memory_min_per_intent`` for any intent (a trimmed utterance keeps its assignment);
2. **re-match**: buffered entries that now belong to a catalog intent by the open-set
   rule are assigned (this also finishes a run that died between publishing intents
   and tombstoning);
3. **trigger**: a *consolidation* when the utterances that arrived since the last one
   (remembered or buffered) are ``consolidation_growth`` of the memory's size then, or
   any arrived and the last one is older than ``discovery_max_age_seconds`` (once the
   memory is full: every ``consolidation_interval_seconds`` when anything arrived), unless
   the input's consumer lag is above ``consolidation_max_lag`` (under overload the
   cores go to ingestion; counted in ``dialin_consolidations_deferred``);
   otherwise a *buffer run* when the buffer holds >= ``discovery_min_utterances`` with
   enough new entries since the last run, or its oldest entry is older than
   ``discovery_max_age_seconds``. When the traffic pauses (no utterance for
   ``discovery_idle_seconds``), what arrived is examined at once: the buffer, then one
   consolidation, so the end of a burst is settled in seconds, not after the age
   trigger (under steady traffic this never fires). The engine's estimator is
   fitted per role, in a process of its own (:mod:`.fitter`) or on a worker thread: on
   the buffer alone, or on the memory and the buffer together. By default every
   consolidation re-fits the whole memory. With ``consolidation_warm_start`` on, it starts
   warm: the groups the last consolidation certified (the members a verdict admitted,
   still in that intent) go to the estimator as ``prior_labels``; each is asked about once
   and kept when still Good, and only the rest (utterances assigned or buffered since,
   and groups now refused) is clustered anew, so a consolidation spends judge calls
   mostly on what arrived since (``bench/stream_keepup.py --warm``: fewer calls, lower
   quality). A new leader has no such groups: its first consolidation starts cold;
4. **reconcile** (consolidation): each certified cluster continues the known intent
   whose remembered members it mostly holds (:func:`dialin.models.reconcile`); known
   intents it also absorbed are ``merged`` into it; a cluster continuing nothing is
   ``created``, with ``split_from`` when its members mostly came from one intent. So
   the first small runs' broad intents are split as traffic accumulates, and duplicate
   intents that two buffer runs made are merged, each time because the fit's judge
   certified the new grouping. A merge is also a question of its own: before a cluster
   folds two known intents into one, the fit's judge is asked whether their members are
   one intent, and a refused union keeps both (each with its members; the cluster's other
   rows go to the nearer one). A split is asked too (``consolidation_split_check``, by
   default with an LLM judge): when the re-fit cuts a known intent into two certified
   clusters that each hold mostly its remembered members, the judge is asked whether the
   two are one intent, and a Good union keeps it whole. A continued intent keeps its id and its name, unless fewer
   than ``rename_overlap`` of its members are the ones it was named for and the fit's namer
   names it otherwise: then it is ``renamed`` by ``engine`` (a first run's name no longer
   names what a split or the memory's turnover left in it). Every remembered utterance
   whose intent changed gets a new assignment record with ``version`` + 1 and its
   ``cause``, once its input offset is committed (before that a redelivery of its event
   could write version 1 after it): a move not yet settled is kept as *pending* and made
   by a later tick as soon as the offset is committed, without another fit
   (``dialin_reassignments_deferred`` counts them; the next consolidation replaces what
   is still pending).
   Buffered copies of remembered utterances (a redelivered event buffered again) are
   tombstoned, never decided twice;
5. **publish** (examples PII-redacted first by the redactor it is handed, see
   :func:`~dialin.streams.factory.build_redactor`),
   only clusters the judge certified Good, in an order that makes a crash at any
   point safe to repeat: catalog records (``dialin-catalog``, durable, with centroid and
   exemplars) -> intent updates -> assignments -> memory entries -> buffer tombstones.
   Each step waits for the broker's acks. A restarted leader republishes the catalog's
   current updates (same key, same version: idempotent), so a ``created`` is never
   lost and never sent for a second id; a consolidation repeated after a crash reads
   remembered intents through ``merged_into`` first. Members aged out while the fit
   ran are not assigned (they are in the DLQ already).

Utterances no Good verdict covers are not an intent: buffered ones stay buffered (for
a later run, or until they age out), remembered ones keep their intent; they are
counted in ``dialin_discovery_uncertified_utterances`` and logged; a run that fitted
utterances but certified no cluster at all is counted as ``dialin_discovery_runs
{result="certified_nothing"}`` (a strict or misconfigured judge; alert
``DialinDiscoveryCertifiesNothing``).

Steps 1-2, the trims and the publishing hold one lock, so an entry is never both
aged out and assigned; the fit itself runs outside it.

A failed fit leaves the buffer and the memory untouched and is counted
(``dialin_discovery_runs{result="failed"}``); the next trigger retries. A failed run
does not count as a run for the trigger (no new traffic is needed to try again), but
the retry backs off (``discovery_interval_seconds`` doubled per consecutive failure,
at most :data:`MAX_RETRY_SECONDS`) so a dead LLM is not asked again every tick.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dialin.models import (CatalogIntent, IntentCatalog, OpenSetMatcher, Redactor, came_from,
                           claims, exemplar_score, make_union_view, new_intent_id, reconcile)

from . import metrics
from .app import InputProgress, Publisher
from .buffer import BufferStore
from .fitter import Fitter, ThreadFitter
from .records import (Assignment, BufferEntry, DeadLetter, IntentUpdate, JudgeInfo, MemoryEntry,
                      dumps, utc_now)
from .lifecycle import transition
from ..settings import Settings

log = logging.getLogger(__name__)

Record = tuple[str, str | bytes | None, bytes | None]

#: ``judge_backend`` of an intent ``dialin catalog import`` made from a person's taxonomy:
#: a consolidation never merges it away nor moves its remembered members out of it.
IMPORTED = "import"

#: Texts per side an LLM judge is shown when a consolidation asks whether two known
#: intents are one (the engine's own union questions show as many).
UNION_SIDE = 10

#: The share of a rejected intent's region (the fitted rows its exemplars hold) above
#: which a cluster there counts as the rejected grouping proposed again.
SAME_GROUPING = 2 / 3

#: Entries a run's publishing decides (an assignment and a memory record each, built on
#: the event loop, whose state it reads) before it lets the loop run other tasks: a
#: consolidation decides thousands, and in one go that held the ingest agent up (issue 17).
BUILD_SLICE = 100

#: Longest pause between retries of a failing discovery run.
MAX_RETRY_SECONDS = 300.0


def _reads_as(label: str) -> str:
    """How a label reads: "Card-Lost", "card_lost" and "card lost" are one name."""
    return " ".join(label.casefold().replace("-", " ").replace("_", " ").split())


def kept_whole(intent: CatalogIntent) -> bool:
    """A person made or decided it (an import, or a reviewer's approve, rename, merge or
    split): a consolidation never merges it away nor moves its remembered members out,
    and its label stays."""
    return intent.judge_backend == IMPORTED or intent.pinned


class DiscoveryFailedWarning(RuntimeWarning):
    """A discovery run raised; the buffer was left as it was."""


def update_of(intent: CatalogIntent) -> IntentUpdate:
    """The published form of a catalog entry (no centroid, no exemplars)."""
    return IntentUpdate(
        intent_id=intent.intent_id, label=intent.label, role=intent.role, version=intent.version,
        event=intent.event, state=intent.state, actor=intent.actor,  # type: ignore[arg-type]
        status=intent.status, merged_into=intent.merged_into, split_from=intent.split_from,
        renamed_from=intent.renamed_from,
        size=intent.size, examples=list(intent.examples)[:10], created_at=intent.created_at,
        updated_at=intent.updated_at,
        judge=JudgeInfo(backend=intent.judge_backend, confidence=intent.judge_confidence,
                        fallback=intent.judge_fallback))


def intent_exemplars(settings: Settings, X: np.ndarray) -> tuple[np.ndarray, float]:
    """The exemplars (a seeded sample of member embeddings) and the open-set threshold of
    one intent whose members are the rows of ``X``, by the settings' matching rule: what
    every catalog record carries, whether discovery or ``dialin catalog import`` made it."""
    s = settings
    matcher = OpenSetMatcher(n_neighbors=s.match_neighbors, vote_share=s.match_vote_share,
                             quantile=s.match_quantile, max_exemplars=s.match_exemplars,
                             random_state=s.random_state).fit(X, ["i"] * len(X))
    return matcher.exemplars_, matcher.thresholds_["i"]


@dataclass
class Found:
    """One certified cluster of a fit: its rows (into the fitted entries) and its intent
    as the engine made it (label and examples already PII-redacted)."""

    rows: np.ndarray
    intent: Any


def labels_of(found: list[Found], n: int) -> np.ndarray:
    """Each of ``n`` fitted rows' certified cluster (its index in ``found``; -1: none)."""
    labels = np.full(n, -1)
    for k, f in enumerate(found):
        labels[f.rows] = k
    return labels


class Discovery:
    """The leader's discovery loop body; ``make_estimator()`` returns a fresh estimator.

    ``redactor`` (a :class:`dialin.models.Redactor`, the worker's from
    :func:`~dialin.streams.factory.build_redactor`) redacts the label and examples of
    every intent before it is published; None publishes them as the engine made them.
    ``fitter`` (:mod:`.fitter`, the worker's from :func:`~dialin.streams.factory.build_fitter`)
    runs each fit: in a process of its own, or (None) on the run's thread.
    ``progress`` (the worker's :meth:`~.app.LagProbe.progress`) says where the consumer
    group stands on the input: a consolidation waits while the lag is above
    ``consolidation_max_lag``, and reassigns only utterances whose input offset is
    committed. None (tests without a broker) treats every utterance as settled.
    """

    def __init__(self, settings: Settings, catalog: IntentCatalog, buffer: BufferStore,
                 publisher: Publisher, make_estimator: Callable[[], Any],
                 memory: BufferStore | None = None, redactor: Redactor | None = None,
                 progress: Callable[[], Awaitable[InputProgress]] | None = None,
                 fitter: Fitter | None = None) -> None:
        self.settings = settings
        self.catalog = catalog
        self.buffer = buffer
        self.memory = memory if memory is not None else BufferStore(MemoryEntry)
        self.publisher = publisher
        self.make_estimator = make_estimator
        self.redactor = redactor
        self.progress = progress
        self.fitter = fitter if fitter is not None else ThreadFitter()
        #: Moves a consolidation decided for utterances whose input offset was not yet
        #: committed: utterance_id -> (intent_id, cause). Leader-local: a new leader's
        #: first consolidation decides again.
        self.pending: dict[str, tuple[str, str]] = {}
        #: The utterance_ids each intent the engine named had when it was named (created or
        #: re-named): a consolidation re-names an intent once too few of its members are
        #: these (``rename_overlap``). Leader-local: a new leader counts from the members
        #: it finds remembered, so a leader change only delays a re-naming.
        self.named_for: dict[str, frozenset[str]] = {}
        #: utterance_id -> the intent the last consolidation certified it in (rows of a
        #: group a verdict admitted, not those the estimator's classifier placed): the next
        #: consolidation's warm start (``consolidation_warm_start``). Leader-local: a new
        #: leader's first consolidation starts cold.
        self.certified: dict[str, str] = {}
        self._core: set[int] = set()  # the current run's rows a verdict admitted
        self.last_run_at = 0.0
        self.last_consolidation_at = 0.0
        self.memory_at_consolidation = 0
        self.runs = 0
        self.consolidations = 0
        self.failures = 0  # consecutive failed runs
        self.retry_at = 0.0
        self.peak = 0  # the largest buffer size this worker has read as leader
        self._judged = self._good = 0
        self._fitted = self._uncertified = 0
        self._lock = asyncio.Lock()  # buffer and memory removals, and publishing
        #: Leader steps run each tick inside the lock, before any fit (the worker adds the
        #: reviewers' decisions, the lifecycle rules and the volume windows): never while a
        #: fit's plan is being published, so a decision and a run never race on a version.
        self.steps: list[Callable[[float], Awaitable[Any]]] = []

    # --- records -----------------------------------------------------------------
    def _catalog_record(self, intent: CatalogIntent) -> Record:
        rec = intent.to_record(self.catalog.embedder)
        return (self.settings.topic_catalog, intent.intent_id,
                json.dumps(rec, ensure_ascii=False).encode("utf-8"))

    def _update_records(self, intent: CatalogIntent) -> list[Record]:
        """The update (compacted, the current state) and the same record on the history."""
        value = dumps(update_of(intent))
        return [(self.settings.topic_updates, intent.intent_id, value),
                (self.settings.topic_events, intent.intent_id, value)]

    async def publish_intents(self, intents: list[CatalogIntent]) -> None:
        """Put ``intents`` (events, in order) in the catalog and publish them: catalog
        records, then updates and events, each step acknowledged."""
        for intent in intents:
            self.catalog.put(intent)
        await self.publisher.send_all([self._catalog_record(i) for i in intents])
        await self.publisher.send_all([r for i in intents for r in self._update_records(i)])

    def assignment(self, entry: BufferEntry, x: np.ndarray, intent: CatalogIntent,
                    version: int, cause: str) -> tuple[Record, Record]:
        """The assignment record and the memory entry of one decided utterance."""
        score = None
        if intent.exemplars is not None and len(intent.exemplars):
            score = round(float(exemplar_score(x, intent.exemplars, self.catalog.n_score)[0]), 6)
        a = Assignment(utterance_id=entry.utterance_id, call_id=entry.call_id,
                       intent_id=intent.intent_id, label=intent.label, role=entry.role,
                       score=score, version=version, cause=cause,  # type: ignore[arg-type]
                       intent_state=intent.state)  # type: ignore[arg-type]
        m = MemoryEntry(**{**entry.model_dump(exclude={"intent_id", "version"}),
                           "intent_id": intent.intent_id, "version": version})
        return ((self.settings.topic_assignments, entry.utterance_id, dumps(a)),
                (self.settings.topic_memory, entry.utterance_id, dumps(m)))

    async def republish(self) -> int:
        """Publish every catalog entry's current update again (idempotent; after a restart).

        The history gets it again too, so an event a crash cut off is never lost; a
        subscriber of ``intent-events`` drops a repeated (intent_id, version)."""
        intents = list(self.catalog.intents_.values())
        await self.publisher.send_all([r for i in intents for r in self._update_records(i)])
        return len(intents)

    # --- buffer and memory upkeep ---------------------------------------------------
    async def after_read(self) -> None:
        """The buffer and memory readers' hook after each batch they applied.

        Exports the sizes, and the buffer's high-water mark, before anything trims
        them; then, over a cap, trims at once instead of at the next tick, which a
        running fit can delay for minutes. It waits for the lock only while a tick
        ages out, re-matches or publishes, never for a fit.
        """
        self._export_size()
        over_memory = len(self.memory) > self.settings.memory_cap
        if len(self.buffer) > self.settings.buffer_cap or over_memory:
            async with self._lock:
                await self.age_out(time.time())
                await self.trim_memory()

    async def age_out(self, now: float) -> int:
        s = self.settings
        entries = self.buffer.oldest_first()
        too_old = [e for e in entries if now - e.accepted_at > s.buffer_max_age_seconds]
        keep = [e for e in entries if now - e.accepted_at <= s.buffer_max_age_seconds]
        over = keep[:max(0, len(keep) - s.buffer_cap)]
        out: list[Record] = []
        for reason, group in (("age", too_old), ("cap", over)):
            for e in group:
                dl = DeadLetter.of("aged_out", dumps(e.model_copy(update={"embedding": ""})),
                                   key=e.call_id, utterance_id=e.utterance_id,
                                   source_topic=s.topic_buffer)
                dl = dl.model_copy(update={"reason": f"aged_out: {reason}"})
                out.append((s.topic_dlq, e.utterance_id, dumps(dl)))
        if not out:
            return 0
        await self.publisher.send_all(out)
        gone = [e.utterance_id for e in too_old + over]
        await self.publisher.send_all([(s.topic_buffer, uid, None) for uid in gone])
        self.buffer.discard(gone)
        self._export_size()
        if too_old:
            metrics.BUFFER_AGED_OUT.labels("age").inc(len(too_old))
        if over:
            metrics.BUFFER_AGED_OUT.labels("cap").inc(len(over))
        return len(gone)

    async def trim_memory(self) -> int:
        """Forget the oldest remembered utterances beyond ``memory_cap``, keeping at least
        ``memory_min_per_intent`` of every intent (their assignments stand)."""
        s = self.settings
        excess = len(self.memory) - s.memory_cap
        if excess <= 0:
            return 0
        left = Counter(e.intent_id for e in self.memory.entries.values())
        gone = []
        for e in self.memory.oldest_first():
            if len(gone) >= excess:
                break
            if left[e.intent_id] > s.memory_min_per_intent:
                left[e.intent_id] -= 1
                gone.append(e.utterance_id)
        if gone:
            await self.publisher.send_all([(s.topic_memory, uid, None) for uid in gone])
            self.memory.discard(gone)  # a reader's late copy of an entry is trimmed again
            self._export_size()
        return len(gone)

    async def move_pending(self, progress: InputProgress | None) -> int:
        """Make the pending moves whose input offset is committed now (see ``pending``).

        A move is dropped when its utterance left the memory, already names the target,
        or the target is no longer active (merged ids are followed first)."""
        if not self.pending or progress is None:
            return 0
        assignments: list[Record] = []
        remembered: list[Record] = []
        for uid, (intent_id, cause) in list(self.pending.items()):
            entry = self.memory.entries.get(uid)
            target = self.catalog.get(self.resolve(intent_id))
            if entry is None or target is None or not target.active or entry.intent_id == target.intent_id:
                del self.pending[uid]
                continue
            if not progress.settled(entry.source_partition, entry.source_offset):
                continue
            del self.pending[uid]
            a, m = self.assignment(entry, self.memory.vectors[uid], target, entry.version + 1, cause)
            assignments.append(a)
            remembered.append(m)
            metrics.REASSIGNMENTS.labels(cause).inc()
        await self.finish(assignments, remembered, [])
        return len(assignments)

    async def drop_decided(self) -> int:
        """Tombstone buffered entries of utterances the memory holds: a redelivered event
        buffered again after it was assigned. The assignment stands (deciding it again
        could publish an older version after a newer one)."""
        twice = [uid for uid in self.buffer.entries if uid in self.memory.entries]
        if twice:
            await self.publisher.send_all([(self.settings.topic_buffer, uid, None) for uid in twice])
            self.buffer.discard(twice)
            log.info("dropped %d buffered copies of utterances already assigned", len(twice))
        return len(twice)

    async def rematch(self) -> int:
        """Assign buffered entries that belong to a catalog intent now."""
        entries, X = self.buffer.snapshot()
        if not entries or not len(self.catalog):
            return 0
        ids, _ = await asyncio.to_thread(self.catalog.match, X, [e.role for e in entries])
        assignments: list[Record] = []
        remembered: list[Record] = []
        done = []
        for r, iid in enumerate(ids):
            intent = self.catalog.get(iid) if iid is not None else None
            if intent is not None:
                a, m = self.assignment(entries[r], X[r], intent, entries[r].version + 1, "matched")
                assignments.append(a)
                remembered.append(m)
                done.append(entries[r].utterance_id)
        await self.finish(assignments, remembered, done)
        return len(done)

    async def finish(self, assignments: list[Record], remembered: list[Record],
                      done: list[str]) -> None:
        """Publish assignments, then the memory entries, then the buffer tombstones."""
        await self.publisher.send_all(assignments)
        await self.publisher.send_all(remembered)
        for _, key, value in remembered:  # the reader applies them again later: idempotent
            self.memory.apply(str(key).encode(), value)
        if done:
            await self.publisher.send_all([(self.settings.topic_buffer, uid, None) for uid in done])
            self.buffer.discard(done)
        self._export_size()

    # --- triggers --------------------------------------------------------------------
    def should_run(self, now: float) -> bool:
        """A buffer run is due: enough buffered and new, or the oldest entry too old."""
        s = self.settings
        n = len(self.buffer)
        if n == 0 or now < self.retry_at:
            return False
        fresh = sum(1 for e in self.buffer.entries.values() if e.accepted_at >= self.last_run_at)
        by_size = n >= s.discovery_min_utterances and fresh >= max(1, s.discovery_min_utterances // 4)
        by_age = (self.buffer.oldest_age(now) >= s.discovery_max_age_seconds
                  and now - self.last_run_at >= s.discovery_max_age_seconds)
        return by_size or by_age or (fresh > 0 and self.idle(now))

    def idle(self, now: float) -> bool:
        """No utterance arrived for ``discovery_idle_seconds`` (0: never idle): the traffic
        paused, so what arrived since the last run is examined now, on cores the traffic
        left free, instead of waiting for a size trigger it will not reach or for
        ``discovery_max_age_seconds``. Under steady traffic it never fires."""
        wait = self.settings.discovery_idle_seconds
        if wait <= 0:
            return False
        latest = max((e.accepted_at for store in (self.memory, self.buffer)
                      for e in store.entries.values()), default=None)
        return latest is not None and now - latest >= wait

    def should_consolidate(self, now: float) -> bool:
        """A consolidation is due: while the memory fills up, when the utterances that
        arrived since the last one (now remembered or buffered) are ``consolidation_growth``
        of the memory then (the cost grows geometrically, so it stays within a few times
        one fit of the full memory), or when any arrived and the last one is older than
        ``discovery_max_age_seconds`` (no decision stays unexamined longer than the
        buffer's own age trigger); once the memory is full, every
        ``consolidation_interval_seconds`` when anything arrived; and, full or not, once
        the traffic pauses (:meth:`idle`) when anything arrived since the last one."""
        s = self.settings
        n = len(self.memory)
        if n == 0 or now < self.retry_at:
            return False
        fresh = sum(1 for store in (self.memory, self.buffer) for e in store.entries.values()
                    if e.accepted_at >= self.last_consolidation_at)
        if fresh == 0:
            return False
        since = now - self.last_consolidation_at
        if self.idle(now):
            return True
        if n >= s.memory_cap:  # full: a fixed cost per run, so a fixed pace
            return since >= s.consolidation_interval_seconds
        base = max(self.memory_at_consolidation, s.discovery_min_utterances)
        return fresh >= s.consolidation_growth * base or since >= s.discovery_max_age_seconds

    # --- fitting ---------------------------------------------------------------------
    def _fit(self, entries: list[BufferEntry], X: np.ndarray) -> list[Found]:
        """Thread body: one fit per role; the Good clusters, with redacted examples.

        An intent without a Good verdict is never returned, whatever the estimator
        made of it (labels -1, a Bad or an invalid verdict, or none at all).
        """
        found: list[Found] = []
        self._core = set()
        self._judged = self._good = 0
        self._fitted = self._uncertified = 0
        roles = sorted({e.role or "" for e in entries})
        for role in roles:
            rows = np.array([i for i, e in enumerate(entries) if (e.role or "") == role])
            if not self._fittable(rows):
                continue
            est, certified, covered = self._fit_rows(rows, entries, X, self._prior(rows, entries))
            self._fitted += len(rows)
            self._uncertified += len(rows) - covered
            if any(isinstance(entries[i], MemoryEntry) for i in rows):
                certified = self._apart_unless_joined(est, certified, rows, entries, X)
                if self.split_check_on(self.settings):
                    certified = self._whole_unless_split(est, certified, rows, entries, X)
            found += certified
        return found

    def _fittable(self, rows: np.ndarray) -> bool:
        """Enough rows for a fit to find two clusters of ``discovery_min_cluster_size``."""
        return len(rows) >= max(2 * self.settings.discovery_min_cluster_size, 4)

    def _prior(self, rows: np.ndarray, entries: list[BufferEntry]) -> np.ndarray | None:
        """A consolidation's warm start for ``rows``: each remembered utterance still in the
        intent the last consolidation certified it in gets that intent's group number, every
        other row -1; None when there is nothing to start from (a buffer run, a new leader,
        ``consolidation_warm_start`` off)."""
        if not (self.settings.consolidation_warm_start and self.certified):
            return None
        groups: dict[str, int] = {}
        prior = np.full(len(rows), -1, dtype=np.int64)
        for k, i in enumerate(rows):
            e = entries[i]
            was = self.certified.get(e.utterance_id) if isinstance(e, MemoryEntry) else None
            if was is not None and (now := self.resolve(was)) == self.resolve(e.intent_id):
                prior[k] = groups.setdefault(now, len(groups))
        return prior if groups else None

    def _fit_rows(self, rows: np.ndarray, entries: list[BufferEntry], X: np.ndarray,
                  prior: np.ndarray | None = None) -> tuple[Any, list[Found], int]:
        """Thread body: a fresh estimator fitted on ``rows`` of ``entries`` (warm from
        ``prior`` when the estimator takes ``prior_labels``); returns it, its clusters with
        a Good verdict and at least ``discovery_min_cluster_size`` rows (examples
        redacted), and how many rows a Good verdict covers. Verdicts and judge calls are
        counted in the metrics."""
        est = self.make_estimator()
        warm = ({"prior_labels": prior} if prior is not None
                and "prior_labels" in inspect.signature(est.fit).parameters else {})
        est = self.fitter.fit(est, X[rows], [entries[i].text for i in rows], **warm)
        covered = 0
        certified: list[Found] = []
        for intent in est.intents_:
            verdict = intent.verdict
            if verdict is not None:
                self._judged += 1
                self._good += int(verdict.is_good)
                metrics.CLUSTERS_JUDGED.labels(
                    {True: "good", False: "bad", None: "invalid"}[verdict.good]).inc()
            if verdict is None or not verdict.is_good:
                continue
            covered += len(intent.members)
            members = rows[np.asarray(intent.members, dtype=int)]
            if len(members) >= self.settings.discovery_min_cluster_size:
                certified.append(Found(members, self._redacted(intent, entries, members)))
        for phase, n in est.calls_by_phase_.items():
            metrics.JUDGE_CALLS.labels(str(phase)).inc(n)
        in_group = getattr(est, "in_group_", None)  # rows a verdict admitted (not the classifier)
        if self.settings.consolidation_warm_start and in_group is not None:
            self._core.update(rows[np.asarray(in_group, dtype=bool)].tolist())
        return est, certified, covered

    def _apart_unless_joined(self, est: Any, found: list[Found], rows: np.ndarray,
                             entries: list[BufferEntry], X: np.ndarray) -> list[Found]:
        """Thread body (consolidation, one role): merging two known intents is a union
        question for the fit's own judge, not a side effect of the fit.

        A certified cluster that holds most of the remembered members of two or more
        known intents would merge them (:func:`~dialin.models.reconcile`). The judge
        (prepared on this fit's rows by ``est.fit``) is asked whether the members of the
        largest such intent and of each other one are one intent; a refused union keeps
        that intent apart as its own part of the cluster, and the cluster's other rows
        (buffered, or of intents held mostly elsewhere) go to the part with the nearest
        centroid. Without this, a new intent found by a buffer run was merged back into
        its nearest old one whenever a re-fit of everything put both in one cluster.
        A side with fewer than ``discovery_min_cluster_size`` rows is merged unasked.
        """
        min_size = max(1, self.settings.discovery_min_cluster_size)
        texts = [entries[i].text for i in rows]
        local = {int(g): k for k, g in enumerate(rows)}
        old = self._remembered(rows, entries)
        claimed = claims([old.get(int(g)) for g in rows], labels_of(found, len(entries))[rows])
        X_fit = X[rows]
        out: list[Found] = []
        for k, f in enumerate(found):
            claim = claimed.get(k, [])
            if len(claim) < 2:
                out.append(f)
                continue
            members = {iid: [g for g in f.rows.tolist() if old.get(g) == iid] for iid in claim}
            parts = {claim[0]: members[claim[0]]}
            for other in claim[1:]:
                if len(members[other]) < min_size or self._union_verdict(
                        est, [local[g] for g in parts[claim[0]]],
                        [local[g] for g in members[other]], texts, X_fit).is_good:
                    continue
                parts[other] = members[other]
                log.info("consolidation: intents %s and %s stay apart (the judge refused "
                         "their union)", claim[0], other)
            if len(parts) == 1:
                out.append(f)
                continue
            out += self._parts(f, parts, entries, X)
        return out

    @staticmethod
    def split_check_on(settings: Settings) -> bool:
        """Whether a consolidation asks the judge before it splits a known intent
        (``consolidation_split_check``; ``auto``: with an LLM judge, which reads the texts.
        The offline heuristic's union test reads the geometry the re-fit has just cut, and
        with it the check kept intents broad: ``bench/stream_keepup.py --split-check``)."""
        mode = settings.consolidation_split_check
        return mode == "on" or (mode == "auto" and settings.judge != "heuristic")

    def _whole_unless_split(self, est: Any, found: list[Found], rows: np.ndarray,
                            entries: list[BufferEntry], X: np.ndarray) -> list[Found]:
        """Thread body (consolidation, one role): splitting a known intent is a union
        question for the fit's judge too, the mirror of :meth:`_apart_unless_joined`.

        A re-fit of everything may cut a known intent in two certified clusters that each
        hold mostly its remembered members (at least ``discovery_min_cluster_size`` of
        them): its merge phase spends the fit's budget on the most linked pairs first and
        may stop before it asks about these two. The judge is asked whether the two
        clusters are one intent; a Good union joins them again (the intent continues
        whole), a refused one lets the split stand (it grew incoherent). Without this, a
        consolidation after the traffic paused split intents that a buffer run had found
        whole (``bench/stream_keepup.py``).
        """
        min_size = max(1, self.settings.discovery_min_cluster_size)
        old = self._remembered(rows, entries)
        held: dict[str, list[tuple[int, int]]] = {}  # known intent -> [(its members in k, k)]
        for k, f in enumerate(found):
            counts = Counter(old[g] for g in f.rows.tolist() if g in old)
            for iid, n in counts.items():
                if n >= min_size and 2 * n > len(f.rows):
                    held.setdefault(iid, []).append((n, k))
        for iid in list(held):
            intent = self.catalog.get(iid)
            if intent is not None and kept_whole(intent):
                del held[iid]  # a person's intent: its members stay in it whatever the fit cut
        if not any(len(parts) > 1 for parts in held.values()):
            return found
        texts = [entries[i].text for i in rows]
        local = {int(g): k for k, g in enumerate(rows)}
        X_fit = X[rows]
        group_of = list(range(len(found)))  # cluster -> the group it is in (joined clusters)
        clusters_in = {k: [k] for k in range(len(found))}  # group -> its clusters

        def fit_rows(group: int) -> list[int]:
            return [local[g] for k in sorted(clusters_in[group]) for g in found[k].rows.tolist()]

        verdicts: dict[int, Any] = {}
        for iid in sorted(held):
            parts = sorted(held[iid], reverse=True)
            for _, k in parts[1:]:
                a, b = group_of[parts[0][1]], group_of[k]
                if a == b:
                    continue
                verdict = self._union_verdict(est, fit_rows(a), fit_rows(b), texts, X_fit)
                if not verdict.is_good:
                    log.info("consolidation: intent %s stays split (the judge refused the union "
                             "of its parts)", iid)
                    continue
                for c in clusters_in[b]:
                    group_of[c] = a
                clusters_in[a] += clusters_in.pop(b)
                verdicts[a] = verdict
        out: list[Found] = []
        for a in sorted(clusters_in):
            joined = [found[k] for k in sorted(clusters_in[a])]
            if len(joined) == 1:
                out.append(joined[0])
                continue
            biggest = max(joined, key=lambda f: len(f.rows))
            members = np.sort(np.concatenate([f.rows for f in joined]))
            intent = replace(biggest.intent, examples=(), verdict=verdicts[a])
            out.append(Found(members, self._redacted(intent, entries, members)))
        return out

    def _union_verdict(self, est: Any, a: list[int], b: list[int], texts: list[str],
                       X_fit: np.ndarray) -> Any:
        """The fit's judge on "are ``a`` and ``b`` (rows of the fit) one intent?", shown
        as the engine shows its own union questions (the texts nearest each side's centre)."""
        view = make_union_view(a, b, texts, X_fit, per_side=UNION_SIDE,
                               rng=self.settings.random_state)
        verdict = est.judge.judge([view])[0]
        metrics.JUDGE_CALLS.labels("reconcile").inc()
        metrics.CLUSTERS_JUDGED.labels(
            {True: "good", False: "bad", None: "invalid"}[verdict.good]).inc()
        return verdict

    def _parts(self, found: Found, parts: dict[str, list[int]], entries: list[BufferEntry],
               X: np.ndarray) -> list[Found]:
        """``found`` cut into ``parts`` (known intent -> its rows); every other row of it
        joins the part whose centroid is nearest."""
        ids = list(parts)
        taken = {g for rows in parts.values() for g in rows}
        centroids = np.vstack([X[parts[i]].mean(axis=0) for i in ids])
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        rest = [g for g in found.rows.tolist() if g not in taken]
        grouped = {i: list(parts[i]) for i in ids}
        if rest:
            for g, j in zip(rest, (X[rest] @ centroids.T).argmax(axis=1).tolist()):
                grouped[ids[j]].append(g)
        out = []
        for i in ids:
            rows = np.asarray(sorted(grouped[i]), dtype=np.int64)
            intent = replace(found.intent, examples=())  # its own members' texts, redacted
            out.append(Found(rows, self._redacted(intent, entries, rows)))
        return out

    def _unblocked(self, found: list[Found], entries: list[BufferEntry],
                   X: np.ndarray) -> list[Found]:
        """Thread body: no cluster proposes a rejected grouping again.

        A cluster is that grouping again when most of its rows fall in a rejected
        intent's region (its exemplars, by the open-set rule) and it holds at least
        :data:`SAME_GROUPING` of the fitted rows in that region. Such a cluster is
        fitted again on its own rows (a fresh estimator, whose judge is calibrated on
        them): the finer intents that fit finds are proposed, since a person rejected
        the grouping, not every intent in it; what is still the grouping is dropped, its
        buffered utterances stay buffered, counted in
        ``dialin_discovery_blocked_clusters``. (Blocking the whole region left its
        utterances buffered for good: see ``bench/decisions.py``.)
        """
        if not found:
            return found
        region = self.catalog.match_rejected(X)
        in_region = Counter(r for r in region if r is not None)

        def repeated(f: Found) -> tuple[str, int] | None:
            """(the rejected intent, its rows in ``f``) when ``f`` is its grouping again."""
            hits = Counter(region[r] for r in f.rows.tolist() if region[r] is not None)
            if not hits:
                return None
            rejected, n = hits.most_common(1)[0]
            if 2 * n > len(f.rows) and n >= SAME_GROUPING * in_region[rejected]:
                return rejected, n
            return None

        keep = []
        for f in found:
            again = repeated(f)
            if again is None:
                keep.append(f)
                continue
            finer = [g for g in self._refit(f, entries, X) if repeated(g) is None]
            keep += finer
            covered = sum(len(g.rows) for g in finer)
            if covered < len(f.rows):
                self._uncertified += len(f.rows) - covered
            if not finer:
                metrics.DISCOVERY_BLOCKED.inc()
                rejected, n = again
                log.info("discovery: a cluster of %d proposes rejected intent %s again (%d "
                         "of the %d fitted rows in its region)", len(f.rows), rejected, n,
                         in_region[rejected])
        return keep

    def _refit(self, f: Found, entries: list[BufferEntry], X: np.ndarray) -> list[Found]:
        """The Good clusters of a fit of ``f``'s rows alone (a blocked grouping's parts)."""
        return self._fit_rows(f.rows, entries, X)[1] if self._fittable(f.rows) else []

    def _redacted(self, intent, entries: list[BufferEntry], members) -> Any:
        """``intent`` with the examples it will be published with, PII redacted (in the
        fit's thread: redaction is CPU work that must not hold the event loop)."""
        examples = list(intent.examples) or [entries[i].text for i in members[:10]]
        label = intent.label
        if self.redactor is not None:
            examples = self.redactor.redact_many(examples)
            label = self.redactor.redact_label(label)
        return replace(intent, label=label, examples=tuple(examples))

    def _exemplars(self, X: np.ndarray) -> tuple[np.ndarray, float]:
        return intent_exemplars(self.settings, X)

    def _entry(self, found: Found, X: np.ndarray, role: str | None, intent_id: str, now: str,
               old: CatalogIntent | None, split_from: str | None = None) -> CatalogIntent:
        """The catalog entry of one certified cluster (a known intent continued, or new)."""
        exemplars, threshold = self._exemplars(X[found.rows])
        verdict = found.intent.verdict
        common = dict(centroid=X[found.rows].mean(axis=0), size=len(found.rows),
                      examples=tuple(found.intent.examples)[:10], exemplars=exemplars,
                      threshold=threshold, updated_at=now,
                      judge_backend=verdict.backend if verdict else "",
                      judge_confidence=verdict.confidence if verdict else None,
                      judge_fallback=verdict.fallback if verdict else None)
        if old is not None:  # the same intent: its id stays (its name too unless _renamed)
            return transition(old, "updated", "engine", now, **common, merged_into=None)
        return CatalogIntent(intent_id=intent_id, label=found.intent.label,
                             role=role, created_at=now, split_from=split_from,
                             state="candidate", event="created", actor="engine", **common)

    # --- runs ------------------------------------------------------------------------
    def _plan_buffer_run(self, found: list[Found], entries: list[BufferEntry], X: np.ndarray):
        """Thread body: every certified cluster of buffered rows is a new intent."""
        now = utc_now()
        plan = []
        for f in found:
            role = entries[f.rows[0]].role
            iid = new_intent_id(role, [entries[r].utterance_id for r in f.rows])
            plan.append((self._entry(f, X, role, iid, now, self.catalog.get(iid)), f.rows))
        return plan, [], {}

    def resolve(self, intent_id: str) -> str:
        """Follow ``merged_into`` to the intent that holds a remembered utterance now."""
        seen = set()
        while intent_id not in seen:
            seen.add(intent_id)
            intent = self.catalog.get(intent_id)
            if intent is None or not intent.merged_into:
                break
            intent_id = intent.merged_into
        return intent_id

    def _plan_consolidation(self, found: list[Found], entries: list[BufferEntry], X: np.ndarray):
        """Thread body: map the re-fit's clusters onto known ids (see the module docstring).

        Returns (new or continued entries with their rows, merged entries, intent moves
        {old id: new id} for remembered rows outside any certified cluster).
        """
        now = utc_now()
        labels = labels_of(found, len(entries))
        old = [self._remembered_in(e) for e in entries]
        plan, merged, moves = [], [], {}
        for role in sorted({e.role or "" for e in entries}):
            rows = np.array([i for i, e in enumerate(entries) if (e.role or "") == role])
            rec = reconcile([old[i] for i in rows], labels[rows],
                            [entries[i].utterance_id for i in rows], role or None)
            remembered: dict[str, list[str]] = {}  # intent -> its remembered utterance_ids
            for i in rows:
                if old[i] is not None:
                    remembered.setdefault(old[i], []).append(entries[i].utterance_id)
            for k, iid in rec.intent_of.items():
                # A continued id is in the catalog; so is a new cluster's id (it comes from
                # its members) when a crashed run published the cluster (catalog and update
                # out, its assignments not): the same intent, continued, never created twice.
                known = self.catalog.get(iid)
                if known is not None and not known.active:
                    continue  # retired or rejected: never continued, its members stay put
                entry = self._entry(found[k], X, role or None, iid, now, known,
                                    rec.split_from.get(iid))
                if known is not None:
                    entry = self._renamed(entry, found[k], entries, remembered.get(iid, []))
                plan.append((entry, found[k].rows))
            for gone, into in rec.merged.items():
                target = self.catalog.get(into)
                if target is not None and not target.active:
                    continue  # nothing is merged into a retired intent
                intent = self.catalog.get(gone)
                if intent is not None and kept_whole(intent):
                    continue  # a person's intent: its members stay (see _publish)
                if intent is not None:
                    merged.append(transition(intent, "merged", "engine", now, merged_into=into))
                moves[gone] = into
        return plan, merged, moves

    def _renamed(self, entry: CatalogIntent, found: Found, entries: list[BufferEntry],
                 remembered: list[str]) -> CatalogIntent:
        """A continued intent, re-named when its name no longer is the name of its members.

        The namer named the intent for the members it had then (often a small first run's);
        a consolidation that split it, merged others into it, or replaced most of its
        members as the memory turned over leaves that name describing other utterances. So
        when fewer than ``rename_overlap`` of its members now are members it was named for
        (``named_for``; unknown to this leader: the members it had remembered before this
        run), and the fit's namer names it otherwise now, it takes the new name: event
        ``renamed`` by ``engine``, ``renamed_from`` the old one. An intent a person named or
        decided about (:func:`kept_whole`) keeps its name. Measured on what subscribers
        read: ``bench/stream_quality.py`` ("names right").
        """
        share = self.settings.rename_overlap
        if share <= 0 or kept_whole(entry) or entry.event != "updated":
            return entry
        fresh = found.intent.label
        if _reads_as(fresh) == _reads_as(entry.label):
            return entry
        named = self.named_for.get(entry.intent_id)
        if named is None:
            named = frozenset(remembered)
        members = [entries[r].utterance_id for r in found.rows]
        kept = sum(1 for u in members if u in named)
        if members and kept / len(members) >= share:
            return entry
        return replace(entry, event="renamed", label=fresh, renamed_from=entry.label)

    def _distinct_labels(self, plan: list, merged: list[CatalogIntent]) -> list:
        """Give each created or re-named intent a label no other active intent of its role has.

        Keyword labels of two different intents can be equal; two intents with one
        name would confuse every reader, so the later one gets a numeric suffix (a re-named
        intent whose new name is taken keeps its old one instead). (The label does not
        decide identity: the fit and the reconciliation did.)
        """
        def key(role: str | None, label: str) -> tuple[str | None, str]:
            return role, _reads_as(label)

        gone = {m.intent_id for m in merged} | {i.intent_id for i, _ in plan}  # never itself
        taken = {key(i.role, i.label) for i in self.catalog.active() if i.intent_id not in gone}
        taken |= {key(i.role, i.label) for i, _ in plan if i.event not in ("created", "renamed")}
        plan = list(plan)
        for n, (intent, rows) in enumerate(plan):
            if intent.event != "renamed":
                continue
            if key(intent.role, intent.label) in taken:
                # the new name is another intent's: it keeps the one it has
                before = self.catalog.get(intent.intent_id)
                intent = replace(intent, event="updated", label=intent.renamed_from,
                                 renamed_from=before.renamed_from if before else None)
                plan[n] = (intent, rows)
            taken.add(key(intent.role, intent.label))
        out = []
        for intent, rows in plan:
            if intent.event == "created":
                label, n = intent.label, 1
                while key(intent.role, label) in taken:
                    n += 1
                    label = f"{intent.label} ({n})"
                taken.add(key(intent.role, label))
                intent = replace(intent, label=label)
            out.append((intent, rows))
        return out

    async def input_progress(self) -> InputProgress | None:
        """Where the consumer group stands on the input; None when it cannot be read."""
        if self.progress is None:
            return None
        try:
            return await self.progress()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - unknown progress defers, never fails, a run
            log.warning("reading the input's committed offsets failed: %s: %s",
                        type(exc).__name__, exc)
            return None

    async def discover(self, entries: list[BufferEntry], X: np.ndarray,
                       consolidate: bool = False) -> dict[str, int]:
        """Fit, reconcile, publish; returns counts by status, assigned, reassigned,
        deferred (reassignments left for the next consolidation) and uncertified
        (fitted utterances no Good verdict covers)."""
        found = await asyncio.to_thread(self._fit, entries, X)
        found = await asyncio.to_thread(self._unblocked, found, entries, X)
        planner = self._plan_consolidation if consolidate else self._plan_buffer_run
        plan, merged, moves = await asyncio.to_thread(planner, found, entries, X)
        plan = self._distinct_labels(plan, merged)
        progress = await self.input_progress() if consolidate else None
        if self.progress is None:
            settled: Callable[[BufferEntry], bool] = lambda e: True  # noqa: E731
        elif progress is None:
            settled = lambda e: False  # noqa: E731 - unknown: no reassignment this time
        else:
            settled = lambda e: progress.settled(e.source_partition, e.source_offset)  # noqa: E731
        async with self._lock:
            return await self._publish(plan, merged, moves, entries, X, settled)

    async def _publish(self, plan: list, merged: list[CatalogIntent], moves: dict[str, str],
                       entries: list[BufferEntry], X: np.ndarray,
                       settled: Callable[[BufferEntry], bool] = lambda e: True) -> dict[str, int]:
        """Publish a run's intents and decisions in the crash-safe order (module docstring).

        A remembered utterance is reassigned only when ``settled`` (its input offset is
        committed): before that, a redelivery of its event could write a ``matched``
        version 1 after this run's higher version, and a subscriber would keep the older
        decision. It keeps its intent until the next consolidation instead.
        """
        counts = {"created": 0, "updated": 0, "merged": len(merged), "assigned": 0,
                  "reassigned": 0, "deferred": 0, "uncertified": self._uncertified}
        if any(isinstance(e, MemoryEntry) for e in entries):
            self.pending.clear()  # a consolidation: its own moves replace what was pending
        min_size = max(1, self.settings.discovery_min_cluster_size)
        intents: list[CatalogIntent] = []
        owner: dict[int, CatalogIntent] = {}
        named_now: dict[str, frozenset[str]] = {}
        for intent, rows in plan:
            # Buffered entries the cap or age limit removed while the fit ran are in the
            # DLQ: not assigned as well; members of an imported intent stay in it. A new
            # cluster left too small waits for a later run.
            alive = [r for r in rows if self._alive(entries[r])
                     and not self._held(entries[r], intent.intent_id)]
            if intent.status == "created" and len(alive) < min_size:
                continue
            if intent.split_from is not None and not came_from(
                    [self._remembered_in(entries[r]) for r in alive], intent.split_from):
                # the fit counted members a person's intent keeps (_held): none of them moved
                intent = replace(intent, split_from=None)
            intents.append(intent)
            owner.update({r: intent for r in alive})
            if intent.event in ("created", "renamed"):
                named_now[intent.intent_id] = frozenset(entries[r].utterance_id for r in alive)
        if self.settings.consolidation_warm_start and any(
                isinstance(e, MemoryEntry) for e in entries):  # the next one's warm start
            self.certified = {entries[r].utterance_id: intent.intent_id
                              for r, intent in owner.items() if r in self._core}
        by_id = {i.intent_id: i for i in intents}
        for gone, into in moves.items():
            if into not in by_id and self.catalog.get(into) is not None:
                by_id[into] = self.catalog.get(into)
        assignments: list[Record] = []
        remembered: list[Record] = []
        done: list[str] = []
        for r, e in enumerate(entries):
            if r % BUILD_SLICE == BUILD_SLICE - 1:
                await asyncio.sleep(0)  # the ingest agent's turn (see BUILD_SLICE)
            if not self._alive(e):
                continue
            was = self._remembered_in(e)
            now_in = owner.get(r)
            if now_in is None and was in moves and moves[was] in by_id:
                now_in = by_id[moves[was]]  # its intent was merged; it was in no cluster
            if now_in is None:
                continue
            if not isinstance(e, MemoryEntry):
                if e.utterance_id in self.memory.entries:
                    continue  # a redelivered copy of an assigned utterance: drop_decided's
                a, m = self.assignment(e, X[r], now_in, e.version + 1, "discovered")
                done.append(e.utterance_id)
                counts["assigned"] += 1
            elif now_in.intent_id != e.intent_id:
                cause = ("merge" if moves.get(was) == now_in.intent_id
                         else "split" if now_in.split_from == was else "consolidation")
                if not settled(e):
                    counts["deferred"] += 1
                    self.pending[e.utterance_id] = (now_in.intent_id, cause)
                    continue
                a, m = self.assignment(e, X[r], now_in, e.version + 1, cause)
                metrics.REASSIGNMENTS.labels(cause).inc()
                counts["reassigned"] += 1
            else:
                continue
            assignments.append(a)
            remembered.append(m)
        await self.publish_intents(intents + merged)
        self.named_for.update(named_now)
        if any(isinstance(e, MemoryEntry) for e in entries):
            # A consolidation fits every remembered and buffered utterance: ids it did not
            # see were trimmed and can never be members again, and intents no longer live
            # are never continued, so neither needs keeping (the memory bounds this map).
            present = {e.utterance_id for e in entries}
            self.named_for = {iid: ids & present for iid, ids in self.named_for.items()
                              if (live := self.catalog.get(iid)) is not None and live.active}
        for intent in intents:
            counts[intent.status] += 1
            if intent.event == "renamed":
                metrics.LIFECYCLE_EVENTS.labels("renamed").inc()
                log.info("intent %s renamed by engine: %r -> %r", intent.intent_id,
                         intent.renamed_from, intent.label)
        for status in ("created", "updated", "merged"):
            if counts[status]:
                metrics.INTENTS.labels(status).inc(counts[status])
        await self.finish(assignments, remembered, done)
        if counts["deferred"]:
            metrics.REASSIGNMENTS_DEFERRED.inc(counts["deferred"])
        if self._uncertified:
            metrics.DISCOVERY_UNCERTIFIED.inc(self._uncertified)
            log.log(logging.WARNING if self._good == 0 else logging.INFO,
                    "discovery: %d of %d fitted utterances are covered by no Good verdict "
                    "(buffered ones stay buffered, remembered ones keep their intent)%s",
                    self._uncertified, self._fitted,
                    " (the judge certified no cluster)" if self._good == 0 else "")
        return counts

    def _held(self, entry: BufferEntry, intent_id: str) -> bool:
        """A remembered member of an imported (person-made) intent, which a consolidation
        would move to another: it stays, so an imported taxonomy is not regrouped by a fit."""
        if not isinstance(entry, MemoryEntry):
            return False
        was = self.catalog.get(self.resolve(entry.intent_id))
        return (was is not None and was.active and kept_whole(was)
                and was.intent_id != intent_id)

    def _remembered_in(self, entry: BufferEntry) -> str | None:
        """The intent a remembered utterance is in now (merges followed); None if buffered."""
        return self.resolve(entry.intent_id) if isinstance(entry, MemoryEntry) else None

    def _remembered(self, rows: np.ndarray, entries: list[BufferEntry]) -> dict[int, str]:
        """:meth:`_remembered_in` of each remembered row of ``rows`` (buffered rows left out)."""
        return {int(g): iid for g in rows if (iid := self._remembered_in(entries[g])) is not None}

    def _alive(self, entry: BufferEntry) -> bool:
        """Still where the fit found it (memory entries stay; buffered ones may age out)."""
        if isinstance(entry, MemoryEntry):
            return True
        return entry.utterance_id in self.buffer.entries

    async def tick(self, now: float | None = None) -> dict[str, int] | None:
        """One timer tick; returns the run's counts, or None when nothing was run."""
        now = time.time() if now is None else now
        self._export_size()  # before the age-out: what a new leader read back, for one
        consolidate = self.should_consolidate(now)
        progress = None
        if (consolidate or self.pending) and self.progress is not None:
            progress = await self.input_progress()
        if consolidate and self.progress is not None:
            if progress is not None and progress.lag > self.settings.consolidation_max_lag:
                metrics.CONSOLIDATIONS_DEFERRED.inc()
                log.info("consolidation waits: input lag %d is above %d", progress.lag,
                         self.settings.consolidation_max_lag)
                consolidate = False
        async with self._lock:
            await self.age_out(now)
            await self.trim_memory()
            await self.drop_decided()
            await self.move_pending(progress)
            await self.rematch()
            for step in self.steps:
                await step(now)
        self._gauges(now)
        if not consolidate and not self.should_run(now):
            return None
        entries, X = self.buffer.snapshot()
        if consolidate:
            remembered, M = self.memory.snapshot()
            entries = remembered + entries
            X = np.vstack([a for a in (M, X) if a.size]) if entries else X
        started = time.perf_counter()
        previous = (self.last_run_at, self.last_consolidation_at)
        self.last_run_at = now
        if consolidate:
            self.last_consolidation_at = now
        try:
            counts = await self.discover(entries, X, consolidate)
        except Exception as exc:  # noqa: BLE001 - a failed run must leave the buffer alone
            self.last_run_at, self.last_consolidation_at = previous  # the trigger still holds
            self.failures += 1
            self.retry_at = now + min(self.settings.discovery_interval_seconds * 2 ** self.failures,
                                      MAX_RETRY_SECONDS)
            metrics.DISCOVERY_RUNS.labels("failed").inc()
            warnings.warn(f"discovery run failed, buffer kept: {type(exc).__name__}: {exc}",
                          DiscoveryFailedWarning, stacklevel=1)
            log.exception("discovery run failed")
            return None
        finally:
            metrics.DISCOVERY_SECONDS.observe(time.perf_counter() - started)
        self.runs += 1
        if consolidate:
            self.consolidations += 1
            self.memory_at_consolidation = len(self.memory)
            metrics.CONSOLIDATIONS.inc()
        self.failures, self.retry_at = 0, 0.0
        certified_nothing = self._fitted > 0 and self._good == 0
        metrics.DISCOVERY_RUNS.labels("certified_nothing" if certified_nothing else "ok").inc()
        if self._judged:
            metrics.DISCOVERY_GOODNESS.set(self._good / self._judged)
        self._gauges(time.time())
        log.info("discovery %s: %s", "consolidation" if consolidate else "run", counts)
        return counts

    def _export_size(self) -> None:
        n = len(self.buffer)
        self.peak = max(self.peak, n)
        metrics.BUFFER_UTTERANCES.set(n)
        metrics.BUFFER_PEAK.set(self.peak)
        metrics.MEMORY_UTTERANCES.set(len(self.memory))

    def _gauges(self, now: float) -> None:
        self._export_size()
        metrics.BUFFER_OLDEST_AGE.set(self.buffer.oldest_age(now))
        metrics.BUFFER_CAP.set(self.settings.buffer_cap)
        metrics.CATALOG_INTENTS.set(len(self.catalog.active()))
