"""The ingest agent: validate, embed, tag the role, match, then assign or buffer.

One micro-batch (``stream.take_events(batch_size, within=batch_seconds)``) at a time:
invalid payloads go to the DLQ with the reason and the raw bytes; the valid ones are
embedded in one call and matched against the catalog in a worker thread (never on
the event loop: robinhood/faust#404). An utterance that belongs to a known intent by
the open-set rule (:meth:`dialin.models.IntentCatalog.match`: a kNN vote over the
intent's exemplars and the intent's own threshold) gets an assignment (key =
utterance_id, ``version`` 1, cause ``matched``) and is remembered for consolidation
(``dialin-memory``); any other is possible novelty and goes to the buffer (key =
utterance_id, with the embedding). ``take_events`` acks the batch's input offsets when the body returns
or raises (in a ``finally``), so the body returns only after every output is
acknowledged, and a failure never escapes it: the batch is tried again, then
dead-lettered, and if even that fails the process exits before the ack. At-least-once,
with idempotent keyed outputs, and a per-worker window of recent utterance_ids so a
redelivered event is counted as ``duplicate`` rather than processed twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dialin.models import Embedder, IntentCatalog

from . import metrics
from .app import Publisher
from .records import (Assignment, BufferEntry, DeadLetter, MemoryEntry, Rejection, Utterance, dumps,
                      validate_event)
from ..settings import Settings

log = logging.getLogger(__name__)

#: Tries to decide and publish one batch before its valid events are dead-lettered.
PROCESS_ATTEMPTS = 2
#: Exit code of a worker that could not even dead-letter a batch (EX_SOFTWARE).
EXIT_UNACKED = 70


@dataclass(frozen=True)
class Inbound:
    """One raw inbound record and where it came from (for the DLQ)."""

    key: bytes | None
    value: bytes | None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None

    @property
    def position(self) -> tuple[str, int, int] | None:
        """(topic, partition, offset) when known: the default utterance_id comes from it."""
        if self.topic is None or self.partition is None or self.offset is None:
            return None
        return (self.topic, self.partition, self.offset)


class RecentIds:
    """A bounded window of recently processed utterance_ids (LRU)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def seen(self, uid: str) -> bool:
        """True when ``uid`` was already seen; remembers it either way."""
        if uid in self._ids:
            self._ids.move_to_end(uid)
            return True
        if self.size > 0:
            self._ids[uid] = None
            if len(self._ids) > self.size:
                self._ids.popitem(last=False)
        return False


class Ingestor:
    """The body of the ingest agent, independent of faust so tests can drive it."""

    def __init__(self, settings: Settings, embedder: Embedder, catalog: IntentCatalog,
                 publisher: Publisher) -> None:
        self.settings = settings
        self.embedder = embedder
        self.catalog = catalog
        self.publisher = publisher
        self.recent = RecentIds(settings.dedup_window)

    def _embed_and_match(self, texts: list[str], roles: list[str | None]):
        """Thread body: embedding, role inference and FAISS search together."""
        started = time.perf_counter()
        X = np.asarray(self.embedder.encode(texts), dtype=np.float32)
        metrics.EMBED_SECONDS.observe(time.perf_counter() - started)
        missing = [i for i, r in enumerate(roles) if r is None]
        if missing:
            inferred = self.catalog.infer_roles(X[missing])
            for i, role in zip(missing, inferred):
                roles[i] = role
        ids, scores = self.catalog.match(X, roles)
        return X, roles, ids, scores

    def _route(self, valid: list[tuple[Utterance, Inbound]], X, roles, ids, scores,
               counts) -> list:
        """Assignment and memory entry for a match, buffer entry for the rest (all
        acknowledged before the batch's input is)."""
        s = self.settings
        out: list[tuple[str, str | bytes | None, bytes | None]] = []
        remembered: list[tuple[str, str | bytes | None, bytes | None]] = []
        now = time.time()
        for (u, item), x, role, iid, score in zip(valid, X, roles, ids, scores):
            intent = self.catalog.get(iid) if iid is not None else None
            e = BufferEntry(utterance_id=u.uid, call_id=u.call_id, text=u.text, role=role,
                            turn=u.turn, lang=u.lang, ts=u.ts.isoformat() if u.ts else None,
                            embedding=BufferEntry.pack(x), accepted_at=now,
                            source_partition=item.partition, source_offset=item.offset)
            if intent is not None:
                a = Assignment(utterance_id=u.uid, call_id=u.call_id, intent_id=intent.intent_id,
                               label=intent.label, role=role, score=round(float(score), 6),
                               version=1, cause="matched",
                               intent_state=intent.state)  # type: ignore[arg-type]
                out.append((s.topic_assignments, u.uid, dumps(a)))
                m = MemoryEntry(**e.model_dump(), intent_id=intent.intent_id, version=1)
                remembered.append((s.topic_memory, u.uid, dumps(m)))
                counts["assigned"] += 1
            else:
                out.append((s.topic_buffer, u.uid, dumps(e)))
                counts["buffered"] += 1
        return out + remembered

    async def process(self, batch: Sequence[Inbound]) -> dict[str, int]:
        """Process one micro-batch; return the count per outcome.

        faust acks a ``take_events`` batch in a ``finally``, so an exception escaping
        here would commit offsets of events that produced nothing. Deciding and
        publishing are therefore tried :data:`PROCESS_ATTEMPTS` times (every output is
        keyed, so a second try overwrites what the first one got out), then every
        valid event of the batch is dead-lettered with the reason, its raw payload and
        its source position: redelivered by the retry, or dead-lettered, never lost.
        """
        s = self.settings
        rejected: list[tuple[str, str | bytes | None, bytes | None]] = []
        counts = {"assigned": 0, "buffered": 0, "invalid": 0, "duplicate": 0}
        valid: list[tuple[Utterance, Inbound]] = []
        for item in batch:
            result = validate_event(item.value, item.position)
            if isinstance(result, Rejection):
                rejected.append((s.topic_dlq, item.key, dumps(self._letter(result.reason, item))))
                counts["invalid"] += 1
            elif self.recent.seen(result.uid):
                counts["duplicate"] += 1
            else:
                valid.append((result, item))
        for attempt in range(1, PROCESS_ATTEMPTS + 1):
            routed = {"assigned": 0, "buffered": 0}
            try:
                await self.publisher.send_all(rejected + await self._decide(valid, routed))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - raising would ack the batch unprocessed
                log.exception("processing a batch failed (attempt %d of %d)", attempt,
                              PROCESS_ATTEMPTS)
                failure = exc
            else:
                counts.update(routed)
                break
        else:
            reason = f"processing failed: {type(failure).__name__}"
            await self.publisher.send_all(rejected + [
                (s.topic_dlq, u.call_id, dumps(self._letter(reason, item, utterance_id=u.uid)))
                for u, item in valid])
            counts["invalid"] += len(valid)
        for outcome, n in counts.items():
            if n:
                metrics.EVENTS.labels(outcome).inc(n)
        return counts

    async def _decide(self, valid: list[tuple[Utterance, Inbound]], counts) -> list:
        """Embed and match in a worker thread, then route: the batch's output records."""
        if not valid:
            return []
        utterances = [u for u, _ in valid]
        roles: list[str | None] = [u.role for u in utterances]
        X, roles, ids, scores = await asyncio.to_thread(
            self._embed_and_match, [u.text for u in utterances], roles)
        return self._route(valid, X, roles, ids, scores, counts)

    @staticmethod
    def _letter(reason: str, item: Inbound, **extra) -> DeadLetter:
        """The dead letter of one inbound record: raw payload, key and source position."""
        return DeadLetter.of(reason, item.value,
                             key=item.key.decode("utf-8", "replace") if item.key else None,
                             source_topic=item.topic, partition=item.partition,
                             offset=item.offset, **extra)


def register_ingest(app, settings: Settings, ingestor: Ingestor,
                    ready: asyncio.Event | None = None):
    """Add the ingest agent to ``app``; return it (for ``agent.test_context()``).

    With ``ready`` given, the first batch waits for it (the catalog read back), so
    nothing is buffered that a known intent would have matched.
    """
    topic = app.topic(settings.topic_utterances, key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw")

    @app.agent(topic, name="dialin-ingest")
    async def ingest(stream):
        if ready is not None:
            await ready.wait()
        async for events in stream.take_events(settings.batch_size, within=settings.batch_seconds):
            batch = [Inbound(key=e.key, value=e.value, topic=e.message.topic,
                             partition=e.message.partition, offset=e.message.offset)
                     for e in events]
            try:
                await ingestor.process(batch)
            except asyncio.CancelledError:
                raise
            except BaseException:
                # Neither processed nor dead-lettered: returning or raising would let
                # take_events ack the batch. Exit at once, as a SIGKILL would, so the
                # offsets stay uncommitted and the batch is redelivered after restart.
                log.critical("a batch could be neither processed nor dead-lettered; exiting "
                             "without acking it (it is redelivered after restart)", exc_info=True)
                logging.shutdown()
                os._exit(EXIT_UNACKED)

    return ingest
