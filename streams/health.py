"""``/metrics``, ``/healthz`` and ``/readyz`` on ``DIALIN_METRICS_PORT`` (aiohttp).

Liveness answers from the event loop alone, never asking Kafka or the LLM: an
outage of either must not turn into a restart storm. Readiness is the worker's own
word: connected to Kafka with the catalog read back (and, once SIGTERM arrives,
false again so the load balancer drains it first). Nothing here carries utterance
text: the metrics' labels are outcomes, phases and partitions only.

Library: aiohttp (already a faust dependency), prometheus-client.
"""

from __future__ import annotations

from dataclasses import dataclass

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
