"""The compacted-topic reader every worker and the review page use (``TopicFollower``), on
the real embedded broker: a reader started before its topic exists."""

from __future__ import annotations

import asyncio
import uuid

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from dialin.streams.service.buffer import TopicFollower


def test_a_reader_started_before_its_topic_reads_every_partition_and_creates_nothing(kafka_settings):
    """The review page may start before the workers created their topics. Its reader must
    neither create the topic (the broker's defaults: no compaction, its own partitions)
    nor settle for partition 0 once the topic appears."""
    topic = f"late-{uuid.uuid4().hex[:8]}"
    seen: dict[bytes, bytes] = {}
    admin = KafkaAdminClient(bootstrap_servers=kafka_settings.kafka_bootstrap)

    async def run() -> list[int]:
        follower = TopicFollower(kafka_settings, topic, lambda k, v: seen.__setitem__(k, v),
                                 wait_seconds=0.5)
        await follower.start()
        try:
            await asyncio.wait_for(follower.caught_up.wait(), 10)  # nothing to replay yet
            await asyncio.sleep(2.5)  # the reader polls for the topic meanwhile
            before = [t for t in admin.list_topics() if t == topic]
            admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
            producer = KafkaProducer(bootstrap_servers=kafka_settings.kafka_bootstrap)
            for p in range(3):
                producer.send(topic, key=f"k{p}".encode(), value=f"v{p}".encode(), partition=p)
            producer.flush()
            producer.close()
            for _ in range(100):
                if len(seen) == 3:
                    break
                await asyncio.sleep(0.1)
            return before
        finally:
            await follower.stop()

    try:
        created_by_reader = asyncio.run(run())
        assert created_by_reader == []  # the reader asked for metadata, it created nothing
        assert seen == {b"k0": b"v0", b"k1": b"v1", b"k2": b"v2"}  # all three partitions
    finally:
        admin.close()


def test_a_reader_catches_up_while_its_topic_keeps_being_written(kafka_settings):
    """A leader elected during traffic reads the buffer while ingestion keeps writing to it.
    It must count as caught up once the history present at its start is applied, without
    waiting for a pause in the traffic (before, it waited for a poll that brought nothing,
    so under steady traffic the leader never ran discovery), and not before that history
    is applied."""
    import threading
    import time

    topic = f"busy-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_settings.kafka_bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    producer = KafkaProducer(bootstrap_servers=kafka_settings.kafka_bootstrap, linger_ms=5)
    history = [f"h{i}".encode() for i in range(5000)]  # more than one poll brings
    for key in history:
        producer.send(topic, key=key, value=b"x" * 200)
    producer.flush()
    stop = threading.Event()

    def keep_writing() -> None:  # about 200 records/s, spread over the partitions
        i = 0
        while not stop.is_set():
            producer.send(topic, key=f"live{i}".encode(), value=b"x" * 200)
            i += 1
            time.sleep(0.005)

    writer = threading.Thread(target=keep_writing, daemon=True)
    applied_before: set[bytes] = set()  # history keys applied before caught_up was set

    async def run() -> float:
        def apply(key: bytes, value: bytes) -> None:
            if not follower.caught_up.is_set():
                applied_before.add(key)

        follower = TopicFollower(kafka_settings, topic, apply)
        started = time.monotonic()
        await follower.start()
        try:
            await asyncio.wait_for(follower.caught_up.wait(), 20)
            return time.monotonic() - started
        finally:
            await follower.stop()

    writer.start()
    time.sleep(1.0)  # the traffic is flowing before the reader starts
    try:
        took = asyncio.run(run())
    finally:
        stop.set()
        writer.join()
        producer.close()
        admin.close()
    missing = set(history) - applied_before
    assert not missing, f"caught up with {len(missing)} records of the history not yet applied"
    assert took < 10, f"caught up after {took:.1f} s of steady traffic"


def test_reading_a_topic_once_ends_under_steady_traffic(kafka_settings):
    """``read_topic`` (tally, rediscover, the catalog export) on a topic that keeps being
    written returns the history present at its start within seconds, not at its timeout
    (before, it waited for two polls that brought nothing, which steady traffic never gives)."""
    import threading
    import time

    from dialin.streams.tools.watch import read_topic

    topic = f"live-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_settings.kafka_bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    producer = KafkaProducer(bootstrap_servers=kafka_settings.kafka_bootstrap, linger_ms=5)
    history = {f"h{i}" for i in range(3000)}
    for key in sorted(history):
        producer.send(topic, key=key.encode(), value=b"{}")
    producer.flush()
    stop = threading.Event()

    def keep_writing() -> None:
        i = 0
        while not stop.is_set():
            producer.send(topic, key=f"live{i}".encode(), value=b"{}")
            i += 1
            time.sleep(0.005)

    writer = threading.Thread(target=keep_writing, daemon=True)
    writer.start()
    time.sleep(1.0)
    try:
        started = time.monotonic()
        records = read_topic(kafka_settings, topic, timeout=30)
        took = time.monotonic() - started
    finally:
        stop.set()
        writer.join()
        producer.close()
        admin.close()
    assert history <= {r.key_str for r in records}
    assert took < 10, f"read for {took:.1f} s under steady traffic"
