"""Read the service's output topics (kafka-python consumer): follow intent updates live,
or read a whole topic once.

Why no consumer group: a watcher is a viewer, not a worker; it must see every
partition and must not take partitions from anyone. So the consumer assigns all
partitions itself (``assign``), commits nothing, and never joins a group, which also
avoids the embedded broker's slow group rebalances (kafka-python groups on tansu need
a small ``max_poll_interval_ms``). Security settings come from
:func:`dialin.streams.service.kafka_config.security_kwargs`.

Reading "to the end" does not trust the reported end offsets: the embedded tansu 0.6
reports the last batch's base offset + 1 as the high watermark, so each partition is read
until the consumer is past the reported end and has seen the partition's present twice
in a row: a poll that brought nothing for it, or a record written after the read began.
Not an empty poll of the whole topic: under steady traffic (a live ``intent-assignments``)
there is none, and the read ran to its timeout.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..service.buffer import shows_present
from ..settings import Settings


@dataclass(frozen=True)
class Record:
    """One consumed record, value decoded as JSON when it is JSON (else None in ``data``)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    data: Any

    @property
    def key_str(self) -> str | None:
        return None if self.key is None else self.key.decode("utf-8", "replace")


def _decode(value: bytes | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return None


def make_consumer(settings: Settings, **overrides):
    """A group-less kafka-python consumer with the project's security settings."""
    from kafka import KafkaConsumer

    from ..service.kafka_config import check_tls, security_kwargs

    check_tls(settings)
    config = dict(bootstrap_servers=settings.kafka_bootstrap.split(","), group_id=None,
                  enable_auto_commit=False, auto_offset_reset="earliest", bootstrap_timeout_ms=10000)
    config.update(security_kwargs(settings, "kafka-python"))
    config.update(overrides)
    return KafkaConsumer(**config)


def _assign(consumer, topic: str, from_beginning: bool, deadline: float) -> list:
    """Assign every partition of ``topic``, waiting (until ``deadline``) for it to exist."""
    from kafka import TopicPartition

    while True:
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            break
        if time.monotonic() >= deadline:
            return []
        time.sleep(0.2)
        consumer.topics()  # refresh metadata
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    if from_beginning:
        consumer.seek_to_beginning(*tps)
    else:
        consumer.seek_to_end(*tps)
    return tps


def _records(batch: dict) -> list[Record]:
    out = [Record(m.topic, m.partition, m.offset, m.timestamp, m.key, m.value, _decode(m.value))
           for messages in batch.values() for m in messages]
    out.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
    return out


def read_topic(settings: Settings, topic: str, *, wait_for_topic: float = 0.0,
               idle_polls: int = 2, timeout: float = 60.0) -> list[Record]:
    """Every record now in ``topic`` (all partitions, ordered by timestamp).

    Returns [] when the topic does not exist within ``wait_for_topic`` seconds.
    """
    consumer = make_consumer(settings)
    try:
        deadline = time.monotonic() + timeout
        tps = _assign(consumer, topic, True, time.monotonic() + wait_for_topic)
        if not tps:
            return []
        started_ms = int(time.time() * 1000)
        ends = consumer.end_offsets(tps)
        out: list[Record] = []
        at_present = dict.fromkeys(tps, 0)  # consecutive polls that saw the partition's present
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=300, max_records=5000)
            out.extend(_records(batch))
            for tp in tps:
                at_present[tp] = at_present[tp] + 1 if shows_present(batch.get(tp), started_ms) else 0
            if all(n >= idle_polls for n in at_present.values()) and \
                    all(consumer.position(tp) >= ends[tp] for tp in tps):
                break
        out.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
        return out
    finally:
        consumer.close()


def follow(settings: Settings, topic: str, *, from_beginning: bool = False,
           stop: Callable[[], bool] = lambda: False, wait_for_topic: float = 3600.0) -> Iterator[Record]:
    """Yield records of ``topic`` as they arrive until ``stop()`` is true.

    ``stop`` is checked at least every half second, also while no record arrives.
    """
    consumer = make_consumer(settings)
    try:
        deadline = time.monotonic() + wait_for_topic
        while not stop():
            if _assign(consumer, topic, from_beginning, min(deadline, time.monotonic() + 0.5)):
                break
            if time.monotonic() >= deadline:
                return
        else:
            return
        while not stop():
            yield from _records(consumer.poll(timeout_ms=500))
    finally:
        consumer.close()


def format_update(update: dict) -> str:
    """One human line for an intent update: status, id, version, role, label, size."""
    status = update.get("status", "?")
    merged = f" -> {update['merged_into']}" if update.get("merged_into") else ""
    role = update.get("role") or "-"
    return (f"{status:<8} {update.get('intent_id', '?')} v{update.get('version', '?')} "
            f"[{role}] {update.get('label', '')}{merged} (size {update.get('size', '?')})")
