"""The streaming worker: objects from the factory, wired into one faust App, and run.

:class:`Worker` owns the faust App (:func:`.app.build_faust_app`), the parts it wires
together (catalog, buffer, memory, publisher, ingestor, discovery, readiness, health
server) and the leader's start-up; ``run_worker(settings)`` builds one and runs it in
the foreground (what ``dialin serve`` does). Startup order: topics are created if
missing, the health server answers ``/healthz`` at once, the catalog is read back
from ``dialin-catalog`` (the FAISS indexes are rebuilt from it), and only then does
the ingest agent take its first batch and ``/readyz`` turn ready. The leader reads the
buffer and memory topics back at its first discovery tick, republishes the catalog's
updates, and only then runs discovery.

Engine objects come from :mod:`..factory` (the one place that maps settings to
classes): the embedder every worker shares (:func:`~..factory.build_service_embedder`),
the judge, namer and estimator, and the PII redactor that :class:`.discovery.Discovery`
is handed. With an hourly LLM cap set, the judge and namer share one spend cap whose
hour is kept on the spend topic (:class:`.spend.KafkaSpendLedger`): read back when the
worker starts leading, written after every request, its streak exported for the alert.
Every answer the LLM judge and namer get is recorded on the response topic
(:class:`.responses.KafkaResponseLog`), so ``dialin rediscover`` replays the live run's.

Library: faust-streaming (the App, its agents and timers, and ``faust.Worker``, which
runs it and handles the signals).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import faust

from dialin.models import DecidedExamples, Embedder, EmbeddingSpaceError, IntentCatalog

from . import metrics
from .app import LagProbe, Publisher, build_faust_app, ensure_topics
from .buffer import BufferStore, TopicFollower
from .decisions import DecisionApplier, DecisionQueue
from .discovery import Discovery
from .health import HealthServer, Readiness, StallDetector
from .ingest import Ingestor, register_ingest
from .records import MemoryEntry
from .lifecycle import LeaderRules
from .spend import KafkaSpendLedger
from .volume import VolumeCounter
from .. import factory
from ..settings import Settings

log = logging.getLogger(__name__)

#: How often readiness re-checks that a Kafka broker answers (seconds).
KAFKA_PROBE_SECONDS = 2.0


class WorkerConfigError(ValueError):
    """A worker setting that cannot work (one-line message for ``dialin serve``)."""


def estimator_builder(settings: Settings, spend: Any = None,
                      responses: Any = None, examples: Any = None) -> Callable[[], Any]:
    """A callable returning a fresh default estimator per discovery run (factory-built).

    The judge and namer are built once (an LLM client and its verdict cache live as
    long as the worker); the estimator is new for every run, as ``fit`` expects.
    ``spend`` is the worker's LLM spend cap (:func:`~..factory.build_spend_cap`), if any;
    ``responses`` its LLM response log (:func:`~..factory.build_response_log`), if any;
    ``examples`` the clusters reviewers decided (:class:`~dialin.models.DecidedExamples`),
    which an LLM judge and namer show as few-shot examples.
    """
    judge = factory.build_judge(settings, on_call=metrics.observe_llm_call, spend=spend,
                                responses=responses, examples=examples)
    namer = factory.build_namer(settings, on_call=metrics.observe_llm_call, spend=spend,
                                responses=responses, examples=examples)
    settings = factory.service_settings(settings)  # the service's budget with an LLM judge
    factory.build_estimator(settings, judge, namer, spend=spend)  # fail at start, not at the first run
    return lambda: factory.build_estimator(settings, judge, namer, spend=spend)


class Worker:
    """One streaming worker: the faust App, the parts it wires together, and their start-up.

    Everything comes from ``settings`` through the factory; tests pass their own
    ``embedder`` and ``make_estimator`` (a callable returning a fresh estimator per
    discovery run). The parts are public attributes so tests can reach them:
    ``catalog``, ``buffer``, ``memory``, ``publisher``, ``readiness``, ``ingestor``,
    ``discovery``, ``catalog_ready`` (set once the catalog is read back) and ``health``
    (the health server, once started).
    """

    def __init__(self, settings: Settings, *, embedder: Embedder | None = None,
                 make_estimator: Callable[[], Any] | None = None) -> None:
        self.settings = settings
        self.embedder = embedder if embedder is not None else factory.build_service_embedder(settings)
        # One LLM spend cap for the process, its hour kept on the spend topic.
        self.spend_ledger = KafkaSpendLedger(settings)
        self.spend = factory.build_spend_cap(settings, ledger=self.spend_ledger,
                                             on_fallback=metrics.observe_llm_fallback)
        if self.spend is not None:
            metrics.LLM_CAP_STREAK.set_function(self.spend.streak)
        # Every LLM answer recorded by prompt hash, for `dialin rediscover` (None: no LLM).
        self.responses = factory.build_response_log(settings)
        # The clusters reviewers decided, refreshed by the decisions step (issue 15, part 3).
        self.decided = DecidedExamples(limit=settings.decision_examples)
        # A test's own estimator fits on the run's thread (it need not pickle).
        fitter = factory.build_fitter(settings) if make_estimator is None else None
        make_estimator = make_estimator or estimator_builder(settings, self.spend, self.responses,
                                                             self.decided)
        # Built (and checked) at start: a bad DIALIN_PII_ENTITIES fails now, not at the first run.
        redactor = factory.build_redactor(settings)
        self.app = build_faust_app(settings)
        self.catalog = IntentCatalog(embedder=self.embedder.name,
                                     match_threshold=settings.match_threshold,
                                     n_neighbors=settings.match_neighbors,
                                     vote_share=settings.match_vote_share)
        self.buffer = BufferStore()
        self.memory = BufferStore(MemoryEntry)
        self.publisher = Publisher(self.app)
        self.readiness = Readiness()
        self.ingestor = Ingestor(settings, self.embedder, self.catalog, self.publisher,
                                 encoder=factory.build_encoder(settings, self.embedder))
        self._lag_probe = LagProbe(settings)
        self.discovery = Discovery(settings, self.catalog, self.buffer, self.publisher,
                                   make_estimator, memory=self.memory, redactor=redactor,
                                   progress=self._lag_probe.progress,
                                   fitter=fitter)
        self.catalog_ready = asyncio.Event()
        self.health: HealthServer | None = None
        self.catalog_errors: list[str] = []  # catalog records from another embedding space
        self.leading = False  # the leader has read the buffer and memory back
        self._catalog_reader = TopicFollower(settings, settings.topic_catalog, self._apply_catalog)
        self._buffer_reader = TopicFollower(settings, settings.topic_buffer, self.buffer.apply,
                                            after_batch=self.discovery.after_read)
        self._memory_reader = TopicFollower(settings, settings.topic_memory, self.memory.apply,
                                            after_batch=self.discovery.after_read)
        # Lifecycle (issue 15): reviewers' decisions, the rules, per-intent volume.
        self.decisions = DecisionQueue()
        self.applier = DecisionApplier(self.discovery, self.decisions, examples=self.decided)
        self.volume = VolumeCounter(settings.volume_window_seconds,
                                    keep_seconds=max(settings.activation_window_seconds, 86400.0))
        self._decision_reader = TopicFollower(settings, settings.topic_decisions,
                                              self.decisions.receive)
        self._assignment_reader = TopicFollower(settings, settings.topic_assignments,
                                                self.volume.observe)
        self.volume.live = self._assignment_reader.caught_up.is_set
        self.rules = LeaderRules(self.discovery, self.volume)
        self.discovery.steps += [self.applier, self.rules]
        self._stalls = StallDetector(stall_seconds=3 * settings.lag_interval_seconds)
        self._wire()

    def _wire(self) -> None:
        """Register the ingest agent, the start-up task, the timers and the shutdown hook."""
        s, app = self.settings, self.app
        register_ingest(app, s, self.ingestor, ready=self.catalog_ready)
        app.task(self.start)
        app.timer(s.discovery_interval_seconds, on_leader=True)(self.discovery_tick)
        app.timer(s.lag_interval_seconds)(self.export_lag)
        app.timer(KAFKA_PROBE_SECONDS)(self.probe_kafka)
        app.on_before_shutdown.connect(self._stop_readers)

    def _apply_catalog(self, key: bytes | None, value: bytes | None) -> None:
        """The catalog reader's callback: one record (or tombstone) into the catalog."""
        if value is None:
            self.catalog.apply_record(None, key.decode("utf-8") if key else None)
            return
        try:
            self.catalog.apply_record(json.loads(value))
        except EmbeddingSpaceError as exc:
            if not self.catalog_errors:
                log.error("%s", exc)
            self.catalog_errors.append(str(exc))

    async def start(self) -> None:
        """Health server, warm embedder, topics, then the catalog read back: ready."""
        if self.settings.metrics_port >= 0:
            self.health = HealthServer(self.readiness, self.settings.metrics_port)
            port = await self.health.start()
            log.info("health and metrics on port %s", port)
        await self.ingestor.warm_up()  # start the encoder and load the model before ready
        await ensure_topics(self.settings)
        self.readiness.kafka = True
        await self._catalog_reader.start()
        await self._catalog_reader.caught_up.wait()
        if self.catalog_errors:
            raise WorkerConfigError(self.catalog_errors[0])
        self.readiness.catalog = True
        self.readiness.publish()
        self.catalog_ready.set()
        log.info("catalog loaded: %d intents (embedder %s)", len(self.catalog), self.embedder.name)

    async def start_leading(self) -> None:
        """The leader's start-up: read the buffer and memory back, republish the catalog."""
        await self._buffer_reader.start()
        await self._memory_reader.start()
        await self._decision_reader.start()
        await self._assignment_reader.start()
        await self._buffer_reader.caught_up.wait()
        await self._memory_reader.caught_up.wait()
        await self._decision_reader.caught_up.wait()
        await self._assignment_reader.caught_up.wait()
        if self.spend is not None:  # the hour's LLM spend, as the last leader left it
            await asyncio.to_thread(self.spend.restore)
        await self.discovery.republish()
        self.leading = True

    async def discovery_tick(self) -> None:
        """Leader-only timer: start leading once, then one discovery tick."""
        if not self.catalog_ready.is_set():
            return
        try:
            if not self.leading:
                await self.start_leading()
            await self.discovery.tick()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - an exception in a faust timer crashes the app
            log.warning("discovery tick failed, retried at the next tick: %s: %s",
                        type(exc).__name__, exc)
            if not self.leading:
                with contextlib.suppress(Exception):
                    await self._buffer_reader.stop()
                with contextlib.suppress(Exception):
                    await self._memory_reader.stop()
                with contextlib.suppress(Exception):
                    await self._decision_reader.stop()
                with contextlib.suppress(Exception):
                    await self._assignment_reader.stop()

    async def export_lag(self) -> None:
        """Timer: consumer lag of this worker's input partitions, and stalled partitions."""
        if not self.catalog_ready.is_set():
            return
        topic_in = self.settings.topic_utterances
        mine = [(tp.topic, tp.partition) for tp in self.app.consumer.assignment()
                if tp.topic == topic_in]
        try:
            lags = await self._lag_probe.measure(mine)
        except Exception as exc:  # noqa: BLE001 - a probe failure must not stop the worker
            log.warning("consumer lag probe failed: %s", exc)
            return
        now = asyncio.get_running_loop().time()
        for (topic, partition), lag in lags.items():
            metrics.CONSUMER_LAG.labels(topic, str(partition)).set(lag)
            stalled = self._stalls.observe((topic, partition),
                                           self._lag_probe.committed[(topic, partition)], lag, now)
            metrics.CONSUMER_STALLED.labels(topic, str(partition)).set(int(stalled))
            if stalled:
                log.warning("consumer stalled on %s/%s: lag %d, no committed progress", topic,
                            partition, lag)

    async def probe_kafka(self) -> None:
        """Timer: readiness follows Kafka after start too (it was only set once, at start)."""
        if not self.catalog_ready.is_set() or self.readiness.stopping:
            return
        up = await self._lag_probe.reachable()
        if up != self.readiness.kafka:
            log.warning("Kafka %s", "reachable again" if up else "unreachable: not ready")
            self.readiness.kafka = up
            self.readiness.publish()

    def drop_ready(self) -> None:
        """``/readyz`` answers 503 from now on (the worker is stopping)."""
        self.readiness.stopping = True
        self.readiness.publish()

    async def _stop_readers(self, app: faust.App, **kwargs: Any) -> None:
        self.drop_ready()
        await self._catalog_reader.stop()
        await self._buffer_reader.stop()
        await self._memory_reader.stop()
        await self._decision_reader.stop()
        await self._assignment_reader.stop()
        await self._lag_probe.stop()
        if self.spend is not None:
            self.spend.close()  # a run waiting for the next hour stops waiting
            await asyncio.to_thread(self.spend_ledger.close)
        if self.responses is not None:
            await asyncio.to_thread(self.responses.close)
        if self.health is not None:
            await self.health.stop()

    def run(self, loglevel: str = "info") -> int:
        """Run in the foreground until SIGTERM/SIGINT; the exit code."""
        runner = _SignalledRunner(self.app, on_signal=self.drop_ready, loglevel=loglevel,
                                  quiet=True, stop_delay_seconds=self.settings.stop_delay_seconds)
        try:
            runner.execute_from_commandline()
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0


class _SignalledRunner(faust.Worker):
    """faust's Worker (what runs an App) that calls ``on_signal`` the moment
    SIGTERM/SIGINT arrives; the worker drops readiness there.

    On SIGTERM the drain itself starts ``stop_delay_seconds`` later: the pod has been
    answering 503 on ``/readyz`` for that long before its health server goes away with
    the rest of the app, so probes and dashboards see "stopping", not a vanished pod.
    """

    def __init__(self, app: faust.App, *args: Any, on_signal: Callable[[], None],
                 stop_delay_seconds: float = 0.0, **kwargs: Any) -> None:
        super().__init__(app, *args, **kwargs)
        self.on_signal = on_signal
        self.stop_delay_seconds = stop_delay_seconds

    def _on_sigterm(self) -> None:
        self.on_signal()
        if self.stop_delay_seconds > 0:
            self.loop.call_later(self.stop_delay_seconds, super()._on_sigterm)
        else:
            super()._on_sigterm()

    def _on_sigint(self) -> None:
        self.on_signal()
        super()._on_sigint()


def run_worker(settings: Settings, loglevel: str = "info") -> int:
    """Run one worker in the foreground until SIGTERM/SIGINT; its exit code."""
    from .kafka_config import check_tls

    check_tls(settings)  # an untrusted certificate is a one-line error, not a crash loop
    return Worker(settings).run(loglevel)
