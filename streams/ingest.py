"""The ingest agent: validate, embed, tag the role, match, then assign or buffer.

One micro-batch (``stream.take_events(batch_size, within=batch_seconds)``) at a time:
invalid payloads go to the DLQ with the reason and the raw bytes; the valid ones are
embedded in one call and matched against the catalog in a worker thread (never on
the event loop: robinhood/faust#404); at or above ``match_threshold`` an assignment
is published (key = utterance_id), below it a buffer entry (key = utterance_id, with
the embedding). ``take_events`` acks the batch's input offsets only after the body
returns, and the body returns only after every output is acknowledged: at-least-once,
with idempotent keyed outputs, and a per-worker window of recent utterance_ids so a
redelivered event is counted as ``duplicate`` rather than processed twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dialin.models import Embedder, IntentCatalog

from . import metrics
from .app import Publisher
from .records import Assignment, BufferEntry, DeadLetter, Rejection, Utterance, dumps, validate_event
from .settings import Settings

log = logging.getLogger(__name__)


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

    def _route(self, valid, X, roles, ids, scores, counts) -> list:
        """Assignment at or above the threshold, buffer entry below it."""
        s = self.settings
        out: list[tuple[str, str | bytes | None, bytes | None]] = []
        now = time.time()
        for u, x, role, iid, score in zip(valid, X, roles, ids, scores):
            intent = self.catalog.get(iid) if iid is not None else None
            if intent is not None and score >= s.match_threshold:
                a = Assignment(utterance_id=u.uid, call_id=u.call_id, intent_id=intent.intent_id,
                               label=intent.label, role=role, score=round(float(score), 6))
                out.append((s.topic_assignments, u.uid, dumps(a)))
                counts["assigned"] += 1
            else:
                e = BufferEntry(utterance_id=u.uid, call_id=u.call_id, text=u.text, role=role,
                                turn=u.turn, lang=u.lang,
                                ts=u.ts.isoformat() if u.ts else None,
                                embedding=BufferEntry.pack(x), accepted_at=now)
                out.append((s.topic_buffer, u.uid, dumps(e)))
                counts["buffered"] += 1
        return out

    async def process(self, batch: Sequence[Inbound]) -> dict[str, int]:
        """Process one micro-batch; return the count per outcome."""
        s = self.settings
        out: list[tuple[str, str | bytes | None, bytes | None]] = []
        counts = {"assigned": 0, "buffered": 0, "invalid": 0, "duplicate": 0}
        valid: list[Utterance] = []
        for item in batch:
            result = validate_event(item.value, item.position)
            if isinstance(result, Rejection):
                dl = DeadLetter.of(result.reason, item.value,
                                   key=item.key.decode("utf-8", "replace") if item.key else None,
                                   source_topic=item.topic, partition=item.partition,
                                   offset=item.offset)
                out.append((s.topic_dlq, item.key, dumps(dl)))
                counts["invalid"] += 1
            elif self.recent.seen(result.uid):
                counts["duplicate"] += 1
            else:
                valid.append(result)
        if valid:
            texts = [u.text for u in valid]
            roles: list[str | None] = [u.role for u in valid]
            try:
                X, roles, ids, scores = await asyncio.to_thread(self._embed_and_match, texts, roles)
            except Exception as exc:  # noqa: BLE001 - raising would ack the batch unprocessed
                log.exception("embedding a batch failed; dead-lettering it")
                reason = f"processing failed: {type(exc).__name__}"
                for u in valid:
                    dl = DeadLetter.of(reason, u.model_dump_json().encode(), key=u.call_id,
                                       utterance_id=u.uid)
                    out.append((s.topic_dlq, u.call_id, dumps(dl)))
                counts["invalid"] += len(valid)
            else:
                out += self._route(valid, X, roles, ids, scores, counts)
        await self.publisher.send_all(out)
        for outcome, n in counts.items():
            if n:
                metrics.EVENTS.labels(outcome).inc(n)
        return counts


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
            await ingestor.process(batch)

    return ingest
