"""Fixtures and helpers for tests on the real embedded broker and real worker processes.

Its fixtures (``broker``, ``kafka_settings``, ``workers``) are registered for every test
by ``pytest_plugins`` in ``conftest.py``; import the helpers (``wait_for``, ...) by
name. One broker per test module
(starting one takes well under a second); each test gets its own topic names and
app id, so tests in a module never see each other's records or consumer groups.
Synchronisation is always "wait until a condition holds, with a deadline", never a
fixed sleep.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

import pytest

from dialin.streams.tools.broker import EmbeddedBroker, free_port
from dialin.streams.settings import Settings
from dialin.streams.tools.supervise import WorkerProcess
from dialin.streams.tools.watch import Record, read_topic

__all__ = ["WorkerFactory", "broker", "kafka_settings", "read_topic", "records_of", "settings_env",
           "wait_for", "workers"]

T = TypeVar("T")

#: Settings the harness passes to workers as ``DIALIN_*`` variables.
_ENV_FIELDS = ("kafka_bootstrap", "app_id", "topic_utterances", "topic_assignments",
               "topic_updates", "topic_dlq", "topic_buffer", "topic_catalog", "topic_memory",
               "topic_partitions")


def wait_for(condition: Callable[[], T], timeout: float = 120.0, interval: float = 0.5,
             message: str = "condition") -> T:
    """Poll ``condition`` until it returns something truthy (returned); fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {message}")
        time.sleep(interval)


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``DIALIN_*`` variables that give a worker the same topics and broker."""
    return {f"DIALIN_{name.upper()}": str(getattr(settings, name)) for name in _ENV_FIELDS}


def records_of(settings: Settings, topic: str) -> list[Record]:
    """Every record of ``topic`` now (all partitions); [] when the topic does not exist."""
    return read_topic(settings, topic)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """An embedded broker on a free port for the whole test module."""
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    with EmbeddedBroker(free_port(), log_path=log) as embedded:
        yield embedded


@pytest.fixture
def kafka_settings(broker: EmbeddedBroker, tmp_path: Path) -> Settings:
    """Settings for this test: the module's broker, fresh topic names, app id and data dir."""
    tag = uuid.uuid4().hex[:8]
    return Settings(
        kafka_bootstrap=broker.bootstrap, kafka_security_protocol="PLAINTEXT", app_id=f"t-{tag}",
        topic_utterances=f"utt-{tag}", topic_assignments=f"asg-{tag}", topic_updates=f"upd-{tag}",
        topic_dlq=f"dlq-{tag}", topic_buffer=f"buf-{tag}", topic_catalog=f"cat-{tag}",
        topic_memory=f"mem-{tag}",
        data_dir=str(tmp_path / "data"))


class WorkerFactory:
    """Starts ``dialin serve`` children for one test and cleans up every one of them."""

    def __init__(self, settings: Settings, tmp_path: Path) -> None:
        self.settings = settings
        self.tmp_path = tmp_path
        self.started: list[WorkerProcess] = []

    def start(self, env: Mapping[str, str] | None = None, *, data_dir: str | Path | None = None,
              ready_timeout: float = 180.0) -> WorkerProcess:
        """A ready worker on this test's broker and topics; ``env`` adds or overrides variables."""
        n = len(self.started)
        worker_env = {**settings_env(self.settings),
                      "DIALIN_DATA_DIR": str(data_dir or self.tmp_path / f"worker-{n}"), **(env or {})}
        worker = WorkerProcess(worker_env, metrics_port=free_port(),
                               log_path=self.tmp_path / f"worker-{n}.log")
        self.started.append(worker)
        return worker.start().wait_ready(ready_timeout)

    def close(self) -> None:
        for worker in self.started:
            worker.kill()


@pytest.fixture
def workers(kafka_settings: Settings, tmp_path: Path) -> Iterator[WorkerFactory]:
    """``workers.start(env)`` starts a worker; all are SIGKILLed when the test ends."""
    factory = WorkerFactory(kafka_settings, tmp_path)
    yield factory
    factory.close()
