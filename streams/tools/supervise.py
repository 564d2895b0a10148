"""Run ``dialin serve`` as a child process and read its metrics: for the demo, the
end-to-end tests and the benchmark.

Why a real process and not the worker in-process: the tests must SIGKILL it mid-stream
and start another one, and the demo must not share an event loop or a metrics
registry with its own Kafka clients. Readiness is the worker's own ``/readyz`` on its
metrics port; its Prometheus text is parsed with prometheus-client's parser. The
worker is SIGKILLed if the process that started it dies (:mod:`.children`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from .children import die_with_parent

#: The worker command: the installed package's CLI, independent of PATH.
SERVE_COMMAND = (sys.executable, "-c", "from dialin.streams.cli import main; main()", "serve")

Samples = dict[tuple[str, frozenset], float]


class WorkerError(RuntimeError):
    """The worker exited or never became ready; the message ends with its last log line."""


def scrape(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> Samples:
    """Every sample of the worker's ``/metrics``, keyed by (name, labels); {} if unreachable."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as resp:
            text = resp.read().decode("utf-8")
    except (OSError, urllib.error.URLError):
        return {}
    return {(s.name, frozenset(s.labels.items())): float(s.value)
            for family in text_string_to_metric_families(text) for s in family.samples}


def metric(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= lab)


class WorkerProcess:
    """One ``dialin serve`` child with ``env`` added to this process's environment.

    ``metrics_port`` is passed as ``DIALIN_METRICS_PORT``; output goes to ``log_path``.
    """

    def __init__(self, env: Mapping[str, str], *, metrics_port: int, log_path: str | Path,
                 command: Sequence[str] = SERVE_COMMAND) -> None:
        self.env = dict(env)
        self.metrics_port = metrics_port
        self.log_path = Path(log_path)
        self.command = tuple(command)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self) -> WorkerProcess:
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
               "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **self.env,
               "DIALIN_METRICS_PORT": str(self.metrics_port)}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self._proc = subprocess.Popen(self.command, env=env, stdin=subprocess.DEVNULL,
                                      stdout=self._log, stderr=subprocess.STDOUT,
                                      preexec_fn=die_with_parent())
        return self

    def ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/readyz"
            with urllib.request.urlopen(url, timeout=2.0) as resp:
                return resp.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def wait_ready(self, timeout: float = 180.0,
                   checkpoint: Callable[[], None] | None = None) -> WorkerProcess:
        """Return once ``/readyz`` answers 200; raise :class:`WorkerError` if it exits first.

        ``checkpoint`` is called on every poll; what it raises ends the wait (a stop request).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if checkpoint is not None:
                checkpoint()
            if not self.alive:
                raise WorkerError(f"worker exited with code {self.returncode} before it was ready: "
                                  f"{self.log_tail(1)}")
            if self.ready():
                return self
            time.sleep(0.3)
        raise WorkerError(f"worker not ready after {timeout:.0f}s: {self.log_tail(1)}")

    def metrics(self) -> Samples:
        return scrape(self.metrics_port)

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text("utf-8", "replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (graceful drain), SIGKILL after ``timeout``; the exit code."""
        if self.alive:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        return self._close()

    def kill(self) -> int | None:
        """SIGKILL, no drain: what a crash or an OOM kill does."""
        if self.alive:
            self._proc.kill()
            self._proc.wait()
        return self._close()

    def _close(self) -> int | None:
        code = self.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code
