"""``dialin broker|serve|replay|watch|demo``: the streaming service and the tools around it.

``serve`` runs one worker (:mod:`..service.worker`); ``broker``, ``replay``, ``watch``
and ``demo`` are the tools of :mod:`..tools`. Expected failures are one ``error:`` line
on stderr with the exit codes of :mod:`dialin.streams.cli`. :func:`register` adds the
commands to the ``dialin`` app.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from ._exit import INCOMPLETE, USER_ERROR, process_settings

_BOOTSTRAP_HELP = "Kafka bootstrap servers (default: DIALIN_KAFKA_BOOTSTRAP)."


def _tool_settings(bootstrap: str | None):
    """The process settings, with the bootstrap servers overridden when given."""
    settings = process_settings()
    return settings.model_copy(update={"kafka_bootstrap": bootstrap}) if bootstrap else settings


@contextlib.contextmanager
def _tool_errors(bootstrap: str) -> Iterator[None]:
    """Turn the expected failures into one line on stderr and exit code 2 (``USER_ERROR``)."""
    from kafka.errors import KafkaError

    from ..tools.broker import BrokerError
    from ..service.kafka_config import KafkaConfigError
    from ..tools.replay import ReplayError

    try:
        yield
    except (ReplayError, KafkaConfigError, BrokerError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(USER_ERROR) from None
    except KafkaError as exc:
        typer.echo(f"error: Kafka at {bootstrap}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                   err=True)
        raise typer.Exit(USER_ERROR) from None


#: How long ``demo`` waits, after a stop signal, for the worker and the broker to stop
#: (whatever is still running after that dies with this process: see ``tools/children``).
_DEMO_STOP_SECONDS = 30.0


class _Stopped(BaseException):
    """SIGTERM or SIGHUP arrived; raised from the handler so every ``finally`` runs.

    A ``BaseException``, like ``KeyboardInterrupt``, so ``except Exception`` does not
    catch it. That is not enough where library code runs on the main thread: kafka-python
    runs its event loop on the caller's thread while it bootstraps and logs and drops
    whatever a task raises, so ``demo`` keeps the main thread in a loop of its own.
    """


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP (``kill``, systemd, a supervisor, a closed terminal) into
    :class:`_Stopped`, so the children are stopped on the way out (Python's default for
    both is to die on the spot, leaving them behind)."""
    import signal

    def stop(signum: int, _frame) -> None:
        raise _Stopped(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def broker(
    port: int = typer.Option(9092, help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (and advertise)."),
) -> None:
    """Run the embedded Kafka-protocol broker (tansu, in memory) in the foreground.

    Ctrl-C, SIGTERM and SIGHUP stop it (exit code 0); if this process is killed
    outright, the kernel kills the broker too.
    """
    from ..tools.broker import EmbeddedBroker

    embedded = EmbeddedBroker(port, host)
    code = 0
    with _stop_on_signals():
        try:
            with _tool_errors(embedded.bootstrap):
                embedded.start()
            typer.echo(f"broker ready on {embedded.bootstrap} (in memory; Ctrl-C stops it)", err=True)
            code = embedded.wait()
        except (KeyboardInterrupt, _Stopped):
            code = 0
        finally:
            embedded.stop()
    raise typer.Exit(code)


def replay(
    file: Path = typer.Argument(..., help="JSONL (lines sent as they are) or CSV (rows converted)."),
    rate: float = typer.Option(0.0, help="Events per second; 0 sends as fast as possible."),
    topic: str | None = typer.Option(None, help="Target topic (default: DIALIN_TOPIC_UTTERANCES)."),
    text_field: str = typer.Option("text", help="CSV column holding the utterance."),
    role_field: str | None = typer.Option(None, help="CSV column holding the role, if any."),
    limit: int | None = typer.Option(None, min=0, help="Send at most this many records."),
    bootstrap: str | None = typer.Option(None, help=_BOOTSTRAP_HELP),
) -> None:
    """Produce a file of utterances onto the inbound topic, key = call_id."""
    from ..tools.replay import file_records
    from ..tools.replay import replay as run_replay

    if rate < 0:
        typer.echo("error: --rate must be >= 0", err=True)
        raise typer.Exit(USER_ERROR)
    settings = _tool_settings(bootstrap)
    with _tool_errors(settings.kafka_bootstrap):
        records = file_records(file, text_field=text_field, role_field=role_field)
        stats = run_replay(records, settings, topic=topic, rate=rate or None, limit=limit)
    typer.echo(f"sent {stats.sent} records to {topic or settings.topic_utterances} "
               f"in {stats.seconds:.1f}s", err=True)
    if stats.failed:
        typer.echo(f"error: {stats.failed} records refused: {'; '.join(stats.errors[:3])}", err=True)
        raise typer.Exit(INCOMPLETE)


def watch(
    from_beginning: bool = typer.Option(False, help="Print the updates already published first."),
    json_lines: bool = typer.Option(False, "--json", help="Print each update as one JSON line."),
    max_updates: int | None = typer.Option(None, "--max", min=1, help="Stop after this many updates."),
    timeout: float | None = typer.Option(None, min=0, help="Stop after this many seconds."),
    bootstrap: str | None = typer.Option(None, help=_BOOTSTRAP_HELP),
) -> None:
    """Print intent updates as they are published (Ctrl-C stops)."""
    import json
    import time

    from ..tools.watch import follow, format_update

    settings = _tool_settings(bootstrap)
    deadline = None if timeout is None else time.monotonic() + timeout
    seen = 0

    def done() -> bool:
        return (max_updates is not None and seen >= max_updates) or (
            deadline is not None and time.monotonic() >= deadline)

    with _tool_errors(settings.kafka_bootstrap), contextlib.suppress(KeyboardInterrupt):
        for record in follow(settings, settings.topic_updates, from_beginning=from_beginning, stop=done):
            if not isinstance(record.data, dict):
                continue  # a tombstone or a foreign record on the compacted topic
            seen += 1
            line = json.dumps(record.data, ensure_ascii=False) if json_lines else format_update(record.data)
            typer.echo(line)
            if done():
                break


# --- serve: one streaming worker (streams/service/worker.py) -----------------------------------


def serve(
    bootstrap: str | None = typer.Option(None, help=_BOOTSTRAP_HELP),
    metrics_port: int | None = typer.Option(
        None, help="Port of /metrics, /healthz, /readyz (default: DIALIN_METRICS_PORT; 0 = any free)."),
    loglevel: str = typer.Option("info", help="faust worker log level."),
) -> None:
    """Run one streaming worker in the foreground (SIGTERM drains and stops it)."""
    from ..factory import SettingsError
    from ..service.kafka_config import KafkaConfigError
    from ..service.worker import WorkerConfigError, run_worker

    update = {k: v for k, v in {"kafka_bootstrap": bootstrap, "metrics_port": metrics_port}.items()
              if v is not None}
    settings = process_settings().model_copy(update=update)
    try:
        code = run_worker(settings, loglevel=loglevel)
    except (SettingsError, KafkaConfigError, WorkerConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(USER_ERROR) from None
    raise typer.Exit(code)


# --- demo: broker + worker + replay + watch in one command (streams/tools/demo.py) ------------


def demo(
    input_file: Path | None = typer.Option(
        None, "--input", help="JSONL or CSV to replay (default: the bundled English + Chinese sample)."),
    timeout: float = typer.Option(600.0, min=1, help="Give up (and summarise) after this many seconds."),
    rate: float = typer.Option(0.0, min=0, help="Events per second; 0 sends as fast as possible."),
    json_out: bool = typer.Option(False, "--json", help="Print only one JSON summary on stdout."),
    log_file: Path | None = typer.Option(None, help="Keep the worker's log here."),
    embedder: str | None = typer.Option(
        None, help="Worker embedder (default: DIALIN_EMBEDDER, else lsa fitted on the input's texts)."),
) -> None:
    """Start a broker and a worker, replay a sample, print intents as they appear, summarise."""
    import json

    from ..tools.demo import format_summary, run_demo
    from ..tools.supervise import WorkerError

    def log(line: str) -> None:
        typer.echo(line, err=True)

    stop = threading.Event()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = run_demo(input_file, timeout=timeout, rate=rate or None, log=log,
                                         show=log if json_out else typer.echo, log_file=log_file,
                                         embedder=embedder, stop=stop)
        except BaseException as exc:  # handed to the main thread, which reports it
            outcome["error"] = exc

    # The demo runs on a thread and this (main) thread only waits, so the signal handler
    # raises here, in our loop; raised inside kafka-python's event loop it was dropped.
    runner = threading.Thread(target=work, name="dialin-demo", daemon=True)
    with _tool_errors("the embedded broker"), _stop_on_signals():
        try:
            runner.start()
            while runner.is_alive():
                runner.join(0.2)
            if "error" in outcome:
                raise outcome["error"]
        except WorkerError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(USER_ERROR) from None
        except (_Stopped, KeyboardInterrupt) as exc:
            stop.set()  # run_demo stops the worker and the broker at its next checkpoint
            runner.join(_DEMO_STOP_SECONDS)
            name = str(exc) if isinstance(exc, _Stopped) else "SIGINT"
            typer.echo(f"stopped by {name} before the end; worker and broker stopped", err=True)
            raise typer.Exit(INCOMPLETE) from None
    result = outcome["result"]
    if json_out:
        typer.echo(json.dumps(result.summary))
    else:
        typer.echo(format_summary(result.summary))
    raise typer.Exit(0 if result.completed else INCOMPLETE)


def register(app: typer.Typer) -> None:
    """Add ``broker``, ``replay``, ``watch``, ``serve`` and ``demo`` to the ``dialin`` app."""
    for command in (broker, replay, watch, serve, demo):
        app.command()(command)
