"""Where the worker's embedder runs: in processes of its own, or on a thread of the worker.

Why processes (the default, ``DIALIN_ENCODER_PROCESSES``): the worker's event loop, its
matcher and its discovery fits are threads of one Python process, and they share one
interpreter lock. Measured beside issue 17: while one other thread ran pure-Python code,
a one-thread MiniLM ``encode`` fell from 150 to 9.5 texts/s, because torch hands the
lock back at every operator and waits up to a switch interval (5 ms) to get it again;
in a 1,500-utterance burst the all-cores worker used one core of two while its encoder
was busy the whole time. In a process of its own the encoder has its own interpreter:
only the texts go there and the embeddings come back (a pickled ``float32`` array, about
1.5 KB per text for MiniLM).

Why more than one: torch's intra-op threads wait for each other at every operator, and
the worker's own threads take cores from them; two processes of one thread, each
embedding half of a large batch, wait for nobody (``bench/throughput.py`` measures both).
Each process holds a copy of the model.

Why a batch is cut by length, not in order: sentence-transformers sorts each call's texts
by length and pads every inner batch to its longest, so a call of many texts pads less
than a call of few (one thread, BANKING77 test: 227 texts/s in calls of 107 texts, 251 in
calls of 214); and the batch waits for its slowest part. So the batch's texts are sorted
by length, and each process gets one contiguous range of it, cut where the characters
(plus a per-text constant) are shared equally: as little padding as one call of the
whole batch, and parts of equal work. Measured beside issue 17 with two processes:
batches of 214 BANKING77 test texts, 424 texts/s against 400 with the batch cut in
order; the all-cores worker's 1,500-utterance burst of ``bench/throughput.py`` (two runs
of each, alternated), 387 and 361 utterances/s against 342 and 245.

The processes are started with ``spawn`` (a ``fork`` after torch, OpenMP or the Kafka
client started their threads can deadlock the child) and build nothing themselves: they
are given the worker's embedder before its first load (a sentence-transformers model is
loaded lazily, an ``lsa`` one is a few fitted arrays), load it as they start, and set
their threads with the factory's rules (:func:`~..factory.embedder_thread_setup`,
:func:`~..factory.encoder_batch_threads`). If a process dies (killed for memory, say),
the batch's try fails, the processes are started again, and the batch is tried again
(:meth:`.ingest.Ingestor.process`).

Library: :class:`concurrent.futures.ProcessPoolExecutor`.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol

import numpy as np

from dialin.models import Embedder

from . import metrics
from .child import start_child
from .. import factory
from ..settings import Settings

log = logging.getLogger(__name__)

#: What one text costs beside its characters, in characters, when a batch is cut into
#: parts of equal work (tokenising, the [CLS]/[SEP] tokens, pooling); 20 gave the most
#: even parts of 0, 20 and 60 on BANKING77 test.
TEXT_OVERHEAD_CHARS = 20


class Encoder(Protocol):
    """Embeds one batch at a time off the event loop."""

    async def encode(self, texts: list[str], *, timed: bool = True) -> np.ndarray:
        """The batch's embeddings (``float32``, one row per text); ``timed``: its seconds
        go to the embedding histogram (not the warm-up's)."""
        ...

    async def warm_up(self) -> None:
        """Load the model where it encodes, before the first batch."""
        ...


class ThreadEncoder:
    """The embedder on one thread of the worker (tests, and ``DIALIN_ENCODER_PROCESSES=0``).

    ``setup`` runs once on that thread before its first encode (how many cores it encodes
    with); ``batch_threads``, when given, is called there with each batch's size first
    (a small batch on one thread).
    """

    def __init__(self, embedder: Embedder, setup: Callable[[], object] | None = None,
                 batch_threads: Callable[[int], object] | None = None) -> None:
        self.embedder = embedder
        self.batch_threads = batch_threads
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="dialin-encode", initializer=setup)

    def _encode(self, texts: list[str], timed: bool) -> np.ndarray:
        started = time.perf_counter()
        X = _embed(self.embedder, self.batch_threads, texts)
        if timed:
            metrics.EMBED_SECONDS.observe(time.perf_counter() - started)
        return X

    async def encode(self, texts: list[str], *, timed: bool = True) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._encode,
                                                                texts, timed)

    async def warm_up(self) -> None:
        await self.encode(["warm-up"], timed=False)


def _embed(embedder: Embedder, batch_threads: Callable[[int], object] | None,
           texts: Sequence[str]) -> np.ndarray:
    """One batch (or part of one) on the encoder's thread, with the threads its size gets."""
    if batch_threads is not None:
        batch_threads(len(texts))
    return np.asarray(embedder.encode(list(texts)), dtype=np.float32)


# --- the encoder process's side ---------------------------------------------------------
_embedder: Embedder | None = None
_batch_threads: Callable[[int], object] | None = None


def _start(embedder: Embedder, settings: Settings) -> None:
    """Initializer of an encoder process: its threads, then the embedder it keeps, loaded
    here so that the first batch a process takes does not wait for the model."""
    global _embedder, _batch_threads
    start_child("encoder")
    factory.embedder_thread_setup(settings)()
    _batch_threads = factory.encoder_batch_threads(settings)
    embedder.encode(["warm-up"])
    _embedder = embedder


def _encode_there(texts: Sequence[str]) -> np.ndarray:
    """In an encoder process: the embeddings of a batch, or of a part of one."""
    assert _embedder is not None, "encoder process not started"
    return _embed(_embedder, _batch_threads, texts)


class ProcessEncoder:
    """The embedder in processes of its own (see the module docstring).

    With ``processes`` > 1 a batch of :data:`~..factory.SMALL_BATCH_TEXTS` texts or more
    is cut into that many parts of equal work by length (:meth:`_cut`), embedded side by
    side, each process on its share of the encoder's threads; a smaller batch goes to
    one process.
    """

    def __init__(self, embedder: Embedder, settings: Settings, processes: int = 1) -> None:
        self.embedder = embedder
        self.processes = max(1, processes)
        threads = max(1, factory.embedder_threads(settings) // self.processes)
        self.settings = settings.model_copy(update={"embed_threads": threads})
        self.restarts = 0
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start, initargs=(self.embedder, self.settings))

    def _cut(self, texts: list[str]) -> tuple[list[list[str]], np.ndarray | None]:
        """The batch's parts, one per process, and the order that puts the parts' rows
        back in the batch's order (None: one part, in order). Each part is a range of
        the batch sorted by length, of equal work (see the module docstring)."""
        if self.processes == 1 or len(texts) < factory.SMALL_BATCH_TEXTS:
            return [texts], None
        lengths = np.array([len(t) for t in texts])
        by_length = np.argsort(lengths, kind="stable")
        work = np.cumsum(lengths[by_length] + TEXT_OVERHEAD_CHARS)
        cuts = np.searchsorted(work, work[-1] * np.arange(1, self.processes) / self.processes)
        bounds = [0, *cuts.tolist(), len(texts)]
        parts = [[texts[i] for i in by_length[a:b]] for a, b in zip(bounds[:-1], bounds[1:])]
        return parts, np.argsort(by_length)

    async def warm_up(self) -> None:
        """Start every encoder process (each loads the model as it starts)."""
        await asyncio.gather(*(self.encode(["warm-up"], timed=False) for _ in range(self.processes)))

    async def encode(self, texts: list[str], *, timed: bool = True) -> np.ndarray:
        pool = self._pool
        started = time.perf_counter()
        try:
            cut, back = self._cut(texts)
            futures = [pool.submit(_encode_there, part) for part in cut]
            parts = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        except BrokenProcessPool:
            if pool is self._pool:  # the first batch to see it starts the next processes
                self.restarts += 1
                metrics.ENCODER_RESTARTS.inc()
                log.error("an encoder process died; starting the encoder again (restart %d)",
                          self.restarts)
                self._pool = self._new_pool()
                pool.shutdown(wait=False, cancel_futures=True)
            raise
        if timed:
            metrics.EMBED_SECONDS.observe(time.perf_counter() - started)
        return parts[0] if back is None else np.vstack(parts)[back]

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
