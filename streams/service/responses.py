"""The deployment's LLM response log on a compacted Kafka topic.

Why a topic and not files under the data dir: the answers must be found by every process
that replays a run (``dialin rediscover`` runs wherever an operator runs it, a worker
pod's data dir is its own and may be an ``emptyDir``), and must outlive the pods. Kafka
is the one store the workers and the tools already share, and a compacted topic keyed by
the prompt's hash (:func:`~dialin.models.llm._prompts.response_key`, model and full prompt)
keeps exactly one answer per prompt for as long as the deployment lives, the same way the
catalog and the LLM spend are kept (:mod:`.spend`).

:class:`KafkaResponseLog` is a :class:`~dialin.models.ResponseLog`: the service's LLM
judge and namer get one (:func:`dialin.streams.factory.build_response_log`), so every
answer the live run got is recorded, and ``dialin rediscover`` reads the same topic. The
topic is read back once, on the first look-up (in the thread that asks the LLM, never on
the event loop); a prompt the log knows is never asked again, and the first answer to a
prompt is the one kept (:meth:`put` never sends a second record for a key it knows).
Writes are asynchronous (kafka-python batches them); :meth:`close` waits for them. A
crash may lose the answers of the last moments: a replay then asks those prompts again.

The topic (``DIALIN_TOPIC_LLM_RESPONSES``, one partition, ``cleanup.policy=compact``) is
made by the first writer when missing. Value: ``{"task": ..., "answer": [value, p_good]}``.

Library: kafka-python (the project's producer and group-less reader, and its admin client).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from dialin.models import ResponseLog

from ..settings import Settings

log = logging.getLogger(__name__)

#: Longest :meth:`KafkaResponseLog.close` waits for the answers not yet acknowledged.
FLUSH_TIMEOUT_SECONDS = 30.0


class KafkaResponseLog(ResponseLog):
    """LLM answers by prompt hash on ``settings.topic_llm_responses``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._answers: dict[str, list[Any]] | None = None
        self._lock = threading.Lock()
        self._producer = None
        self.loaded = 0  # answers read back from the topic
        self.recorded = 0  # answers this process added

    def load(self) -> int:
        """Read the topic back (once); the number of answers found."""
        with self._lock:
            if self._answers is None:
                self._answers = self._read()
                self.loaded = len(self._answers)
            return self.loaded

    def _read(self) -> dict[str, list[Any]]:
        from ..tools.watch import read_topic

        answers: dict[str, list[Any]] = {}
        for record in read_topic(self.settings, self.settings.topic_llm_responses,
                                 wait_for_topic=1.0):
            data = record.data
            if record.key is None or not isinstance(data, dict) \
                    or not isinstance(data.get("answer"), list) or len(data["answer"]) != 2:
                continue
            answers.setdefault(record.key_str, data["answer"])  # the first answer wins
        return answers

    def get(self, key: str) -> list[Any] | None:
        self.load()
        with self._lock:
            found = self._answers.get(key)  # type: ignore[union-attr]
        return None if found is None else list(found)

    def put(self, key: str, task: str, answer: list[Any]) -> None:
        self.load()
        with self._lock:
            if key in self._answers:  # type: ignore[operator]
                return
            self._answers[key] = list(answer)  # type: ignore[index]
            self.recorded += 1
            value = json.dumps({"task": task, "answer": list(answer)}, ensure_ascii=False)
            try:
                self._writer().send(self.settings.topic_llm_responses, key=key.encode("utf-8"),
                                    value=value.encode("utf-8"))
            except Exception as exc:  # noqa: BLE001 - the answer stands; a replay asks again
                log.warning("recording an LLM answer on %s failed: %s",
                            self.settings.topic_llm_responses, exc)

    def _writer(self):
        """The producer, made with the topic on first use (caller holds the lock)."""
        if self._producer is None:
            from ..tools.replay import make_producer

            self._ensure_topic()
            self._producer = make_producer(self.settings, acks="all")
        return self._producer

    def _ensure_topic(self) -> None:
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        from .kafka_config import security_kwargs

        admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap.split(","),
                                 **security_kwargs(self.settings, "kafka-python"))
        try:
            if self.settings.topic_llm_responses not in admin.list_topics():
                admin.create_topics([NewTopic(self.settings.topic_llm_responses, 1, 1,
                                              topic_configs={"cleanup.policy": "compact"})])
        except TopicAlreadyExistsError:  # another process won the race
            pass
        finally:
            admin.close()

    def close(self, timeout: float = FLUSH_TIMEOUT_SECONDS) -> None:
        """Wait for the answers not yet acknowledged, then let the producer go."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(timeout=timeout)
            producer.close(timeout=timeout)
