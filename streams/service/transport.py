"""faust's Kafka transport, with the worker consumer's fetch wait taken from settings.

faust-streaming builds the worker's aiokafka consumer with ``fetch_max_wait_ms=1500``
written into the code (``faust/transport/drivers/aiokafka.py``), and no setting reaches
it. A broker may hold a fetch for up to that long even when records arrive meanwhile:
the embedded broker (tansu) answers a waiting fetch only after about 500 ms, which put a
floor of half a second under every produce-to-assignment latency (measured beside issue
17: produce to consume 10-60 ms with a 100 ms wait, about 500 ms with 1500 ms). Kafka
itself answers as soon as ``fetch_min_bytes`` are there, so there the wait only bounds
the idle polling: each empty fetch is one request, 10 per second per broker at 100 ms.

:class:`FetchWaitApp` is ``faust.App`` with the transport built from these subclasses;
everything else (rebalancing, commits, the delivery order) is faust's own code. The value
is set on the aiokafka consumer before ``start()``, which is when aiokafka hands it to
its fetcher.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
from faust.transport.drivers import aiokafka as driver

log = logging.getLogger(__name__)


def transport_class(fetch_max_wait_ms: int) -> type[driver.Transport]:
    """faust's aiokafka transport whose worker consumer waits at most ``fetch_max_wait_ms``."""

    class ConsumerThread(driver.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = int(fetch_max_wait_ms)  # read by start()
            log.info("consumer fetch wait %d ms (DIALIN_FETCH_MAX_WAIT_MS)", fetch_max_wait_ms)
            return consumer

    class WaitConsumer(driver.Consumer):
        def _new_consumer_thread(self) -> ConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(driver.Transport):
        Consumer = WaitConsumer

    return Transport


class FetchWaitApp(faust.App):
    """``faust.App`` whose consumer transport uses :func:`transport_class`."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int = 1500, **kwargs: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return transport_class(self.fetch_max_wait_ms)(self.conf.broker_consumer, self)
