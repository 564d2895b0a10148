"""The service's LLM spend ledger: the spend of the current hour on a compacted topic.

Why a topic: the hourly caps (``DIALIN_LLM_MAX_CALLS_PER_HOUR`` / ``_TOKENS_PER_HOUR``)
must hold across restarts and leader changes, and Kafka is the only store every worker
shares. The leader's :class:`~dialin.models.SpendCap` hands its
:class:`~dialin.models.WindowSpend` to :meth:`KafkaSpendLedger.record` after every
change; the latest one is written to ``DIALIN_TOPIC_LLM_SPEND`` (compacted, one
partition, key = the app id, so one record per deployment survives compaction) and read
back by :meth:`KafkaSpendLedger.restore` when a worker starts leading.

``record`` is called while an LLM request waits for its slot, so it never touches the
network: it keeps the latest spend and wakes a sender thread that writes whatever is
latest when it gets to it (acks from all replicas). A crash loses at most the records
not yet acknowledged, so a restarted leader may under-count by the requests of the last
moments before the crash; a clean stop (:meth:`close`) writes the last one.

Library: kafka-python (a thread-safe producer and a group-less reader, the same helpers
as ``dialin replay`` and ``dialin watch``).
"""

from __future__ import annotations

import json
import logging
import threading

from dialin.models import SpendLedger, WindowSpend

from ..settings import Settings

log = logging.getLogger(__name__)

#: Longest a send may take before it is retried with the then-latest spend (seconds).
SEND_TIMEOUT_SECONDS = 10.0


class KafkaSpendLedger(SpendLedger):
    """The current hour's LLM spend on ``settings.topic_llm_spend``, key = ``app_id``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._latest: WindowSpend | None = None
        self._sent: WindowSpend | None = None
        self._wake = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._producer = None

    # --- SpendLedger ------------------------------------------------------------------

    def record(self, spend: WindowSpend) -> None:
        with self._wake:
            self._latest = spend
            if self._thread is None and not self._closing:
                self._thread = threading.Thread(target=self._send_loop, daemon=True,
                                                name="dialin-llm-spend")
                self._thread.start()
            self._wake.notify()

    def restore(self) -> WindowSpend | None:
        """The last spend this deployment recorded (None: none, or the topic is missing)."""
        from ..tools.watch import read_topic

        key = self.settings.app_id.encode("utf-8")
        found = None
        for record in read_topic(self.settings, self.settings.topic_llm_spend, wait_for_topic=5.0):
            if record.key == key:
                found = record.value
        if not found:
            return None
        try:
            return WindowSpend.from_dict(json.loads(found))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("unreadable LLM spend record on %s ignored: %s",
                        self.settings.topic_llm_spend, exc)
            return None

    # --- the sender ---------------------------------------------------------------------

    def _send_loop(self) -> None:
        while True:
            with self._wake:
                while self._latest is self._sent and not self._closing:
                    self._wake.wait()
                spend = self._latest
                if spend is self._sent:  # closing with nothing new
                    return
            try:
                self._send(spend)
                with self._wake:
                    self._sent = spend
                    self._wake.notify_all()
            except Exception as exc:  # noqa: BLE001 - retried with the latest spend
                log.warning("recording the LLM spend on %s failed (%s); retrying",
                            self.settings.topic_llm_spend, exc)
                with self._wake:
                    if self._closing:
                        return
                    self._wake.wait(1.0)

    def _send(self, spend: WindowSpend) -> None:
        if self._producer is None:
            from ..tools.replay import make_producer

            self._producer = make_producer(self.settings, acks="all")
        value = json.dumps(spend.as_dict()).encode("utf-8")
        self._producer.send(self.settings.topic_llm_spend, key=self.settings.app_id.encode("utf-8"),
                            value=value).get(timeout=SEND_TIMEOUT_SECONDS)

    def close(self, timeout: float = 10.0) -> None:
        """Write the latest spend (waiting up to ``timeout`` seconds), then stop."""
        with self._wake:
            self._closing = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        if self._producer is not None:
            self._producer.close(timeout=timeout)
            self._producer = None
