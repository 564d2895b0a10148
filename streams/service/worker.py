"""The streaming worker: objects from the factory, wired into one faust App, and run.

``create_app(settings)`` returns a faust App with the ingest agent, the leader-only
discovery timer, the catalog reader and the health server; ``run_worker(settings)``
runs it in the foreground (what ``dialin serve`` does). Startup order: topics are
created if missing, the health server answers ``/healthz`` at once, the catalog is
read back from ``dialin-catalog`` (the FAISS indexes are rebuilt from it), and only
then does the ingest agent take its first batch and ``/readyz`` turn ready.

Engine objects come from :mod:`.factory` (the one place that maps settings to
classes). The fitted ``lsa`` embedder is the exception that lives here: it must be
the same for every worker and for the catalog's whole life, so it is fitted once
(``DIALIN_EMBEDDER_FIT_FILE``) and saved in ``<data_dir>/lsa``, and every later
worker loads that folder; the catalog stores the embedder's name (which includes a
hash of the fitted state) and refuses another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import faust

from dialin.models import Embedder, EmbeddingSpaceError, IntentCatalog

from . import metrics
from .app import LagProbe, Publisher, create_app as create_bare_app, ensure_topics
from .buffer import BufferStore, TopicFollower
from .records import MemoryEntry
from .discovery import Discovery
from .health import HealthServer, Readiness, StallDetector
from .ingest import Ingestor, register_ingest
from ..settings import Settings

log = logging.getLogger(__name__)

#: How often readiness re-checks that a Kafka broker answers (seconds).
KAFKA_PROBE_SECONDS = 2.0


class WorkerConfigError(ValueError):
    """A worker setting that cannot work (one-line message for ``dialin serve``)."""


def load_embedder(settings: Settings) -> Embedder:
    """The embedder every worker of this deployment shares."""
    from .. import factory

    if settings.embedder != "lsa":
        return factory.build_embedder(settings)
    from dialin.models import LSAEmbedder, load_table

    folder = Path(settings.data_dir) / "lsa"
    if (folder / "lsa.json").is_file():
        return LSAEmbedder.load(folder)
    if not settings.embedder_fit_file:
        raise WorkerConfigError(
            f"DIALIN_EMBEDDER=lsa needs a fitted model in {folder}: set DIALIN_EMBEDDER_FIT_FILE "
            "to a .csv/.jsonl of utterances to fit it once, or DIALIN_EMBEDDER to a saved LSA folder")
    texts = load_table(settings.embedder_fit_file, text_field="text").texts
    embedder = LSAEmbedder(random_state=settings.random_state).fit(texts)
    embedder.save(folder)
    return embedder


def estimator_builder(settings: Settings) -> Callable[[], Any]:
    """A callable returning a fresh default estimator per discovery run (factory-built).

    The judge and namer are built once (an LLM client and its verdict cache live as
    long as the worker); the estimator is new for every run, as ``fit`` expects.
    """
    from .. import factory

    judge = factory.build_judge(settings, on_call=metrics.observe_llm_call)
    namer = factory.build_namer(settings, on_call=metrics.observe_llm_call)
    factory.build_estimator(settings, judge, namer)  # fail at start, not at the first run
    factory.build_redactor(settings)  # a bad DIALIN_PII_ENTITIES too (and warms it up)
    return lambda: factory.build_estimator(settings, judge, namer)


@dataclass
class WorkerParts:
    """Everything ``create_app`` wires together (exposed for tests and the harness)."""

    settings: Settings
    embedder: Embedder
    catalog: IntentCatalog
    buffer: BufferStore
    readiness: Readiness
    publisher: Publisher
    ingestor: Ingestor
    discovery: Discovery
    catalog_ready: asyncio.Event
    health: HealthServer | None = None


def _catalog_apply(catalog: IntentCatalog, errors: list[str]):
    def apply(key: bytes | None, value: bytes | None) -> None:
        if value is None:
            catalog.apply_record(None, key.decode("utf-8") if key else None)
            return
        try:
            catalog.apply_record(json.loads(value))
        except EmbeddingSpaceError as exc:
            if not errors:
                log.error("%s", exc)
            errors.append(str(exc))
    return apply


def create_app(settings: Settings, *, embedder: Embedder | None = None,
               make_estimator: Callable[[], Any] | None = None) -> faust.App:
    """The worker's faust App, fully wired; ``app.dialin`` holds its :class:`WorkerParts`."""
    embedder = embedder if embedder is not None else load_embedder(settings)
    make_estimator = make_estimator or estimator_builder(settings)
    app = create_bare_app(settings)
    catalog = IntentCatalog(embedder=embedder.name, match_threshold=settings.match_threshold,
                            n_neighbors=settings.match_neighbors,
                            vote_share=settings.match_vote_share)
    buffer = BufferStore()
    memory = BufferStore(MemoryEntry)
    publisher = Publisher(app)
    readiness = Readiness()
    parts = WorkerParts(settings=settings, embedder=embedder, catalog=catalog, buffer=buffer,
                        readiness=readiness, publisher=publisher,
                        ingestor=Ingestor(settings, embedder, catalog, publisher),
                        discovery=Discovery(settings, catalog, buffer, publisher, make_estimator,
                                            memory=memory),
                        catalog_ready=asyncio.Event())
    app.dialin = parts  # type: ignore[attr-defined]
    errors: list[str] = []
    catalog_reader = TopicFollower(settings, settings.topic_catalog, _catalog_apply(catalog, errors))
    buffer_reader = TopicFollower(settings, settings.topic_buffer, buffer.apply,
                                  after_batch=parts.discovery.after_read)
    memory_reader = TopicFollower(settings, settings.topic_memory, memory.apply,
                                  after_batch=parts.discovery.after_read)
    register_ingest(app, settings, parts.ingestor, ready=parts.catalog_ready)

    @app.task
    async def start_worker() -> None:
        if settings.metrics_port >= 0:
            parts.health = HealthServer(readiness, settings.metrics_port)
            port = await parts.health.start()
            log.info("health and metrics on port %s", port)
        await asyncio.to_thread(embedder.encode, ["warm-up"])  # load the model before ready
        await ensure_topics(settings)
        readiness.kafka = True
        await catalog_reader.start()
        await catalog_reader.caught_up.wait()
        if errors:
            raise WorkerConfigError(errors[0])
        readiness.catalog = True
        readiness.publish()
        parts.catalog_ready.set()
        log.info("catalog loaded: %d intents (embedder %s)", len(catalog), embedder.name)

    leader_state = {"started": False}

    @app.timer(settings.discovery_interval_seconds, on_leader=True)
    async def discovery_tick() -> None:
        if not parts.catalog_ready.is_set():
            return
        try:
            if not leader_state["started"]:
                await buffer_reader.start()
                await memory_reader.start()
                await buffer_reader.caught_up.wait()
                await memory_reader.caught_up.wait()
                await parts.discovery.republish()
                leader_state["started"] = True
            await parts.discovery.tick()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - an exception in a faust timer crashes the app
            log.warning("discovery tick failed, retried at the next tick: %s: %s",
                        type(exc).__name__, exc)
            if not leader_state["started"]:
                with contextlib.suppress(Exception):
                    await buffer_reader.stop()
                with contextlib.suppress(Exception):
                    await memory_reader.stop()

    lag_probe = LagProbe(settings)
    stalls = StallDetector(stall_seconds=3 * settings.lag_interval_seconds)

    @app.timer(settings.lag_interval_seconds)
    async def export_lag() -> None:
        if not parts.catalog_ready.is_set():
            return
        mine = [(tp.topic, tp.partition) for tp in app.consumer.assignment()
                if tp.topic == settings.topic_utterances]
        try:
            lags = await lag_probe.measure(mine)
        except Exception as exc:  # noqa: BLE001 - a probe failure must not stop the worker
            log.warning("consumer lag probe failed: %s", exc)
            return
        now = asyncio.get_running_loop().time()
        for (topic, partition), lag in lags.items():
            metrics.CONSUMER_LAG.labels(topic, str(partition)).set(lag)
            stalled = stalls.observe((topic, partition), lag_probe.committed[(topic, partition)], lag, now)
            metrics.CONSUMER_STALLED.labels(topic, str(partition)).set(int(stalled))
            if stalled:
                log.warning("consumer stalled on %s/%s: lag %d, no committed progress", topic,
                            partition, lag)

    @app.timer(KAFKA_PROBE_SECONDS)
    async def probe_kafka() -> None:
        """Readiness follows Kafka after start too (it was only set once, at start)."""
        if not parts.catalog_ready.is_set() or readiness.stopping:
            return
        up = await lag_probe.reachable()
        if up != readiness.kafka:
            log.warning("Kafka %s", "reachable again" if up else "unreachable: not ready")
            readiness.kafka = up
            readiness.publish()

    @app.on_before_shutdown.connect
    async def _stop_readers(app_, **kwargs) -> None:
        readiness.stopping = True
        readiness.publish()
        await catalog_reader.stop()
        await buffer_reader.stop()
        await memory_reader.stop()
        await lag_probe.stop()
        if parts.health is not None:
            await parts.health.stop()

    return app


class _Worker(faust.Worker):
    """faust's Worker that drops readiness the moment SIGTERM/SIGINT arrives.

    On SIGTERM the drain itself starts ``stop_delay_seconds`` later: the pod has been
    answering 503 on ``/readyz`` for that long before its health server goes away with
    the rest of the app, so probes and dashboards see "stopping", not a vanished pod.
    """

    def __init__(self, app: faust.App, *args, stop_delay_seconds: float = 0.0, **kwargs) -> None:
        super().__init__(app, *args, **kwargs)
        self.stop_delay_seconds = stop_delay_seconds

    def _drop_ready(self) -> None:
        parts = getattr(self.app, "dialin", None)
        if parts is not None:
            parts.readiness.stopping = True
            parts.readiness.publish()

    def _on_sigterm(self) -> None:
        self._drop_ready()
        if self.stop_delay_seconds > 0:
            self.loop.call_later(self.stop_delay_seconds, super()._on_sigterm)
        else:
            super()._on_sigterm()

    def _on_sigint(self) -> None:
        self._drop_ready()
        super()._on_sigint()


def run_worker(settings: Settings, loglevel: str = "info") -> int:
    """Run one worker in the foreground until SIGTERM/SIGINT; its exit code."""
    from .kafka_config import check_tls

    check_tls(settings)  # an untrusted certificate is a one-line error, not a crash loop
    app = create_app(settings)
    worker = _Worker(app, loglevel=loglevel, quiet=True,
                     stop_delay_seconds=settings.stop_delay_seconds)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0

