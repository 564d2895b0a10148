"""bench/stream_keepup.py: the service's own parts, driven in one process with a loopback for
the broker, decide every utterance once (assigned, or still buffered, none lost), publish
intents a subscriber can follow, and give the same figures when run again."""

from __future__ import annotations

import asyncio

from conftest import shuffled


def test_the_in_process_service_decides_every_utterance_once_and_repeats_itself(
        bench_module, english_sample):
    keepup = bench_module("stream_keepup")
    texts = shuffled(english_sample.texts, 400, 0)
    first = asyncio.run(keepup.run_service(texts, chunk=100))
    assert first["lost"] == 0
    held = [intent for intent in first["final"] if intent is not None]
    assert len(held) >= 0.9 * len(texts)  # the rest is still buffered, not lost
    assert set(held) <= set(first["names"])  # every intent held was published on intent-updates
    assert len(set(held)) >= 5 and first["runs"][0] >= 2 and first["runs"][1] >= 1
    again = asyncio.run(keepup.run_service(texts, chunk=100))
    assert again["final"] == first["final"] and again["names"] == first["names"]


def test_the_growth_study_reaches_the_service_through_its_settings(bench_module, english_sample,
                                                                  monkeypatch):
    """``--growth`` sets ``DIALIN_CONSOLIDATION_GROWTH`` for the service it measures: a larger
    value re-fits the memory fewer times."""
    keepup = bench_module("stream_keepup")
    texts = shuffled(english_sample.texts, 400, 0)
    shipped = asyncio.run(keepup.run_service(texts, chunk=50))
    monkeypatch.setenv("DIALIN_CONSOLIDATION_GROWTH", "4.0")
    rare = asyncio.run(keepup.run_service(texts, chunk=50))
    assert rare["runs"][1] < shipped["runs"][1], (rare["runs"], shipped["runs"])
    assert rare["lost"] == 0


def test_the_split_check_study_reaches_the_service_through_its_settings(
        bench_module, english_sample, monkeypatch):
    """``--split-check`` sets ``DIALIN_CONSOLIDATION_SPLIT_CHECK`` for the service it
    measures: on, every consolidation asks about the splits its re-fit makes; off (and
    ``auto`` with the shipped offline judge), none does."""
    keepup = bench_module("stream_keepup")
    texts = shuffled(english_sample.texts, 400, 0)
    checked = []
    real = keepup.Discovery._whole_unless_split

    def spy(self, *args):
        checked.append(True)
        return real(self, *args)

    monkeypatch.setattr(keepup.Discovery, "_whole_unless_split", spy)
    for mode, asks in (("auto", False), ("off", False), ("on", True)):
        checked.clear()
        monkeypatch.setenv("DIALIN_CONSOLIDATION_SPLIT_CHECK", mode)
        run = asyncio.run(keepup.run_service(texts, chunk=100))
        assert run["lost"] == 0 and run["runs"][1] >= 1
        assert bool(checked) is asks, (mode, len(checked))
