"""Rebuild the demo's bundled sample ``streams/samples/demo.jsonl`` (run once, by hand).

Usage: python bench/make_demo_sample.py /work/shared/data [--heldout OUT.jsonl]

Why a mix: the demo must show both languages, both roles and what happens to bad
input. The sample holds English BANKING77 *train* utterances as single-turn customer
calls, whole CrossWOZ dialogues from the *first half* of the validation split (so the
second half stays held out for the done-check, written by ``--heldout`` as the
original lines), and a few deliberately malformed lines at fixed places. Deterministic:
the same inputs give a byte-identical file.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "streams" / "samples" / "demo.jsonl"

#: Each is one line sent as is; the worker must dead-letter every one with a reason.
MALFORMED: list[bytes] = [
    b"this line is not JSON",
    b'{"call_id": "bad-1", "text": "truncated',
    b'["call_id", "text"]',
    b'{"call_id": "bad-2"}',
    b'{"call_id": "bad-3", "text": "   "}',
    b'{"call_id": "bad-4", "text": "' + b"x" * 2100 + b'"}',
    b'{"call_id": "bad-5", "text": "hello", "role": "supervisor"}',
    b'{"call_id": "bad-6", "text": "hello", "turn": "three"}',
    b'{"call_id": 7, "text": "numeric call id"}',
    '{"call_id": "bad-8", "text": "caf\u00e9"}'.encode("latin-1"),  # not UTF-8
]


def dialogues(src: Path) -> list[list[dict]]:
    """CrossWOZ val dialogues in file order, each a list of its rows sorted by turn."""
    calls: dict[str, list[dict]] = {}
    with open(src / "crosswoz" / "val.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                calls.setdefault(row["call_id"], []).append(row)
    return [sorted(rows, key=lambda r: r["turn"]) for rows in calls.values()]


def event(call_id: str, turn: int, role: str, text: str, lang: str) -> bytes:
    obj = {"call_id": call_id, "turn": turn, "role": role, "text": text, "lang": lang}
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def build(src: Path, n_banking: int = 1500, n_crosswoz: int = 300, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    with open(src / "banking77" / "train.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    keep = sorted(rng.choice(len(rows), size=n_banking, replace=False).tolist())
    calls = [[event(f"b77-train-{i}", 0, "customer", rows[i]["text"], "en")] for i in keep]
    first_half = dialogues(src)[: len(dialogues(src)) // 2]
    taken = 0
    for d in rng.permutation(len(first_half)):
        if taken >= n_crosswoz:
            break
        calls.append([event(r["call_id"], r["turn"], r["role"], r["text"], "zh") for r in first_half[d]])
        taken += len(first_half[d])
    # Interleave calls as live traffic would: a random call order, turns in order.
    lines = [line for c in rng.permutation(len(calls)) for line in calls[c]]
    step = len(lines) // (len(MALFORMED) + 1)
    for k, bad in enumerate(MALFORMED, start=1):
        lines.insert(k * step + k - 1, bad)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder with banking77/ and crosswoz/")
    parser.add_argument("--heldout", type=Path, help="also write the second half of CrossWOZ val here")
    args = parser.parse_args()
    OUT.write_bytes(b"\n".join(build(args.data)) + b"\n")
    if args.heldout:
        ds = dialogues(args.data)
        with open(args.heldout, "w", encoding="utf-8") as f:
            for d in ds[len(ds) // 2:]:
                for r in d:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
