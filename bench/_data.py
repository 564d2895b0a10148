"""The benchmark data sets and the one tuning / held-out split every bench script uses.

Defaults of the engine are chosen on **tuning** data only (``python bench/quality.py
--only tune``): subsets of BANKING77 *train* (:func:`train_subsets`, those named in
:data:`TUNING_SUBSETS`) and one half of CrossWOZ val. Figures reported as **held out**
come from BANKING77 *test* and the other CrossWOZ half. The CrossWOZ halves are split
by ``call_id`` (no dialogue has utterances on both sides), with a fixed seed, so every
script that imports :func:`crosswoz` gets the same halves.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: Seeds the CrossWOZ call split; changing it changes what is held out.
SPLIT_SEED = 0
#: The two CrossWOZ halves.
HALVES = ("tune", "held-out")
#: Subsets of BANKING77 train (names from :func:`train_subsets`) the defaults are tuned on:
#: density like BANKING77 test, sparser, and dense.
TUNING_SUBSETS = ("3,000 random utterances, 77 intents", "30 utterances of each of 77 intents",
                  "all utterances of 20 intents")


def banking77(data: Path, split: str = "test") -> tuple[list[str], np.ndarray]:
    """Texts and gold intents of BANKING77 ``split`` (test: held out; train: tuning)."""
    with open(data / "banking77" / f"{split}.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], np.array([r["category"] for r in rows])


def train_subsets(y: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Row subsets of BANKING77 train that vary size and density (fixed draw, seed 123)."""
    rng = np.random.default_rng(123)
    perm = rng.permutation(len(y))
    intents = rng.permutation(np.unique(y))
    per30 = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:30] for c in np.unique(y)])
    return [
        ("3,000 random utterances, 77 intents", np.sort(perm[:3000])),
        ("30 utterances of each of 77 intents", np.sort(per30)),
        ("6,000 random utterances, 77 intents", np.sort(perm[:6000])),
        (f"all {len(y):,}, 77 intents", np.arange(len(y))),
        ("all utterances of 40 intents", np.flatnonzero(np.isin(y, intents[:40]))),
        ("all utterances of 20 intents", np.flatnonzero(np.isin(y, intents[40:60]))),
    ]


def crosswoz_halves(call_ids: Sequence[str], seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the tuning half and the held-out half: the sorted distinct calls,
    shuffled with ``seed``, the first half of them tuning."""
    calls = np.array(sorted(set(call_ids)))
    tuning = set(np.random.default_rng(seed).permutation(calls)[: len(calls) // 2])
    in_tuning = np.array([c in tuning for c in call_ids], dtype=bool)
    return np.flatnonzero(in_tuning), np.flatnonzero(~in_tuning)


def crosswoz(data: Path, half: str | None = None) -> tuple[list[str], np.ndarray, list[str]]:
    """Texts, gold intents (Act-Domain-Slot) and roles of the CrossWOZ val utterances that
    carry exactly one dialogue act; ``half`` ("tune" or "held-out") keeps one half."""
    if half is not None and half not in HALVES:
        raise ValueError(f"half must be one of {HALVES} or None, got {half!r}")
    texts, labels, roles, calls = [], [], [], []
    with open(data / "crosswoz" / "val.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row.get("intent"):
                texts.append(row["text"])
                labels.append(row["intent"])
                roles.append(row["role"])
                calls.append(row["call_id"])
    if half is not None:
        rows = crosswoz_halves(calls)[HALVES.index(half)]
        texts, labels, roles = [texts[i] for i in rows], [labels[i] for i in rows], [roles[i] for i in rows]
    return texts, np.array(labels), roles


def crosswoz_all(data: Path) -> tuple[list[str], np.ndarray]:
    """Every CrossWOZ val utterance in file order (8,458), as a scale test sends them: its
    gold intent, or for a turn of several dialogue acts ``multi:`` and its first act."""
    texts, labels = [], []
    with open(data / "crosswoz" / "val.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            texts.append(row["text"])
            first = "-".join(str(p) for p in row["acts"][0]) if row.get("acts") else "none"
            labels.append(row["intent"] or f"multi:{first}")
    return texts, np.array(labels)
