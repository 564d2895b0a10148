"""Where the leader's discovery fits run: in a process of its own, or on the fit's thread.

Why a process (the default for the offline judge and namer, ``DIALIN_DISCOVERY_PROCESS``):
a discovery fit is minutes of CPU in numpy, scikit-learn, FAISS and the engine's own
Python, and on a thread of the worker it shares the worker's interpreter lock with the
event loop that consumes, matches and publishes. Measured beside issue 17 with py-spy
(``--gil``) on a worker paced at 50 utterances/s: a fit held the lock in 35% of the samples
that anything held it, and the p99 from produce to assignment at that pace ranged from
124 ms to 2.7 s between runs of the same code (``bench/throughput.py``). In a process of its own the fit has its own
interpreter; the estimator (parameters only, not fitted) and the rows go there and the
fitted estimator comes back (pickled: its intents, and its judge prepared on the rows,
which a consolidation asks union questions after the fit).

Why at a lower priority (``nice`` +:data:`FIT_NICENESS`): on a machine with few cores the
fit competes with the encoder processes for CPU as well; ingestion is what must keep up
(a consolidation already waits while the consumer lag is high), so the fit takes the
cores the traffic leaves, and takes longer under load.

Only fits whose judge and namer run locally go there (the heuristic judge and the keyword
namer, :func:`~..factory.fits_in_process`): an LLM judge or namer talks to a server
through the worker's client, spend cap, response log and metrics, which live in the
worker, and waits on the network most of its time; its fit stays on the thread.

A process that dies (killed for memory, say) fails its run, which the discovery loop
counts and retries (``dialin_discovery_runs{result="failed"}``); the next fit starts a new
process. The process exits when the worker does (:mod:`.child`).

Library: :class:`concurrent.futures.ProcessPoolExecutor` (spawn).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

import numpy as np

from .child import start_child

log = logging.getLogger(__name__)

#: How much lower the fit process's CPU priority is than the worker's (``os.nice``).
FIT_NICENESS = 10


class Fitter(Protocol):
    """Fits one discovery estimator; called on the discovery run's thread, blocks until done."""

    def fit(self, estimator: Any, X: np.ndarray, texts: list[str], **fit_params: Any) -> Any:
        """``estimator`` fitted on ``X`` and ``texts`` (the same object, or a fitted copy);
        ``fit_params`` go to its ``fit`` (a consolidation's ``prior_labels``)."""
        ...


class ThreadFitter:
    """The fit on the discovery run's own thread (LLM backends, tests,
    ``DIALIN_DISCOVERY_PROCESS=false``)."""

    def fit(self, estimator: Any, X: np.ndarray, texts: list[str], **fit_params: Any) -> Any:
        return estimator.fit(X, texts=texts, **fit_params)


def _start(niceness: int) -> None:
    """Initializer of the fit process."""
    start_child("fit")
    os.nice(niceness)


def _fit_there(estimator: Any, X: np.ndarray, texts: list[str], fit_params: dict) -> Any:
    """In the fit process: the fitted estimator, pickled back to the worker."""
    return estimator.fit(X, texts=texts, **fit_params)


class ProcessFitter:
    """The fit in a process of its own, at a lower CPU priority (see the module docstring)."""

    def __init__(self, niceness: int = FIT_NICENESS) -> None:
        self.niceness = niceness
        self.restarts = 0
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start, initargs=(self.niceness,))

    def fit(self, estimator: Any, X: np.ndarray, texts: list[str], **fit_params: Any) -> Any:
        pool = self._pool
        try:
            return pool.submit(_fit_there, estimator, X, list(texts), fit_params).result()
        except BrokenProcessPool:
            if pool is self._pool:
                self.restarts += 1
                log.error("the discovery fit process died; the next fit starts another "
                          "(restart %d)", self.restarts)
                self._pool = self._new_pool()
                pool.shutdown(wait=False, cancel_futures=True)
            raise

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
