"""Continuous batching in the ingest agent (issue 17): an utterance is embedded as soon as
the embedder is free, batches grow with the load, the next batch is embedded while the
last one is published, and no input is acked before its outputs are.

Driven through the agent's ``test_context`` (no broker), with the LSA embedder or a
slow stand-in, so the whole file runs in a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import threading
import time

import numpy as np
import pytest

from dialin.models import CatalogIntent, Embedder, LSAEmbedder
from dialin.streams.settings import Settings

#: The fixed batch window the agent used before continuous batching (DIALIN_BATCH_SECONDS).
OLD_WINDOW_SECONDS = 0.5


@pytest.fixture(scope="module")
def lsa(english_sample) -> LSAEmbedder:
    return LSAEmbedder(n_components=64, random_state=0).fit(english_sample.texts)


class TimedPublisher:
    """Records when each record was sent; ``delay`` seconds per ``send_all`` (a slow broker);
    ``events`` lets it check that no event of the batch it publishes is acked yet."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.sent: dict[str, float] = {}
        self.spans: list[tuple[float, float]] = []
        self.events: dict[str, object] = {}
        self.acked_before_publish: list[str] = []

    async def send_all(self, records) -> None:
        started = time.perf_counter()
        records = list(records)
        for _, key, _ in records:
            uid = key.decode() if isinstance(key, bytes) else key
            if uid in self.events and self.events[uid].message.acked:
                self.acked_before_publish.append(uid)
        if self.delay:
            await asyncio.sleep(self.delay)
        now = time.perf_counter()
        for _, key, _ in records:
            self.sent.setdefault(key.decode() if isinstance(key, bytes) else key, now)
        self.spans.append((started, now))


class SlowEmbedder(Embedder):
    """Takes ``seconds`` per call whatever the batch size; records each call's span and size."""

    name = "slow"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls: list[tuple[float, float, int]] = []
        self._lock = threading.Lock()

    def encode(self, texts):
        started = time.perf_counter()
        time.sleep(self.seconds)
        with self._lock:
            self.calls.append((started, time.perf_counter(), len(texts)))
        return np.tile(np.asarray([[1.0, 0.0, 0.0, 0.0]], dtype=np.float32), (len(texts), 1))


def _event(i: int, text: str) -> bytes:
    return json.dumps({"call_id": f"c{i}", "utterance_id": f"u{i}", "turn": 0,
                       "role": "customer", "text": text}).encode()


def _worker(tmp_path, embedder, **overrides):
    from dialin.streams.service.worker import Worker

    settings = Settings(data_dir=str(tmp_path), app_id="t-latency", match_threshold=0.5,
                        encoder_processes=0, **overrides)  # the test's embedders record here
    return Worker(settings, embedder=embedder, make_estimator=lambda: None)


def test_one_utterance_at_low_load_is_assigned_well_under_the_old_batch_window(lsa, english_sample,
                                                                              tmp_path):
    """With default settings, utterances that arrive one at a time are each assigned at once.

    Under the old fixed window (take 256 or wait 0.5 s) each of these waited for the window
    to close: the median was ~0.5 s. Half of it is a generous bound on a loaded machine."""
    parts = _worker(tmp_path, lsa)
    text = english_sample.texts[0]
    parts.catalog.put(CatalogIntent(intent_id="intent-known", label="known", role="customer",
                                    centroid=lsa.encode([text])[0], size=5))
    publisher = TimedPublisher()
    parts.ingestor.publisher = publisher
    latencies: list[float] = []

    async def run() -> None:
        parts.catalog_ready.set()
        async with parts.app.agents["dialin-ingest"].test_context() as ctx:
            for i in range(7):
                produced = time.perf_counter()
                await ctx.put(_event(i, text), key=f"c{i}".encode(), wait=False)
                while f"u{i}" not in publisher.sent and time.perf_counter() - produced < 5:
                    await asyncio.sleep(0.002)
                latencies.append(publisher.sent.get(f"u{i}", float("inf")) - produced)

    asyncio.run(run())
    assert len(publisher.sent) == 7, publisher.sent
    assert statistics.median(latencies) < OLD_WINDOW_SECONDS / 2, latencies


def test_under_load_batches_grow_and_the_next_encode_overlaps_publishing(tmp_path):
    """A burst while the embedder is busy becomes one larger batch (not one call per
    utterance, nor a wait for a full batch); a batch is embedded while the one before it
    is being published; no event is acked before its outputs are sent, and all are acked."""
    embedder = SlowEmbedder(0.15)
    parts = _worker(tmp_path, embedder, batch_size=64)
    parts.catalog.put(CatalogIntent(intent_id="intent-known", label="known", role="customer",
                                    centroid=[1.0, 0.0, 0.0, 0.0], size=5))
    publisher = TimedPublisher(delay=0.3)
    parts.ingestor.publisher = publisher
    n = 40
    events = []

    async def run() -> None:
        parts.catalog_ready.set()
        async with parts.app.agents["dialin-ingest"].test_context() as ctx:
            for i in range(n):
                event = await ctx.put(_event(i, f"text {i}"), key=f"c{i}".encode(), wait=False)
                publisher.events[f"u{i}"] = event
                events.append(event)
                await asyncio.sleep(0.005)  # a 200/s burst: far above 1 / 0.15 s per call
            deadline = time.perf_counter() + 20
            while not all(e.message.acked for e in events) and time.perf_counter() < deadline:
                await asyncio.sleep(0.01)

    asyncio.run(run())
    sizes = [size for _, _, size in embedder.calls]
    assert sum(sizes) == n and sorted(publisher.sent) == sorted(f"u{i}" for i in range(n))
    assert len(sizes) <= n // 4 and max(sizes) >= 8, sizes  # batches grew by themselves
    assert any(e_start < p_end and p_start < e_end
               for e_start, e_end, _ in embedder.calls[1:] for p_start, p_end in publisher.spans), \
        (embedder.calls, publisher.spans)  # an encode ran while a batch was being published
    assert not publisher.acked_before_publish
    assert all(e.message.acked for e in events)


# --- threads ---------------------------------------------------------------------------

@pytest.mark.parametrize("cpu_max, cores", [("max 100000\n", None), ("150000 100000\n", 2),
                                            ("50000 100000\n", 1), (None, None)])
def test_the_encoder_uses_every_core_it_may_run_on_unless_capped(tmp_path, cpu_max, cores):
    from dialin.streams.factory import embedder_threads

    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max)
    mine = len(os.sched_getaffinity(0))
    assert embedder_threads(Settings(), cpu_max=path) == min(mine, cores or mine)
    assert embedder_threads(Settings(embed_threads=3), cpu_max=path) == 3  # the setting caps


def _on_a_thread(torch, body) -> None:
    """Run ``body`` on a new thread, as the encoder's; restore torch's thread count after."""
    before = torch.get_num_threads()
    try:
        thread = threading.Thread(target=body)
        thread.start()
        thread.join()
    finally:
        torch.set_num_threads(before)


def test_the_encoder_thread_encodes_with_the_configured_torch_threads(monkeypatch):
    """OMP_NUM_THREADS=1 (what the engine's fits want) does not hold the encoder to one
    core: its thread runs torch with DIALIN_EMBED_THREADS threads, and waits passively."""
    torch = pytest.importorskip("torch")
    from dialin.streams.factory import embedder_thread_setup

    monkeypatch.setenv("OMP_WAIT_POLICY", "unset")
    monkeypatch.delenv("OMP_WAIT_POLICY")
    seen: dict[str, int] = {}

    def encoder_thread() -> None:
        seen["setup"] = embedder_thread_setup(Settings(embedder="minilm", embed_threads=3))()
        seen["torch"] = torch.get_num_threads()

    _on_a_thread(torch, encoder_thread)
    assert seen == {"setup": 3, "torch": 3}
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_a_small_batch_is_encoded_on_one_thread_and_a_large_one_on_all():
    """Intra-op threads wait for each other at every operator: a lone utterance took about
    590 ms on two threads in the loaded worker and 50 ms on one, so batches under
    SMALL_BATCH_TEXTS go to one thread and only larger ones use every core."""
    torch = pytest.importorskip("torch")
    from dialin.streams.factory import SMALL_BATCH_TEXTS, encoder_batch_threads

    seen: list[tuple[int, int]] = []

    def encoder_thread() -> None:
        for_batch = encoder_batch_threads(Settings(embedder="minilm", embed_threads=3))
        for size in (1, SMALL_BATCH_TEXTS - 1, SMALL_BATCH_TEXTS, 256, 2):
            seen.append((for_batch(size), torch.get_num_threads()))

    _on_a_thread(torch, encoder_thread)
    assert seen == [(1, 1), (1, 1), (3, 3), (3, 3), (1, 1)]
