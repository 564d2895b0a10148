"""``/metrics``, ``/healthz`` and ``/readyz`` on ``DIALIN_METRICS_PORT`` (aiohttp).

Liveness answers from the event loop alone, never asking Kafka or the LLM: an
outage of either must not turn into a restart storm. Readiness is the worker's own
word: connected to Kafka with the catalog read back (and, once SIGTERM arrives,
false again so the load balancer drains it first). ``kafka`` is re-checked every few
seconds by the worker (a metadata request), so readiness also drops when the brokers
go away after start and comes back when they return. Nothing here carries utterance
text: the metrics' labels are outcomes, phases and partitions only.

Library: aiohttp (already a faust dependency), prometheus-client.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import metrics


@dataclass
class Readiness:
    """What ``/readyz`` reports; the worker flips the flags."""

    kafka: bool = False
    catalog: bool = False
    stopping: bool = False

    @property
    def ready(self) -> bool:
        return self.kafka and self.catalog and not self.stopping

    def publish(self) -> None:
        metrics.READY.set(1 if self.ready else 0)


@dataclass
class StallDetector:
    """Flags a partition whose committed offset stays put while its lag does not shrink.

    Lag alone cannot tell a busy consumer from a stuck one; a committed offset that has
    not moved for ``stall_seconds`` while there is work (lag > 0, not lower than at the
    last progress) can. Pure bookkeeping: the worker feeds it what :class:`LagProbe`
    measured and exports the answer as ``dialin_consumer_stalled``.
    """

    stall_seconds: float
    _last: dict = field(default_factory=dict)  # partition -> (committed, lag, since)

    def observe(self, partition, committed: int, lag: int, now: float) -> bool:
        """Record one measurement; True when ``partition`` is stalled now."""
        prev = self._last.get(partition)
        if prev is None or committed != prev[0] or lag == 0:
            self._last[partition] = (committed, lag, now)
            return False
        _, lag_then, since = prev
        return lag >= lag_then and now - since >= self.stall_seconds


class HealthServer:
    """A tiny aiohttp server; ``port=0`` lets the OS choose (see :attr:`port` after start)."""

    def __init__(self, readiness: Readiness, port: int, host: str = "0.0.0.0") -> None:
        self.readiness = readiness
        self.port = port
        self.host = host
        self._runner: web.AppRunner | None = None

    async def _metrics(self, request: web.Request) -> web.Response:
        self.readiness.publish()
        body = generate_latest(metrics.REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        r = self.readiness
        body = {"ready": r.ready, "kafka": r.kafka, "catalog": r.catalog, "stopping": r.stopping}
        return web.json_response(body, status=200 if r.ready else 503)

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = site._server.sockets if site._server else []  # noqa: SLF001
        if sockets:
            self.port = sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
