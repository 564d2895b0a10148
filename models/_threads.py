"""Run the engine's numeric work on one thread per process (threadpoolctl).

The engine makes thousands of small BLAS and FAISS calls (k-means seeding, Ward,
nearest-neighbour searches, a classifier per fit). Thread pools buy nothing at that
size and cost a great deal when the machine is busy: OpenMP and OpenBLAS workers
spin-wait for cores they do not get. Measured on the 2-core machine with other jobs
running: one budget fit on BANKING77 took 70 s with the default pools and 8 s limited
to one thread. Parallelism comes from more workers (Kafka partitions) instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

from threadpoolctl import threadpool_limits

F = TypeVar("F", bound=Callable)


def single_threaded(func: F) -> F:
    """Decorator: run ``func`` with BLAS and OpenMP pools limited to one thread."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with threadpool_limits(limits=1):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
