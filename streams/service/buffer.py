"""The durable buffer of unassigned utterances, and the reader of compacted topics.

Why a compacted topic and not a faust Table: writing a table inside ``take()``
raises (faust-streaming#497) and changelog recovery can stall (#432). Instead every
ingest worker writes each unassigned utterance to ``dialin-buffer`` (key =
utterance_id, value = :class:`~.records.BufferEntry` with its embedding) and waits for
the broker's ack before its input offset is committed; the discovery leader
assigns or ages out entries by writing tombstones (value ``None``). Whoever leads
reads the topic back from the beginning with its own non-group aiokafka consumer
(:class:`TopicFollower`), so the buffer survives SIGKILL and rebalances: it is in
Kafka, not in any worker's memory. The catalog topic (``dialin-catalog``) is read
the same way by every worker.

The reader is caught up when, on every partition, it has passed the end offset read at
start AND it has seen that partition's present: a poll that brought nothing for it, or a
record written after the reader started. The end offset alone is not enough: the embedded
tansu broker reports a high watermark that can under-count (see :mod:`.broker`). An
empty poll of the whole topic is not required: under steady traffic every poll brings
something, and a leader elected during traffic waited for a pause that never came, so it
never ran discovery (measured: a replay at 100/s reached the leader's buffer only
after it ended).

Library: aiokafka.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable

import numpy as np

from .kafka_config import security_kwargs
from .records import BufferEntry
from ..settings import Settings

log = logging.getLogger(__name__)

#: Records a follower applies before it lets the event loop run other tasks. A discovery
#: run's output comes back to every follower in batches of up to 2,000 records (a catalog
#: record with its exemplars is ~130 KB of JSON); applied in one go they held the loop,
#: and the ingest agent with it, for a tenth of a second or more (issue 17).
APPLY_SLICE = 100

Apply = Callable[[bytes | None, bytes | None], None]
AfterBatch = Callable[[], Awaitable[None]]


def shows_present(records: list | None, started_ms: int) -> bool:
    """Whether one poll's records of a partition (aiokafka or kafka-python records) show
    that partition's present to a reader that started at ``started_ms``: it brought
    nothing, or its newest record was written after the start."""
    return not records or records[-1].timestamp >= started_ms


class TopicFollower:
    """Reads one topic from the beginning, then follows it, calling ``apply(key, value)``.

    No consumer group: every follower sees every partition and commits nothing, which
    is what a compacted "table as a topic" needs. ``caught_up`` is set once the
    history present at start has been applied. ``after_batch`` (optional) is awaited
    after each batch applied once caught up (not during the replay of the history,
    where an entry may still meet its tombstone further on).
    """

    def __init__(self, settings: Settings, topic: str, apply: Apply, idle_ms: int = 300,
                 after_batch: AfterBatch | None = None, wait_seconds: float = 10.0) -> None:
        self.settings = settings
        self.topic = topic
        self.apply = apply
        self.idle_ms = idle_ms
        self.after_batch = after_batch
        self.wait_seconds = wait_seconds
        self.caught_up = asyncio.Event()
        self._consumer = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap, group_id=None,
            enable_auto_commit=False, auto_offset_reset="earliest",
            **security_kwargs(self.settings, "aiokafka"))
        await self._consumer.start()
        # the topic may be created a moment after the worker starts
        ids = await self._partitions(until=time.monotonic() + self.wait_seconds, every=0.2)
        tps = await self._assign(ids)
        self._task = asyncio.create_task(self._run(tps), name=f"follow-{self.topic}")

    async def _partitions(self, until: float | None, every: float) -> list[int]:
        """The topic's partitions, from the cluster's metadata (asked for all topics, which
        creates none), polled every ``every`` seconds while the topic does not exist, until
        the ``until`` of ``time.monotonic`` (None: until it does); empty if it never did."""
        while True:
            parts = await self._consumer._client.fetch_all_metadata()  # noqa: SLF001
            ids = sorted(parts.partitions_for_topic(self.topic) or [])
            if ids or (until is not None and time.monotonic() >= until):
                return ids
            await asyncio.sleep(every)

    async def _assign(self, ids: list[int]) -> list:
        """Read partitions ``ids`` of the topic from the start; their TopicPartitions."""
        from aiokafka import TopicPartition

        tps = [TopicPartition(self.topic, p) for p in ids]
        if tps:
            self._consumer.assign(tps)
            await self._consumer.seek_to_beginning(*tps)
        return tps

    async def _await_topic(self) -> list:
        """No topic yet (this reader started before whoever creates it): nothing to replay,
        so caught up; poll until it exists, then read all of its partitions from the start.
        Assigning a partition of a missing topic would make a broker that creates topics
        on demand create it with its own defaults (partitions, no compaction) before the
        worker creates it as it should be."""
        log.warning("topic %s does not exist yet; following it once it does", self.topic)
        self.caught_up.set()
        return await self._assign(await self._partitions(until=None, every=1.0))

    async def _run(self, tps) -> None:
        consumer = self._consumer
        if not tps:
            tps = await self._await_topic()
        started_ms = int(time.time() * 1000)
        ends = await consumer.end_offsets(tps)
        history = set(tps)  # partitions whose records from before the start are not all applied
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=self.idle_ms, max_records=2000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep following through broker hiccups
                log.warning("reading %s failed: %s", self.topic, exc)
                await asyncio.sleep(1.0)
                continue
            applied = 0
            for records in batches.values():
                for rec in records:
                    try:
                        self.apply(rec.key, rec.value)
                    except Exception as exc:  # noqa: BLE001 - a bad record must not stop the reader
                        log.warning("skipping a bad record in %s at offset %s: %s",
                                    self.topic, rec.offset, exc)
                    applied += 1
                    if applied % APPLY_SLICE == 0:
                        await asyncio.sleep(0)  # the ingest agent's turn (see APPLY_SLICE)
            if batches and self.after_batch is not None and self.caught_up.is_set():
                try:
                    await self.after_batch()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the hook must not stop the reader
                    log.warning("after reading %s: %s: %s", self.topic, type(exc).__name__, exc)
            if history:
                for tp in list(history):
                    if shows_present(batches.get(tp), started_ms) and \
                            await consumer.position(tp) >= ends[tp]:
                        history.discard(tp)
                if not history:
                    self.caught_up.set()

    async def sync(self, timeout: float = 10.0) -> None:
        """Wait until everything written before this call has been applied.

        Records the end offsets now and waits until the reader is past them and idle.
        """
        if self._consumer is None:
            return
        await asyncio.wait_for(self.caught_up.wait(), timeout)
        tps = list(self._consumer.assignment())
        ends = await self._consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(await self._consumer.position(tp) >= ends[tp] for tp in tps):
                await asyncio.sleep(self.idle_ms / 1000 * 1.5)  # let one more poll land
                return
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


class BufferStore:
    """The leader's view of ``dialin-buffer``: utterance_id -> entry, plus its vector.

    Filled by a :class:`TopicFollower`; the discovery run takes a :meth:`snapshot`
    and removes what it assigned with :meth:`discard` right after the tombstones
    are acknowledged.
    """

    def __init__(self, model: type[BufferEntry] = BufferEntry) -> None:
        self.model = model
        self.entries: dict[str, BufferEntry] = {}
        self.vectors: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        uid = key.decode("utf-8") if key else None
        if value is None:
            if uid is not None:
                self.discard([uid])
            return
        entry = self.model.model_validate(json.loads(value))
        self.entries[entry.utterance_id] = entry
        self.vectors[entry.utterance_id] = entry.vector()

    def discard(self, uids) -> None:
        for uid in uids:
            self.entries.pop(uid, None)
            self.vectors.pop(uid, None)

    def oldest_age(self, now: float | None = None) -> float:
        if not self.entries:
            return 0.0
        now = time.time() if now is None else now
        return max(0.0, now - min(e.accepted_at for e in self.entries.values()))

    def oldest_first(self) -> list[BufferEntry]:
        """The entries, oldest first (ties by utterance_id)."""
        return sorted(self.entries.values(), key=lambda e: (e.accepted_at, e.utterance_id))

    def snapshot(self) -> tuple[list[BufferEntry], np.ndarray]:
        """Entries (oldest first) and their embeddings stacked as one float32 array."""
        items = self.oldest_first()
        if not items:
            return [], np.zeros((0, 0), np.float32)
        X = np.vstack([self.vectors[e.utterance_id] for e in items]).astype(np.float32)
        return items, X
