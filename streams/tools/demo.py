"""``dialin demo``: the whole service on one machine, from a file to published intents.

Starts the embedded broker on a free port and one ``dialin serve`` worker against it,
replays a file (default: the bundled English + Chinese sample with a few malformed
lines), prints intent updates as the worker publishes them, waits until every event
is processed and the discovery timer has had its turn on what is left, then
summarises from the topics (:mod:`.tally`) and the worker's metrics. Everything runs
on loopback with a throw-away data folder; nothing outlives the command.

The embedder: the bundled MiniLM is English-only (unrelated Chinese sentences sit at
cosine ~0.55 in its space, so nearly every Chinese utterance matches the first few
intents), so unless ``DIALIN_EMBEDDER`` or ``embedder`` says otherwise the demo fits
the character-n-gram ``lsa`` embedder once on the texts it is about to replay (as
``dialin discover`` does on its input) and the worker saves and uses that one.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .broker import EmbeddedBroker, free_port
from .replay import file_records, replay
from ..settings import Settings, get_settings
from .supervise import WorkerError, WorkerProcess, metric
from .tally import read_tally
from .watch import follow, format_update

#: The keys of ``dialin demo --json``, in order.
SUMMARY_KEYS = ("events_in", "valid", "invalid", "assigned", "buffered", "intents_published",
                "discovery_runs", "seconds")

Echo = Callable[[str], None]


class DemoStopped(Exception):
    """The caller asked the demo to stop (its ``stop`` event was set) before the end."""


def bundled_sample() -> Path:
    """The bundled demo sample (``streams/samples/demo.jsonl``, see its README)."""
    return Path(str(resources.files("dialin.streams") / "samples" / "demo.jsonl"))


@dataclass
class DemoResult:
    summary: dict
    completed: bool  # False when the timeout cut the demo short


def _processed(samples) -> float:
    """Inbound events the worker has decided on (every outcome, duplicates included)."""
    return metric(samples, "dialin_events_total")


def _runs(samples) -> float:
    """Discovery runs that ended, whatever the result (ok, certified_nothing, failed)."""
    return metric(samples, "dialin_discovery_runs_total")


def _stop_check(stop: threading.Event | None) -> Callable[[], None]:
    """A checkpoint that raises :class:`DemoStopped` once ``stop`` is set."""
    def check() -> None:
        if stop is not None and stop.is_set():
            raise DemoStopped("stop requested")
    return check


def _wait(cond: Callable[[], bool], deadline: float, worker: WorkerProcess,
          checkpoint: Callable[[], None]) -> bool:
    """Poll ``cond`` until true or the deadline; False on timeout. A dead worker is an error."""
    while time.monotonic() < deadline:
        checkpoint()
        if cond():
            return True
        if not worker.alive:
            raise WorkerError(f"the worker exited with code {worker.returncode}: {worker.log_tail(1)}")
        time.sleep(0.5)
    return False


def _settle(worker: WorkerProcess, settings: Settings, deadline: float, log: Echo,
            checkpoint: Callable[[], None]) -> bool:
    """After the last event: let discovery have its turn on what is still buffered.

    Up to two rounds (a run already going when the last event arrived may not have
    seen it): while the buffer (read from its topic) can still trigger a run by size,
    wait for the next run, or for a quiet spell of three timer intervals in which the
    worker decides not to run. False only when the deadline cut it short.
    """
    quiet = 3 * settings.discovery_interval_seconds + 10
    for _ in range(2):
        buffered = len(read_tally(settings).buffered)
        if buffered < settings.discovery_min_utterances:
            return True
        runs = _runs(worker.metrics())
        log(f"waiting for discovery on {buffered} buffered utterances ...")
        until = min(deadline, time.monotonic() + quiet)
        if not _wait(lambda r=runs: _runs(worker.metrics()) > r, until, worker, checkpoint):
            return time.monotonic() < deadline  # quiet spell: the worker will not run again
    return True


def _fit_file(records: list[tuple[bytes | None, bytes]], folder: Path) -> Path:
    """The texts of the records that carry one, as JSONL for ``DIALIN_EMBEDDER_FIT_FILE``."""
    path = folder / "embedder-fit.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for _, value in records:
            try:
                event = json.loads(value)
            except (ValueError, RecursionError):
                continue
            text = event.get("text") if isinstance(event, dict) else None
            if isinstance(text, str) and text.strip():
                fh.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    return path


def run_demo(path: Path | None = None, *, timeout: float = 600.0, rate: float | None = None,
             log: Echo, show: Echo, log_file: Path | None = None,
             embedder: str | None = None, stop: threading.Event | None = None) -> DemoResult:
    """Run the demo on ``path`` (default: the bundled sample); ``show`` gets each intent line.

    ``embedder`` (default: ``DIALIN_EMBEDDER``, else ``lsa`` fitted on the file's texts).
    ``stop``, once set, ends the demo at its next checkpoint with :class:`DemoStopped`,
    after the worker and the broker are stopped (the CLI sets it on SIGTERM).
    """
    checkpoint = _stop_check(stop)
    started = time.monotonic()
    deadline = started + timeout
    path = path or bundled_sample()
    records = list(file_records(path))  # read (and check) the file before starting anything
    with tempfile.TemporaryDirectory(prefix="dialin-demo-") as tmp, \
            EmbeddedBroker(free_port(), log_path=Path(tmp) / "broker.log") as broker:
        settings = get_settings().model_copy(update={
            "kafka_bootstrap": broker.bootstrap, "kafka_security_protocol": "PLAINTEXT",
            "data_dir": tmp})
        env = {"DIALIN_KAFKA_BOOTSTRAP": broker.bootstrap, "DIALIN_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
               "DIALIN_DATA_DIR": str(Path(tmp) / "worker"),
               "DIALIN_APP_ID": os.environ.get("DIALIN_APP_ID", "dialin-demo"),
               "DIALIN_EMBEDDER": embedder or os.environ.get("DIALIN_EMBEDDER", "lsa")}
        if env["DIALIN_EMBEDDER"] == "lsa" and not os.environ.get("DIALIN_EMBEDDER_FIT_FILE"):
            env["DIALIN_EMBEDDER_FIT_FILE"] = str(_fit_file(records, Path(tmp)))
        log(f"broker on {broker.bootstrap}; starting a worker (embedder {env['DIALIN_EMBEDDER']}) ...")
        worker = WorkerProcess(env, metrics_port=free_port(),
                               log_path=log_file or Path(tmp) / "worker.log")
        stop = threading.Event()
        watcher = threading.Thread(target=_show_updates, args=(settings, stop, show), daemon=True)
        try:
            checkpoint()
            worker.start().wait_ready(timeout=max(1.0, deadline - time.monotonic()),
                                      checkpoint=checkpoint)
            log(f"worker ready after {time.monotonic() - started:.0f}s; replaying {len(records)} "
                f"events from {path.name} ...")
            watcher.start()
            stats = replay(iter(records), settings, rate=rate, on_send=lambda _: checkpoint())
            events_in = stats.sent
            log(f"sent {events_in} events; waiting for the worker ...")
            done = _wait(lambda: _processed(worker.metrics()) >= events_in, deadline, worker,
                         checkpoint)
            done = done and _settle(worker, settings, deadline, log, checkpoint)
            if not done:
                log(f"timeout after {timeout:.0f}s; summarising what was processed")
            samples = worker.metrics()
            runs = int(_runs(samples) - metric(samples, "dialin_discovery_runs_total", result="failed"))
            tally = read_tally(settings)
        finally:
            stop.set()
            worker.stop()
            if watcher.is_alive():
                watcher.join(timeout=5)
    summary = {
        "events_in": events_in,
        "valid": len(tally.accepted),
        "invalid": len(tally.rejected),
        "assigned": len(tally.assigned),
        "buffered": len(tally.buffered),
        "intents_published": len(tally.intents),
        "discovery_runs": runs,
        "seconds": round(time.monotonic() - started, 1),
    }
    return DemoResult(summary=summary, completed=done)


def _show_updates(settings: Settings, stop: threading.Event, show: Echo) -> None:
    for record in follow(settings, settings.topic_updates, from_beginning=True, stop=stop.is_set):
        if isinstance(record.data, dict):
            show(format_update(record.data))


def format_summary(summary: dict) -> str:
    """The human summary printed at the end of ``dialin demo``."""
    s = summary
    return (f"{s['events_in']} events in {s['seconds']}s: {s['valid']} valid, {s['invalid']} "
            f"dead-lettered; {s['assigned']} assigned, {s['buffered']} still buffered; "
            f"{s['intents_published']} intents published in {s['discovery_runs']} discovery runs")
