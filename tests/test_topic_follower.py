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
