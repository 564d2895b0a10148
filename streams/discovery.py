"""The discovery run: the leader turns the buffer into intents.

Each tick of the leader-only timer (``@app.timer(interval, on_leader=True)``):

1. **age-out**: entries older than ``buffer_max_age_seconds``, and the oldest beyond
   ``buffer_cap``, go to the DLQ with reason ``aged_out`` and are tombstoned; counted
   in ``dialin_buffer_aged_out{reason}`` (never silent). The cap is also enforced
   between ticks: the buffer reader calls :meth:`Discovery.after_read` after every
   batch it applies, which exports the buffer's real size and trims it at once, so a
   fit that holds the tick for minutes (it runs in a thread) does not let it grow;
2. **re-match**: buffered entries that now match a catalog intent are assigned (this
   also finishes a run that died between publishing intents and tombstoning);
3. **trigger**: when the buffer holds >= ``discovery_min_utterances`` with enough new
   entries since the last run, or its oldest entry is older than
   ``discovery_max_age_seconds``, the engine's estimator is fitted per role in a
   worker thread on the buffered embeddings;
4. **publish** (examples PII-redacted first, see :func:`~dialin.streams.factory.build_redactor`),
   only clusters the judge certified Good, in an order that makes a crash at any
   point safe to repeat: catalog records (``dialin-catalog``, durable, with centroids)
   -> intent updates -> member assignments -> buffer tombstones. Each step waits for
   the broker's acks. A restarted leader republishes the catalog's current updates
   (same key, same version: idempotent), so a ``created`` is never lost and never sent
   for a second id. Members aged out while the fit ran are not assigned (they are in
   the DLQ already).

Utterances no Good verdict covers are not an intent: they stay buffered (for a later
run, or until they age out), counted in ``dialin_discovery_uncertified_utterances``
and logged; a run that fitted utterances but certified no cluster at all is counted
as ``dialin_discovery_runs{result="certified_nothing"}`` (a strict or misconfigured
judge; alert ``DialinDiscoveryCertifiesNothing``).

Steps 1-2, the cap trim and the publishing of step 4 hold one lock, so an entry is
never both aged out and assigned; the fit itself runs outside it.

A failed fit leaves the buffer untouched and is counted (``dialin_discovery_runs
{result="failed"}``); the next trigger retries. A failed run does not count as a run
for the trigger (no new traffic is needed to try again), but the retry backs off
(``discovery_interval_seconds`` doubled per consecutive failure, at most
:data:`MAX_RETRY_SECONDS`) so a dead LLM is not asked again every tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from dialin.models import CatalogIntent, IntentCatalog

from . import metrics
from .app import Publisher
from .buffer import BufferStore
from .records import Assignment, BufferEntry, DeadLetter, IntentUpdate, JudgeInfo, dumps, utc_now
from .settings import Settings

log = logging.getLogger(__name__)

Record = tuple[str, str | bytes | None, bytes | None]

#: Longest pause between retries of a failing discovery run.
MAX_RETRY_SECONDS = 300.0


class DiscoveryFailedWarning(RuntimeWarning):
    """A discovery run raised; the buffer was left as it was."""


def update_of(intent: CatalogIntent) -> IntentUpdate:
    """The published form of a catalog entry (no centroid)."""
    return IntentUpdate(
        intent_id=intent.intent_id, label=intent.label, role=intent.role, version=intent.version,
        status=intent.status, merged_into=intent.merged_into, size=intent.size,
        examples=list(intent.examples)[:10], created_at=intent.created_at,
        updated_at=intent.updated_at,
        judge=JudgeInfo(backend=intent.judge_backend, confidence=intent.judge_confidence))


class Discovery:
    """The leader's discovery loop body; ``make_estimator()`` returns a fresh estimator."""

    def __init__(self, settings: Settings, catalog: IntentCatalog, buffer: BufferStore,
                 publisher: Publisher, make_estimator: Callable[[], Any]) -> None:
        self.settings = settings
        self.catalog = catalog
        self.buffer = buffer
        self.publisher = publisher
        self.make_estimator = make_estimator
        self.last_run_at = 0.0
        self.runs = 0
        self.failures = 0  # consecutive failed runs
        self.retry_at = 0.0
        self.peak = 0  # the largest buffer size this worker has read as leader
        self._judged = self._good = 0
        self._fitted = self._uncertified = 0
        self._lock = asyncio.Lock()  # buffer removals: age-out, re-match, publishing

    # --- steps -------------------------------------------------------------------
    def _catalog_record(self, intent: CatalogIntent) -> Record:
        import json

        rec = intent.to_record(self.catalog.embedder)
        return (self.settings.topic_catalog, intent.intent_id,
                json.dumps(rec, ensure_ascii=False).encode("utf-8"))

    def _update_record(self, intent: CatalogIntent) -> Record:
        return (self.settings.topic_updates, intent.intent_id, dumps(update_of(intent)))

    async def republish(self) -> int:
        """Publish every catalog entry's current update again (idempotent; after a restart)."""
        records = [self._update_record(i) for i in self.catalog.intents_.values()]
        await self.publisher.send_all(records)
        return len(records)

    async def after_read(self) -> None:
        """The buffer reader's hook after each batch it applied (once caught up).

        Exports the buffer's real size, and its high-water mark, before anything trims
        it; then, over the cap, ages out the oldest at once instead of at the next tick,
        which a running fit can delay for minutes. It waits for the lock only while
        a tick ages out, re-matches or publishes, never for a fit.
        """
        self._export_size()
        if len(self.buffer) > self.settings.buffer_cap:
            async with self._lock:
                await self.age_out(time.time())

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

    def _assignments(self, entries: list[BufferEntry], X: np.ndarray, intent: CatalogIntent,
                     rows) -> list[Record]:
        out = []
        for r in rows:
            e = entries[r]
            a = Assignment(utterance_id=e.utterance_id, call_id=e.call_id,
                           intent_id=intent.intent_id, label=intent.label, role=e.role,
                           score=round(float(X[r] @ intent.centroid), 6))
            out.append((self.settings.topic_assignments, e.utterance_id, dumps(a)))
        return out

    async def rematch(self) -> int:
        """Assign buffered entries that match a catalog intent now."""
        entries, X = self.buffer.snapshot()
        if not entries or not len(self.catalog):
            return 0
        ids, scores = await asyncio.to_thread(self.catalog.match, X, [e.role for e in entries])
        out: list[Record] = []
        done = []
        for r, (iid, score) in enumerate(zip(ids, scores)):
            if iid is not None and score >= self.settings.match_threshold:
                out += self._assignments(entries, X, self.catalog.get(iid), [r])
                done.append(entries[r].utterance_id)
        await self._finish(out, done)
        return len(done)

    async def _finish(self, assignments: list[Record], done: list[str]) -> None:
        if not done:
            return
        await self.publisher.send_all(assignments)
        await self.publisher.send_all([(self.settings.topic_buffer, uid, None) for uid in done])
        self.buffer.discard(done)
        self._export_size()

    def should_run(self, now: float) -> bool:
        s = self.settings
        n = len(self.buffer)
        if n == 0 or now < self.retry_at:
            return False
        fresh = sum(1 for e in self.buffer.entries.values() if e.accepted_at >= self.last_run_at)
        by_size = n >= s.discovery_min_utterances and fresh >= max(1, s.discovery_min_utterances // 4)
        by_age = (self.buffer.oldest_age(now) >= s.discovery_max_age_seconds
                  and now - self.last_run_at >= s.discovery_max_age_seconds)
        return by_size or by_age

    def _fit(self, entries: list[BufferEntry], X: np.ndarray):
        """Thread body: one fit per role; returns [(rows, intent), ...] of Good clusters.

        An intent without a Good verdict is never returned, whatever the estimator
        made of it (labels -1, a Bad or an invalid verdict, or none at all).
        """
        found = []
        self._judged = self._good = 0
        self._fitted = self._uncertified = 0
        roles = sorted({e.role or "" for e in entries})
        min_size = self.settings.discovery_min_cluster_size
        for role in roles:
            rows = np.array([i for i, e in enumerate(entries) if (e.role or "") == role])
            if len(rows) < max(2 * min_size, 4):
                continue
            est = self.make_estimator()
            est.fit(X[rows], texts=[entries[i].text for i in rows])
            self._fitted += len(rows)
            covered = 0
            for intent in getattr(est, "intents_", []):
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
                if len(members) >= min_size:
                    found.append((members, self._redacted(intent, entries, members)))
            self._uncertified += len(rows) - covered
            for phase, n in (getattr(est, "calls_by_phase_", None) or {}).items():
                metrics.JUDGE_CALLS.labels(str(phase)).inc(n)
        return found

    def _redacted(self, intent, entries: list[BufferEntry], members) -> Any:
        """``intent`` with the examples it will be published with, PII redacted (in the
        fit's thread: redaction is CPU work that must not hold the event loop)."""
        from .factory import build_redactor

        examples = list(intent.examples) or [entries[i].text for i in members[:10]]
        label = intent.label
        redactor = build_redactor(self.settings)
        if redactor is not None:
            examples = redactor.redact_many(examples)
            label = redactor.redact_label(label)
        return replace(intent, label=label, examples=tuple(examples))

    async def discover(self, entries: list[BufferEntry], X: np.ndarray) -> dict[str, int]:
        """Fit, upsert into the catalog, publish; returns counts by status, assigned and
        uncertified (fitted utterances no Good verdict covers, left in the buffer)."""
        found = await asyncio.to_thread(self._fit, entries, X)
        async with self._lock:
            return await self._publish(found, entries, X)

    async def _publish(self, found: list, entries: list[BufferEntry], X: np.ndarray) -> dict[str, int]:
        now = utc_now()
        catalog_recs: list[Record] = []
        updates: list[Record] = []
        assignments: list[Record] = []
        done: list[str] = []
        counts = {"created": 0, "updated": 0, "merged": 0, "assigned": 0,
                  "uncertified": self._uncertified}
        min_size = max(1, self.settings.discovery_min_cluster_size)
        for members, intent in found:
            # Entries the cap or age limit removed while the fit ran are in the DLQ: not
            # assigned as well. A cluster left too small waits for a later run.
            members = np.array([i for i in members if entries[i].utterance_id in self.buffer.entries],
                               dtype=int)
            if len(members) < min_size:
                continue
            centroid = X[members].mean(axis=0)
            verdict = intent.verdict
            changed = self.catalog.upsert_from_cluster(
                centroid, intent.label, entries[members[0]].role, len(members),
                examples=list(intent.examples) or [entries[i].text for i in members[:10]],
                judge_backend=verdict.backend if verdict else "",
                judge_confidence=verdict.confidence if verdict else None, now=now)
            for c in changed:
                catalog_recs.append(self._catalog_record(c))
                updates.append(self._update_record(c))
                counts[c.status] += 1
            assignments += self._assignments(entries, X, changed[0], members)
            done += [entries[i].utterance_id for i in members]
        await self.publisher.send_all(catalog_recs)
        await self.publisher.send_all(updates)
        for status in ("created", "updated", "merged"):
            if counts[status]:
                metrics.INTENTS.labels(status).inc(counts[status])
        await self._finish(assignments, done)
        counts["assigned"] = len(done)
        if self._uncertified:
            metrics.DISCOVERY_UNCERTIFIED.inc(self._uncertified)
            log.log(logging.WARNING if self._good == 0 else logging.INFO,
                    "discovery: %d of %d fitted utterances are covered by no Good verdict and "
                    "stay in the buffer%s", self._uncertified, self._fitted,
                    " (the judge certified no cluster)" if self._good == 0 else "")
        return counts

    async def tick(self, now: float | None = None) -> dict[str, int] | None:
        """One timer tick; returns the run's counts, or None when nothing was run."""
        now = time.time() if now is None else now
        self._export_size()  # before the age-out: what a new leader read back, for one
        async with self._lock:
            await self.age_out(now)
            await self.rematch()
        self._gauges(now)
        if not self.should_run(now):
            return None
        entries, X = self.buffer.snapshot()
        started = time.perf_counter()
        previous_run_at, self.last_run_at = self.last_run_at, now
        try:
            counts = await self.discover(entries, X)
        except Exception as exc:  # noqa: BLE001 - a failed run must leave the buffer alone
            self.last_run_at = previous_run_at  # the same trigger still holds at the retry
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
        self.failures, self.retry_at = 0, 0.0
        certified_nothing = self._fitted > 0 and self._good == 0
        metrics.DISCOVERY_RUNS.labels("certified_nothing" if certified_nothing else "ok").inc()
        if self._judged:
            metrics.DISCOVERY_GOODNESS.set(self._good / self._judged)
        self._gauges(time.time())
        return counts

    def _export_size(self) -> None:
        n = len(self.buffer)
        self.peak = max(self.peak, n)
        metrics.BUFFER_UTTERANCES.set(n)
        metrics.BUFFER_PEAK.set(self.peak)

    def _gauges(self, now: float) -> None:
        self._export_size()
        metrics.BUFFER_OLDEST_AGE.set(self.buffer.oldest_age(now))
        metrics.BUFFER_CAP.set(self.settings.buffer_cap)
        metrics.CATALOG_INTENTS.set(len(self.catalog.active()))
