"""A lone utterance reaches its output topic in a fraction of a second, through the broker.

faust builds the worker's consumer with a 1.5 s fetch wait, and the embedded broker answers
a waiting fetch only on its own rhythm: lone utterances waited from ~40 to ~650 ms (issue
17). ``DIALIN_FETCH_MAX_WAIT_MS`` (:mod:`dialin.streams.service.transport`) bounds the
wait. The latency is read from the records' own broker timestamps (the producer's send
time of the utterance, the worker's send time of its output), the median of fifteen
utterances sent one at a time (the first warms the model and is not counted).
"""

from __future__ import annotations

import json
import statistics
import time

import pytest
from kafka_harness import records_of, wait_for

from dialin.streams.tools.replay import replay

pytestmark = pytest.mark.slow

#: No discovery during the test: every utterance is a lone event through ingest.
QUIET = {"DIALIN_DISCOVERY_MIN_UTTERANCES": "100000", "DIALIN_DISCOVERY_MAX_AGE_SECONDS": "100000",
         "DIALIN_DISCOVERY_IDLE_SECONDS": "0"}


def _first_timestamps(settings, topics, key_of) -> dict[str, int]:
    """Utterance id -> broker timestamp (ms) of its first record on ``topics``."""
    first: dict[str, int] = {}
    for topic in topics:
        for record in records_of(settings, topic):
            uid = key_of(record)
            if uid is not None:
                first[uid] = min(first.get(uid, record.timestamp_ms), record.timestamp_ms)
    return first


def test_a_lone_utterance_is_decided_well_under_half_a_second(kafka_settings, workers):
    workers.start(QUIET)
    uids = [f"lone-{i}" for i in range(16)]
    for i, uid in enumerate(uids):
        event = {"call_id": f"call-{i}", "utterance_id": uid, "turn": 0, "role": "customer",
                 "text": f"I want to check the balance of my account number {i}"}
        replay(iter([(event["call_id"].encode(), json.dumps(event).encode())]), kafka_settings)
        time.sleep(0.6 if i else 5.0)  # one at a time; the first warms the model
    s = kafka_settings
    outputs = wait_for(lambda: (o := _first_timestamps(s, (s.topic_assignments, s.topic_buffer),
                                                       lambda r: r.key_str)).keys() >= set(uids) and o,
                       120, 1.0, message="an output for every utterance")
    inputs = _first_timestamps(s, (s.topic_utterances,), lambda r: isinstance(r.data, dict)
                               and r.data.get("utterance_id") or None)
    latencies = [outputs[u] - inputs[u] for u in uids[1:]]
    # Measured on the quiet 2-core machine, one utterance every 0.6 s: median 71 ms with
    # the 100 ms default; with faust's 1,500 ms the latencies cycle from ~40 to ~650 ms
    # (median 337), as the broker answers the waiting fetches.
    assert statistics.median(latencies) < 200, latencies
