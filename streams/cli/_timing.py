"""Stage clocks for ``dialin discover --timings`` (kept apart so the CLI imports the
engine only when a command runs)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from dialin.models import ClusterView, Namer


class TimedNamer(Namer):
    """The namer the estimator sees: the same namer, with the seconds it took counted.

    Naming runs inside ``fit`` (every strategy ends with it); this is how ``--timings``
    tells clustering from naming without the engine keeping a clock for the CLI.
    """

    def __init__(self, namer: Namer) -> None:
        self.namer = namer
        self.backend = namer.backend
        self.seconds = 0.0

    def prepare(self, X: np.ndarray, texts: Sequence[str]) -> None:
        started = time.perf_counter()
        self.namer.prepare(X, texts)
        self.seconds += time.perf_counter() - started

    def name(self, views: Sequence[ClusterView]) -> list[str]:
        started = time.perf_counter()
        try:
            return self.namer.name(views)
        finally:
            self.seconds += time.perf_counter() - started


class Stages:
    """Seconds per stage of one command, for ``--timings``: each ``done(stage)`` closes
    the interval since the last one; ``done(stage, part=seconds)`` books ``seconds`` of
    that interval as their own stage ``part`` (naming happens inside clustering)."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def done(self, stage: str, **carve: float) -> None:
        now = time.perf_counter()
        self.seconds[stage] = now - self.last - sum(carve.values())
        self.seconds.update(carve)
        self.last = now

    def as_dict(self) -> dict[str, float]:
        return {**{k: round(v, 3) for k, v in self.seconds.items()},
                "total": round(self.last - self.started, 3)}
