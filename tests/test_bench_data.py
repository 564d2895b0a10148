"""bench/_data.py: the one tuning / held-out split every benchmark script uses."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"


def bench_data():
    spec = importlib.util.spec_from_file_location("bench_data", ROOT / "bench" / "_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_crosswoz_halves_split_by_call_cover_every_row_and_repeat(tmp_path):
    data = bench_data()
    (tmp_path / "crosswoz").mkdir()
    shutil.copy(DATA / "crosswoz_sample.jsonl", tmp_path / "crosswoz" / "val.jsonl")
    whole = data.crosswoz(tmp_path)
    tune, held = data.crosswoz(tmp_path, "tune"), data.crosswoz(tmp_path, "held-out")
    assert len(tune[0]) + len(held[0]) == len(whole[0]) and len(tune[0]) and len(held[0])
    assert sorted(tune[0] + held[0]) == sorted(whole[0])
    assert data.crosswoz(tmp_path, "tune")[0] == tune[0]  # the same halves on every run
    calls = [f"call-{i // 3}" for i in range(60)]
    a, b = data.crosswoz_halves(calls)
    assert not {calls[i] for i in a} & {calls[i] for i in b}  # no call on both sides
    assert sorted(np.concatenate([a, b]).tolist()) == list(range(60)) and len(a) == 30


def test_every_tuning_subset_exists():
    data = bench_data()
    y = np.repeat([f"intent-{i}" for i in range(77)], 40)
    names = [name for name, _ in data.train_subsets(y)]
    assert set(data.TUNING_SUBSETS) <= set(names)
