"""Run the engine's numeric work on one thread per process (threadpoolctl).

The engine makes thousands of small BLAS and FAISS calls (k-means seeding, Ward,
nearest-neighbour searches, a classifier per fit). Thread pools buy nothing at that
size and cost a great deal when the machine is busy: OpenMP and OpenBLAS workers
spin-wait for cores they do not get. Measured on the 2-core machine with other jobs
running: one budget fit on BANKING77 took 70 s with the default pools and 8 s limited
to one thread. Parallelism comes from more workers (Kafka partitions) instead.

The streaming worker's encoder is the exception: one large forward pass per batch, on
its own thread, with every core the process may use (``DIALIN_EMBED_THREADS``, set by
``dialin.streams.factory.embedder_thread_setup`` with passive OpenMP waits, so idle
threads yield their core instead of spinning on it). An OpenMP limit holds for the
thread that sets it, so a fit on another thread stays single-threaded beside it.
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
