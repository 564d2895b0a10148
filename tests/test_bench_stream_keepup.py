"""bench/stream_keepup.py: the service's own parts, driven in one process with a loopback for
the broker, decide every utterance once (assigned, or still buffered, none lost), publish
intents a subscriber can follow, and give the same figures when run again."""

from __future__ import annotations

import argparse
import asyncio
import os

import numpy as np
import pytest

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


def test_env_overrides_reach_the_service_only_and_write_a_section_of_their_own(
        bench_module, english_sample, monkeypatch):
    """``--env`` measures a configuration beside the shipped one: the service runs with the
    overridden settings, batch (issue 12's yardstick) with the shipped ones, and the section
    it writes is not the shipped section."""
    keepup = bench_module("stream_keepup")
    texts, gold = english_sample.texts[:200], english_sample.labels[:200]
    monkeypatch.setattr(keepup, "make_set", lambda name, data, order: (texts, gold, []))
    seen = {}

    async def service(texts_, chunk):
        seen["service"] = {k: os.environ.get(k) for k in ("DIALIN_JUDGE_BUDGET",
                                                          "DIALIN_CONSOLIDATION_WARM_START")}
        held = ["i0"] * len(texts_)
        return {"final": held, "at_end": held, "names": {"i0": "inquire-card"},
                "runs_during": (1, 0), "runs": (1, 0), "reassigned": 0.0, "records": 1.0,
                "renames": 0, "lost": 0, "seconds": 0.0}

    def batch(texts_, tmp, env):
        seen["batch"] = {**os.environ, **env}  # what `dialin discover` runs with
        return np.zeros(len(texts_), dtype=int), {0: "inquire-card"}

    monkeypatch.setattr(keepup, "run_service", service)
    monkeypatch.setattr(keepup, "run_batch", batch)
    monkeypatch.delenv("DIALIN_JUDGE_BUDGET", raising=False)
    args = argparse.Namespace(data=None, judge="shipped", chunk=100, sets=["test"],
                              env=["DIALIN_JUDGE_BUDGET=0.5", "dialin_consolidation_warm_start=true"])
    keepup.measure("test", 0, args, batch=True)
    assert seen["service"] == {"DIALIN_JUDGE_BUDGET": "0.5", "DIALIN_CONSOLIDATION_WARM_START": "true"}
    assert "DIALIN_JUDGE_BUDGET" not in seen["batch"] and "DIALIN_JUDGE_BUDGET" not in os.environ
    assert keepup._section_name(keepup.SECTION, args) == (
        "stream-keepup-judge-budget-0.5-consolidation-warm-start-true")
    args.env = []
    assert keepup._section_name(keepup.SECTION, args) == "stream-keepup"


def test_env_overrides_that_name_no_setting_or_a_bad_value_stop_the_bench(bench_module):
    quality = bench_module("stream_quality")
    assert quality.overrides(["DIALIN_JUDGE_BUDGET=0.5"]) == {"DIALIN_JUDGE_BUDGET": "0.5"}
    for pair, says in (("DIALIN_NO_SUCH_SETTING=1", "naming a setting"),
                       ("JUDGE_BUDGET=0.5", "naming a setting"),
                       ("DIALIN_JUDGE_BUDGET", "naming a setting"),
                       ("DIALIN_JUDGE_BUDGET=-1", "greater than 0"),
                       ("DIALIN_CONSOLIDATION_WARM_START=maybe", "valid boolean")):
        with pytest.raises(SystemExit) as stop:
            quality.overrides([pair])
        assert says in str(stop.value), (pair, stop.value)
    # the replay's section too: a run with overrides never rewrites the shipped defaults' one
    replay = argparse.Namespace(judge=quality.SIMULATED, env=["DIALIN_JUDGE_BUDGET=0.5"])
    assert quality.section_name(replay) == quality.SECTION_SIMULATED + "-judge-budget-0.5"
    replay.env = []
    assert quality.section_name(replay) == quality.SECTION_SIMULATED
