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

Setting a limit is not free: ``threadpool_limits`` scans every loaded library in Python
each time it is made. With torch loaded (the worker's PII redactor imports it) that was
3.0 ms per call, against 0.03 ms for one reused :class:`threadpoolctl.ThreadpoolController`,
and a fit calls :func:`cluster` hundreds of times: 12% of the GIL a discovery fit held in
the worker, time the worker's event loop waited for (issue 17). So the controller is
made once and made again only when new modules were imported since (a new module is how
a new native library arrives), and a call already inside a limit on this thread does
not set it again.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

from threadpoolctl import ThreadpoolController

F = TypeVar("F", bound=Callable)

_state = threading.local()  # .depth: single_threaded calls running on this thread
_lock = threading.Lock()
_controller: ThreadpoolController | None = None
_modules_seen = -1  # len(sys.modules) when _controller was made


def controller() -> ThreadpoolController:
    """The process's thread-pool controller, made again when modules were imported since."""
    global _controller, _modules_seen
    with _lock:
        if _controller is None or len(sys.modules) != _modules_seen:
            _modules_seen = len(sys.modules)
            _controller = ThreadpoolController()
        return _controller


def single_threaded(func: F) -> F:
    """Decorator: run ``func`` with BLAS and OpenMP pools limited to one thread."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        depth = getattr(_state, "depth", 0)
        if depth:  # an outer call on this thread holds the limit already
            return func(*args, **kwargs)
        _state.depth = 1
        try:
            with controller().limit(limits=1):
                return func(*args, **kwargs)
        finally:
            _state.depth = 0

    return wrapper  # type: ignore[return-value]
