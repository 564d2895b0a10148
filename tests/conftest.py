"""Shared fixtures: small real samples of the two benchmark data sets (see tests/data/README.md)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings as hypothesis_settings

DATA = Path(__file__).resolve().parent / "data"

#: Fixtures of the real parts: the embedded Kafka broker and workers (``kafka_harness``)
#: and the OpenAI-compatible test server (``openai_server``). Their helpers (``wait_for``,
#: ``task_of``, ...) are imported by name where used.
pytest_plugins = ("kafka_harness", "openai_server")

#: CI tests a fresh clone with no Hypothesis example database, so fuzz tests draw from a
#: fixed seed per test there and a run can be reproduced; `pytest --hypothesis-profile=
#: explore` searches new inputs (what found the cases kept as @example in test_fuzz.py).
hypothesis_settings.register_profile("ci", derandomize=True)
hypothesis_settings.register_profile("explore", derandomize=False)
hypothesis_settings.load_profile("ci")


@dataclass(frozen=True)
class Sample:
    """Texts with their gold labels (and roles for dialogues)."""

    texts: list[str]
    labels: list[str]
    roles: list[str] | None = None


def shuffled(texts: list[str], n: int, seed: int) -> list[str]:
    """``n`` of ``texts`` in a seeded random order: a small stream for the service's parts."""
    return [texts[i] for i in np.random.default_rng(seed).permutation(len(texts))[:n]]


@pytest.fixture(scope="session")
def english_sample() -> Sample:
    """600 BANKING77 test utterances, 20 intents x 30."""
    with open(DATA / "banking77_sample.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return Sample([r["text"] for r in rows], [r["category"] for r in rows])


@pytest.fixture(scope="session")
def chinese_sample() -> Sample:
    """~600 CrossWOZ val utterances of whole dialogues; label = dialogue act intent or 'none'."""
    with open(DATA / "crosswoz_sample.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return Sample([r["text"] for r in rows], [r["intent"] or "none" for r in rows], [r["role"] for r in rows])


@pytest.fixture(scope="session")
def english_lsa(english_sample):
    """LSA embeddings of the English sample: fast, deterministic, no model download."""
    from dialin.models import LSAEmbedder

    emb = LSAEmbedder(n_components=128).fit(english_sample.texts)
    return emb.encode(english_sample.texts)


@pytest.fixture(scope="session")
def bench_module():
    """Imports a module of ``bench/`` by name (``bench_module("heuristic_limits")``), with
    ``bench/`` on the path only while it loads, so its own imports (``_data``, ...) resolve."""
    import importlib
    import sys

    folder = str(DATA.parents[1] / "bench")

    def load(name: str):
        sys.path.insert(0, folder)
        try:
            return importlib.import_module(name)
        finally:
            sys.path.remove(folder)

    return load


@pytest.fixture
def clean_settings(monkeypatch):
    """No DIALIN_* variable of the machine leaks into a test; settings are re-read."""
    import os

    from dialin.streams.settings import get_settings

    for key in list(os.environ):
        if key.startswith("DIALIN_"):
            monkeypatch.delenv(key)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
