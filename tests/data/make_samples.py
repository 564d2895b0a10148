"""Rebuild the small test samples from the shared data sets (run once, by hand).

Usage: python tests/data/make_samples.py /work/shared/data
Deterministic: the same inputs give byte-identical files.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def banking77(src: Path, n_intents: int = 20, per_intent: int = 30, seed: int = 0) -> None:
    with open(src / "banking77" / "test.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    rng = np.random.default_rng(seed)
    cats = sorted({r["category"] for r in rows})
    chosen = sorted(rng.choice(cats, size=n_intents, replace=False).tolist())
    out = []
    for cat in chosen:
        idx = [i for i, r in enumerate(rows) if r["category"] == cat]
        keep = sorted(rng.choice(idx, size=min(per_intent, len(idx)), replace=False).tolist())
        out.extend(rows[i] for i in keep)
    with open(HERE / "banking77_sample.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["text", "category"], lineterminator="\n")
        w.writeheader()
        w.writerows(out)


def crosswoz(src: Path, target: int = 600, seed: int = 0) -> None:
    with open(src / "crosswoz" / "val.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    calls: dict[str, list[dict]] = {}
    for r in rows:
        calls.setdefault(r["call_id"], []).append(r)
    order = np.random.default_rng(seed).permutation(sorted(calls))
    out: list[dict] = []
    for cid in order:
        if len(out) >= target:
            break
        out.extend(sorted(calls[cid], key=lambda r: r["turn"]))
    with open(HERE / "crosswoz_sample.jsonl", "w", encoding="utf-8") as f:
        for r in out:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    banking77(root)
    crosswoz(root)
