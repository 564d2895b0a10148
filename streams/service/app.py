"""The faust App from settings, the service's topics, and an acknowledged publisher.

Values travel as raw bytes on every topic (``value_serializer="raw"``): inbound
events are validated by :mod:`.records` rather than by a faust codec (a decode error
inside faust can kill the agent), and outbound events are serialised by pydantic.
The app keeps no tables and no web server of its own (health lives in
:mod:`.health`); faust's consumer group gives partitions to workers, nothing else.

Library: faust-streaming, aiokafka (topic creation with compaction).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from pathlib import Path

import faust

from .kafka_config import security_kwargs
from .transport import FetchWaitApp
from ..settings import Settings

log = logging.getLogger(__name__)


def broker_url(settings: Settings) -> str:
    """``kafka://h1:p1;kafka://h2:p2`` from ``DIALIN_KAFKA_BOOTSTRAP=h1:p1,h2:p2``."""
    hosts = [h.strip() for h in settings.kafka_bootstrap.split(",") if h.strip()]
    return ";".join(f"kafka://{h}" for h in hosts)


def build_faust_app(settings: Settings) -> faust.App:
    """A bare faust App for the worker (:class:`.worker.Worker` adds its agent and timers).

    ``broker_max_poll_records`` is bounded to a few batches and the poll interval is
    generous, so a slow micro-batch never triggers a rebalance; offsets are
    committed often because every output is idempotent (at-least-once by design,
    never ``exactly_once``: faust-streaming#517/#323). The consumer's fetch wait comes
    from ``DIALIN_FETCH_MAX_WAIT_MS`` (:mod:`.transport`: faust hard-codes 1.5 s).
    """
    Path(settings.data_dir, "faust").mkdir(parents=True, exist_ok=True)
    return FetchWaitApp(
        settings.app_id,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        broker=broker_url(settings),
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        web_enabled=False,
        autodiscover=False,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=max(4 * settings.batch_size, 100),
        broker_max_poll_interval=300.0,
        broker_session_timeout=settings.kafka_session_timeout_seconds,
        broker_heartbeat_interval=max(settings.kafka_session_timeout_seconds / 4, 0.5),
        broker_commit_every=max(settings.batch_size, 100),
        broker_commit_interval=1.0,
        producer_acks=-1,
        topic_partitions=settings.topic_partitions,
        topic_disable_leader=False,
        datadir=f"{settings.data_dir}/faust",
        **security_kwargs(settings, "faust"),
    )


def topic_specs(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """The service's topics: name -> (partitions, configs).

    Every keyed output is compacted, so a subscriber reading from the beginning gets the
    latest record per key: assignments by utterance_id (a redelivery's rewrite replaces
    the earlier one), updates by intent_id, the internal buffer, memory and catalog by their ids,
    the LLM spend of the current hour by app id (made only when an hourly LLM cap is set).
    Inbound utterances and dead letters are logs (each record is its own event).
    """
    compact = {"cleanup.policy": "compact"}
    n = settings.topic_partitions
    specs = {
        settings.topic_utterances: (n, {}),
        settings.topic_assignments: (n, compact),
        settings.topic_dlq: (1, {}),
        settings.topic_updates: (1, compact),
        settings.topic_buffer: (n, compact),
        settings.topic_catalog: (1, compact),
        settings.topic_memory: (n, compact),
        settings.topic_events: (1, {}),  # the history: append-only, never compacted
        settings.topic_decisions: (1, compact),  # one partition: decisions in order
        settings.topic_volume: (1, {}),
    }
    if settings.llm_max_calls_per_hour is not None or settings.llm_max_tokens_per_hour is not None:
        specs[settings.topic_llm_spend] = (1, compact)
    return specs


async def ensure_topics(settings: Settings) -> None:
    """Create the service's topics (:func:`topic_specs`) when missing."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    wanted = [NewTopic(name, partitions, 1, topic_configs=configs)
              for name, (partitions, configs) in topic_specs(settings).items()]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                                **security_kwargs(settings, "aiokafka"))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:  # another worker won the race
                pass
    finally:
        await admin.close()


#: Most records :meth:`Publisher.send_all` has in flight (one ingest batch's outputs fit).
SEND_CHUNK = 256


class Publisher:
    """Sends raw records through the app's producer and awaits the broker's acks.

    :meth:`send_all` returns only when every record is acknowledged, which is what
    lets the ingest agent ack its input afterwards (nothing accepted is lost). A
    failed send is retried (the records are keyed, so a retry is idempotent) until
    it succeeds or the worker stops: raising would ack the input batch unprocessed.
    """

    def __init__(self, app: faust.App, retry_seconds: float = 1.0) -> None:
        self.app = app
        self.retry_seconds = retry_seconds
        self._topics: dict[str, faust.TopicT] = {}

    def _topic(self, name: str) -> faust.TopicT:
        if name not in self._topics:
            self._topics[name] = self.app.topic(name, key_type=bytes, value_type=bytes,
                                                key_serializer="raw", value_serializer="raw")
        return self._topics[name]

    async def _send_one(self, topic: str, key: str | bytes | None, value: bytes | None) -> None:
        if isinstance(key, str):
            key = key.encode("utf-8")
        while True:
            try:
                fut = await self._topic(topic).send(key=key, value=value)
                await fut
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried; the record is keyed
                log.warning("publishing to %s failed (%s); retrying", topic, exc)
                await asyncio.sleep(self.retry_seconds)

    async def send_all(self, records: Iterable[tuple[str, str | bytes | None, bytes | None]]) -> None:
        """Publish ``(topic, key, value)`` records; return when all are acknowledged.

        At most :data:`SEND_CHUNK` records are in flight: the next ones are sent once
        those are acknowledged. A discovery run publishes thousands of records in one
        step; sent at once, handing them to the producer and settling their acks held the
        event loop for a third of a second at a time, and the ingest agent's records
        queued behind them (measured beside issue 17: the p99 from produce to assignment
        at 50/s was the discovery runs' publishing). An ingest batch is one chunk.
        """
        pending = list(records)
        for start in range(0, len(pending), SEND_CHUNK):
            chunk = pending[start:start + SEND_CHUNK]
            sends: list[Awaitable[None]] = [self._send_one(t, k, v) for t, k, v in chunk]
            await asyncio.gather(*sends)


@dataclass(frozen=True)
class InputProgress:
    """Where the consumer group stands on the input topic, all partitions together."""

    committed: dict[int, int]  # partition -> committed offset (the next one to consume)
    lag: int  # end offsets minus committed offsets, summed

    def settled(self, partition: int | None, offset: int | None) -> bool:
        """The event at (partition, offset) can no longer be redelivered: the group has
        committed past it. An event of unknown position counts as settled."""
        if partition is None or offset is None:
            return True
        return self.committed.get(partition, 0) > offset


class LagProbe:
    """Consumer lag of this worker's input partitions: end offset minus committed offset.

    A group-less reader of the group's committed offsets (an OffsetFetch needs no
    membership), so probing never joins or disturbs the consumer group. Exported as
    ``dialin_consumer_lag{topic,partition}`` for the "stalled consumer" alert.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer = None
        self.committed: dict[tuple[str, int], int] = {}

    async def _client(self):
        from aiokafka import AIOKafkaConsumer

        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.settings.kafka_bootstrap, group_id=self.settings.app_id,
                enable_auto_commit=False, **security_kwargs(self.settings, "aiokafka"))
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def reachable(self, timeout: float = 5.0) -> bool:
        """True when a broker answers a metadata request within ``timeout`` seconds."""
        try:
            consumer = await asyncio.wait_for(self._client(), timeout)
            return bool(await asyncio.wait_for(consumer._client.force_metadata_update(),  # noqa: SLF001
                                               timeout))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - unreachable is the answer, not an error
            return False

    async def measure(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        from aiokafka import TopicPartition

        tps = [TopicPartition(t, p) for t, p in partitions]
        if not tps:
            return {}
        consumer = await self._client()
        ends = await consumer.end_offsets(tps)
        out = {}
        for tp in tps:
            committed = await consumer.committed(tp) or 0
            self.committed[(tp.topic, tp.partition)] = committed
            out[(tp.topic, tp.partition)] = max(0, ends[tp] - committed)
        return out

    async def progress(self) -> InputProgress:
        """The group's committed offsets and total lag on every input partition."""
        from aiokafka import TopicPartition

        consumer = await self._client()
        topic = self.settings.topic_utterances
        ids = consumer.partitions_for_topic(topic)
        if not ids:
            await consumer._client.force_metadata_update()  # noqa: SLF001
            ids = consumer.partitions_for_topic(topic) or range(self.settings.topic_partitions)
        tps = [TopicPartition(topic, p) for p in sorted(ids)]
        ends = await consumer.end_offsets(tps) if tps else {}
        committed = {tp.partition: await consumer.committed(tp) or 0 for tp in tps}
        return InputProgress(committed, sum(max(0, ends[tp] - committed[tp.partition])
                                            for tp in tps))

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
