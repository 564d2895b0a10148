"""The ingest agent: validate, embed, tag the role, match, then assign or buffer.

Continuous batching (issue 17): the agent takes whatever has arrived as soon as the
embedder is free (``stream.noack_take(batch_size, within=batch_seconds)``, where
``batch_seconds`` is only the short linger after the embedder frees up), so at low load a
batch is one or a few utterances that leave at once, and under load the batch grows by
itself, up to ``batch_size``, with what arrived while the previous one was embedded.
One batch is embedded at a time by the encoder, in processes of its own (all cores by
default, ``DIALIN_EMBED_THREADS``; :mod:`.encoder` says why processes); while the next
batch is embedded, the last one is matched (FAISS) and its output records serialised on a
second thread, then published and acknowledged from the event loop. No encoding, search
or serialising on the loop (robinhood/faust#404).

Invalid payloads go to the DLQ with the reason and the raw bytes. An utterance that
belongs to a known intent by the open-set rule (:meth:`dialin.models.IntentCatalog.match`:
a kNN vote over the intent's exemplars and the intent's own threshold) gets an
assignment (key = utterance_id, ``version`` 1, cause ``matched``) and is remembered for
consolidation (``dialin-memory``); any other is possible novelty and goes to the buffer
(key = utterance_id, with the embedding).

Why delivery stays safe with batches in flight: ``noack_take`` acks nothing itself
(faust's ``take_events`` acks in a ``finally`` when the body returns, which would commit
a batch whose outputs are still being published). Each batch's events are acked by the
agent only after :meth:`Ingestor.process` returned, i.e. after every output record is
acknowledged by the broker, and in the order the batches were taken (each batch waits
for the one before it), so the committed offset never passes an unpublished event. A
failure never escapes ``process``: the batch is tried again, then dead-lettered, and if
even that fails the process exits before the ack. A stop or a rebalance cancels the
batches in flight unacked: they are redelivered (at-least-once, with idempotent keyed
outputs, and a per-worker window of recent utterance_ids so a redelivered event is
counted as ``duplicate`` rather than processed twice).

Library: faust-streaming (``Stream.noack_take`` and ``Stream.ack``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from dialin.models import Embedder, IntentCatalog

from . import metrics
from .app import Publisher
from .encoder import Encoder, ThreadEncoder
from .records import (Assignment, BufferEntry, DeadLetter, MemoryEntry, Rejection, Utterance, dumps,
                      validate_event)
from ..settings import Settings

log = logging.getLogger(__name__)

#: Tries to decide and publish one batch before its valid events are dead-lettered.
PROCESS_ATTEMPTS = 2
#: Exit code of a worker that could not even dead-letter a batch (EX_SOFTWARE).
EXIT_UNACKED = 70
#: Embedded batches that may wait for matching and publishing before the agent stops
#: taking more: bounds the work in flight when the broker is slower than the encoder.
MAX_WAITING_BATCHES = 2
#: On a stop, how long the batches in flight may take to finish and be acked.
DRAIN_SECONDS = 10.0


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


def _one_openmp_thread() -> None:
    """Matcher thread initializer: FAISS searches on this thread alone, the cores are the encoder's."""
    threadpool_limits(limits=1, user_api="openmp")


class Ingestor:
    """The body of the ingest agent, independent of faust so tests can drive it.

    ``encoder`` embeds the batches (:mod:`.encoder`; the worker's runs in processes of its
    own); without one, ``embedder`` encodes on a thread of this process.
    """

    def __init__(self, settings: Settings, embedder: Embedder, catalog: IntentCatalog,
                 publisher: Publisher, encoder: Encoder | None = None) -> None:
        self.settings = settings
        self.embedder = embedder
        self.encoder = encoder if encoder is not None else ThreadEncoder(embedder)
        self.catalog = catalog
        self.publisher = publisher
        self.recent = RecentIds(settings.dedup_window)
        self._matcher = ThreadPoolExecutor(1, thread_name_prefix="dialin-match",
                                           initializer=_one_openmp_thread)
        self._lanes: dict[asyncio.AbstractEventLoop, tuple[asyncio.Lock, asyncio.Lock]] = {}

    def _lane(self) -> tuple[asyncio.Lock, asyncio.Lock]:
        """(encoder lock, finishing lock) of the running loop: one batch in the encoder,
        one matching and publishing, each taken in arrival order (asyncio locks are FIFO)."""
        loop = asyncio.get_running_loop()
        if loop not in self._lanes:
            self._lanes = {loop: (asyncio.Lock(), asyncio.Lock())}
        return self._lanes[loop]

    async def warm_up(self) -> None:
        """Load the model where it encodes (and set its threads) before the first batch."""
        await self.encoder.warm_up()

    def _match_and_route(self, valid: list[tuple[Utterance, Inbound]], X: np.ndarray,
                         counts) -> list:
        """Matcher thread: role inference, the FAISS search, and the output records."""
        roles: list[str | None] = [u.role for u, _ in valid]
        missing = [i for i, r in enumerate(roles) if r is None]
        if missing:
            inferred = self.catalog.infer_roles(X[missing])
            for i, role in zip(missing, inferred):
                roles[i] = role
        ids, scores = self.catalog.match(X, roles)
        return self._route(valid, X, roles, ids, scores, counts)

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
                m = MemoryEntry(**e.model_dump(exclude={"version"}), intent_id=intent.intent_id, version=1)
                remembered.append((s.topic_memory, u.uid, dumps(m)))
                counts["assigned"] += 1
            else:
                out.append((s.topic_buffer, u.uid, dumps(e)))
                counts["buffered"] += 1
        return out + remembered

    async def process(self, batch: Sequence[Inbound], *,
                      on_embedded: Callable[[], None] | None = None) -> dict[str, int]:
        """Process one batch; return the count per outcome.

        The batch is embedded as soon as the encoder is free; ``on_embedded`` is called
        when it leaves the encoder (the agent then takes the next batch), and matching,
        routing and publishing follow, one batch at a time in arrival order, while the
        next batch is embedded.

        The agent acks a batch's input when this returns, so an exception escaping
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
        encoder, finishing = self._lane()
        try:
            embedded = await self._embed(valid, encoder)
        finally:
            if on_embedded is not None:
                on_embedded()
        async with finishing:
            for attempt in range(1, PROCESS_ATTEMPTS + 1):
                routed = {"assigned": 0, "buffered": 0}
                try:
                    if isinstance(embedded, Exception):
                        raise embedded
                    await self.publisher.send_all(rejected + await self._decide(valid, embedded, routed))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - raising would ack the batch unprocessed
                    log.error("processing a batch failed (attempt %d of %d)", attempt,
                              PROCESS_ATTEMPTS, exc_info=exc)
                    failure = exc
                    if isinstance(embedded, Exception):  # the next try embeds again
                        embedded = await self._embed(valid, encoder)
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

    async def _embed(self, valid: list[tuple[Utterance, Inbound]],
                     encoder: asyncio.Lock) -> np.ndarray | Exception | None:
        """The batch's embeddings from the encoder's thread (None when there is nothing to
        embed); a failure is returned, not raised, and counts as the batch's first try."""
        if not valid:
            return None
        async with encoder:
            try:
                return await self.encoder.encode([u.text for u, _ in valid])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried by process
                return exc

    async def _decide(self, valid: list[tuple[Utterance, Inbound]], X: np.ndarray | None,
                      counts) -> list:
        """The batch's output records, matched and serialised on the matcher's thread (off
        the event loop, which keeps consuming, publishing and heartbeating meanwhile)."""
        if not valid:
            return []
        return await asyncio.get_running_loop().run_in_executor(
            self._matcher, self._match_and_route, valid, X, counts)

    @staticmethod
    def _letter(reason: str, item: Inbound, **extra) -> DeadLetter:
        """The dead letter of one inbound record: raw payload, key and source position."""
        return DeadLetter.of(reason, item.value,
                             key=item.key.decode("utf-8", "replace") if item.key else None,
                             source_topic=item.topic, partition=item.partition,
                             offset=item.offset, **extra)


class _InFlight:
    """The agent's batches between the encoder and their ack, oldest first.

    Each batch is one task: :meth:`Ingestor.process`, then (after the batch before it is
    acked) the ack of its events. A task that cannot process nor dead-letter its batch
    exits the process without acking, as a SIGKILL would.
    """

    def __init__(self, ingestor: Ingestor, ack: Callable) -> None:
        self.ingestor = ingestor
        self.ack = ack
        self.tasks: deque[asyncio.Task] = deque()

    async def submit(self, events: Sequence) -> None:
        """Start one batch; return once it left the encoder and few enough wait behind it."""
        batch = [Inbound(key=e.key, value=e.value, topic=e.message.topic,
                         partition=e.message.partition, offset=e.message.offset)
                 for e in events]
        embedded = asyncio.Event()
        before = self.tasks[-1] if self.tasks else None
        task = asyncio.create_task(self._run(batch, events, before, embedded.set))
        self.tasks.append(task)
        waiter = asyncio.create_task(embedded.wait())
        try:
            await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        while self.tasks and self.tasks[0].done():
            self.tasks.popleft()
        while len(self.tasks) > MAX_WAITING_BATCHES:
            await asyncio.wait([self.tasks[0]])
            self.tasks.popleft()

    async def _run(self, batch: list[Inbound], events: Sequence, before: asyncio.Task | None,
                   on_embedded: Callable[[], None]) -> None:
        try:
            await self.ingestor.process(batch, on_embedded=on_embedded)
            if before is not None:
                await asyncio.shield(before)  # acks in the order the batches were taken
        except asyncio.CancelledError:
            raise
        except BaseException:
            # Neither processed nor dead-lettered: acking would commit events that produced
            # nothing. Exit at once, as a SIGKILL would, so the offsets stay uncommitted
            # and the batch is redelivered after restart.
            log.critical("a batch could be neither processed nor dead-lettered; exiting "
                         "without acking it (it is redelivered after restart)", exc_info=True)
            logging.shutdown()
            os._exit(EXIT_UNACKED)
        for event in events:
            await self.ack(event)

    async def drain(self) -> None:
        """On a stop: let the batches in flight finish (and be acked) for a while, then cancel."""
        tasks, self.tasks = list(self.tasks), deque()
        try:
            if tasks:
                await asyncio.wait(tasks, timeout=DRAIN_SECONDS)
        finally:
            for task in tasks:
                task.cancel()  # unacked: redelivered


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
        inflight = _InFlight(ingestor, stream.ack)
        try:
            async for events in stream.noack_take(settings.batch_size, within=settings.batch_seconds):
                await inflight.submit(events)
        finally:
            await inflight.drain()

    return ingest
