"""New intents late in the stream become intents of their own (the emergence scenario, small).

The service on the real broker with one ``dialin serve`` worker (MiniLM, heuristic judge,
shipped defaults apart from a smaller first trigger), 600 BANKING77 utterances of 20
intents replayed at a fixed rate, 4 intents (drawn with a fixed seed) held back to the last
quarter of the stream. What a subscriber ends with is read back from the topics
(``read_tally``: the latest assignment per utterance, merges followed). A held-back intent
is discovered when one published intent holds at least 60% of its utterances and they
are that intent's majority (the criterion of ``bench/stream_quality.py``).

Before consolidation and open-set assignment, the first runs' broad intents absorbed the
late intents (at cosine >= 0.6), and this test found none of them.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from kafka_harness import wait_for

from dialin.models import nmi
from dialin.streams.tools.replay import replay
from dialin.streams.tools.tally import read_tally

pytestmark = pytest.mark.slow

DATA = Path(__file__).parent / "data"
HELD_BACK = 4
RATE = 60.0
#: The draw of held-back intents. Batch ``dialin discover`` on the whole sample separates 12
#: of its 20 intents; with this seed all 4 held-back intents are among them, so the test
#: measures what the service does with new intents, not what the engine can separate (the
#: test also runs batch on the same rows and reports it beside the stream).
SEED = 9


def stream_order(seed: int = SEED) -> tuple[list[dict], set[str]]:
    """The sample's rows in stream order, and the held-back intents (mixed into the last quarter)."""
    with open(DATA / "banking77_sample.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rng = np.random.default_rng(seed)
    held = set(rng.choice(sorted({r["category"] for r in rows}), HELD_BACK, replace=False).tolist())
    order = rng.permutation(len(rows)).tolist()
    early = [i for i in order if rows[i]["category"] not in held]
    late = [i for i in order if rows[i]["category"] in held]
    cut = len(order) - max(len(order) // 4, len(late))
    order = early[:cut] + rng.permutation(early[cut:] + late).tolist()
    return [rows[i] for i in order], held


def discovered(gold: list[str], final: list, held: set[str]) -> list[str]:
    """The held-back intents one final intent holds >= 60% of, as that intent's majority."""
    per_intent = Counter(final)
    found = []
    for name in sorted(held):
        owners = Counter(f for f, g in zip(final, gold) if g == name)
        best, hold = owners.most_common(1)[0]
        if best is not None and hold >= 0.6 * gold.count(name) and hold > per_intent[best] / 2:
            found.append(name)
    return found


def batch_labels(rows: list[dict], tmp_path: Path) -> list:
    """``dialin discover`` on the same rows: the intent per row (None when unassigned)."""
    src, out = tmp_path / "rows.csv", tmp_path / "intents.json"
    with open(src, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["text"]] + [[r["text"]] for r in rows])
    dialin = Path(sys.executable).with_name("dialin")
    done = subprocess.run([str(dialin), "discover", str(src), "--text-field", "text", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    labels: list = [None] * len(rows)
    for k, intent in enumerate(json.loads(out.read_text(encoding="utf-8"))["intents"]):
        for r in intent["rows"]:
            labels[r] = k
    return labels


def final_intent(intent_id, intents: dict) -> str | None:
    seen = set()
    while intent_id in intents and intents[intent_id].get("merged_into") and intent_id not in seen:
        seen.add(intent_id)
        intent_id = intents[intent_id]["merged_into"]
    return intent_id


def test_intents_that_appear_late_are_discovered(kafka_settings, workers, tmp_path):
    rows, held = stream_order()
    workers.start({"DIALIN_DISCOVERY_MIN_UTTERANCES": "100", "DIALIN_DISCOVERY_INTERVAL_SECONDS": "1",
                   "DIALIN_DISCOVERY_MAX_AGE_SECONDS": "5", "DIALIN_BATCH_SECONDS": "0.2"})
    events = []
    for i, row in enumerate(rows):
        event = {"call_id": f"call-{i}", "utterance_id": f"u-{i}", "turn": 0, "role": "customer",
                 "text": row["text"]}
        events.append((event["call_id"].encode(), json.dumps(event).encode()))
    assert replay(iter(events), kafka_settings, rate=RATE).sent == len(events)
    expected = {f"u-{i}" for i in range(len(rows))}

    def settled():
        tally = read_tally(kafka_settings)
        return tally if set(tally.assigned) >= expected and not tally.buffered else None

    wait_for(settled, timeout=240, interval=2, message="every utterance assigned")
    # Consolidations may still move utterances: wait until the assignments stop changing.
    last = None

    def stable():
        nonlocal last
        now = {u: a.get("version") for u, a in read_tally(kafka_settings).assigned.items()}
        same, last = now == last, now
        return same

    wait_for(stable, timeout=240, interval=8, message="assignments stable")
    tally = read_tally(kafka_settings)
    assert not tally.violations and not tally.lost and tally.accepted == expected
    final = [final_intent(tally.assigned[f"u-{i}"]["intent_id"], tally.intents)
             for i in range(len(rows))]
    gold = [r["category"] for r in rows]
    found = discovered(gold, final, held)
    in_batch = discovered(gold, batch_labels(rows, tmp_path), held)
    score = nmi(gold, final)
    # Small data is noisy for the engine too (batch separates 2-4 of these 4 from run to
    # run of the stream order): the service must find at least half of them, and no more
    # than one fewer than batch finds on the same rows.
    assert len(found) >= max(HELD_BACK // 2, len(in_batch) - 1), (
        f"the stream discovered {found} of {sorted(held)} (NMI {score:.3f}, {len(set(final))} "
        f"intents); batch dialin discover on the same rows: {in_batch}")
    assert score >= 0.7, f"NMI {score:.3f} with {len(per_intent)} intents"
    assert len({a["intent_id"] for a in tally.assigned.values()} - set(tally.intents)) == 0
