"""Deterministic replay (issue 16, part 2): ``dialin rediscover`` over a range of the input
topic, with the LLM answers recorded the first time each prompt was asked.

Against the embedded Kafka broker and the real test LLM server (``llm_server``): the same
range twice gives the same bytes, also with the server stopped the second time.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dialin.models import ClusterView, LLMJudge, MemoryResponseLog, OpenAIClient
from dialin.streams.cli import app
from dialin.streams.service.responses import KafkaResponseLog
from dialin.streams.tools.broker import free_port
from dialin.streams.tools.replay import make_producer

BANKING = Path(__file__).parent / "data" / "banking77_sample.csv"
runner = CliRunner()


def one_line_error(result, says: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and says in lines[0], result.stderr
    assert "Traceback" not in result.stderr


# --- the response log -----------------------------------------------------------------


def test_a_judge_answers_from_the_response_log_without_asking_again(llm_server):
    views = [ClusterView(members=(0, 1, k), texts=("card lost", "lost my card", f"card {k}"))
             for k in range(2, 6)]
    log = MemoryResponseLog()
    first = LLMJudge(OpenAIClient(llm_server.url, "test-model"), responses=log).judge(views)
    assert len(llm_server.chat_requests()) == 4 and len(log) == 4
    llm_server.stop()
    again = LLMJudge(OpenAIClient(llm_server.url, "test-model", max_retries=0),
                     responses=log).judge(views)
    assert again == first and all(v.good for v in again)


def test_the_kafka_log_keeps_the_first_answer_and_reads_it_back(kafka_settings):
    from dialin.streams.tools.watch import read_topic

    settings = kafka_settings.model_copy(update={"topic_llm_responses": kafka_settings.app_id + "-r"})
    log = KafkaResponseLog(settings)
    log.put("k1", "judge", [True, 0.9])
    log.put("k1", "judge", [False, 0.1])  # a second answer to the same prompt is not kept
    log.put("k2", "name", ["check-balance", None])
    log.close()
    back = KafkaResponseLog(settings)
    assert back.get("k1") == [True, 0.9] and back.get("k2") == ["check-balance", None]
    assert back.loaded == 2 and back.get("k3") is None
    assert len(read_topic(settings, settings.topic_llm_responses)) == 2  # one record a prompt


def test_the_live_worker_records_its_llm_answers_on_the_log(llm_server, tmp_path):
    from dialin.models import LSAEmbedder
    from dialin.streams.service.worker import Worker
    from dialin.streams.settings import Settings

    settings = Settings(judge="openai", namer="openai", llm_url=llm_server.url,
                        llm_model="test-model", metrics_port=-1, data_dir=str(tmp_path))
    embedder = LSAEmbedder(n_components=8).fit([f"text {i} of {i % 3}" for i in range(30)])
    worker = Worker(settings, embedder=embedder)
    est = worker.discovery.make_estimator()
    assert isinstance(worker.responses, KafkaResponseLog)
    assert est.judge.responses is worker.responses and est.namer.responses is worker.responses


# --- the command -----------------------------------------------------------------------


def _events(n: int) -> list[tuple[bytes, bytes]]:
    with open(BANKING, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:n]
    return [(f"call-{i}".encode(), json.dumps({"call_id": f"call-{i}", "turn": 0,
                                                "text": r["text"], "role": "customer"}).encode())
            for i, r in enumerate(rows)]


def _produce(settings, topic: str, records: list[tuple[bytes, bytes]],
             timestamp_ms: int | None = None) -> None:
    """Write ``records`` to ``topic`` (``timestamp_ms``: all with that one timestamp) and
    fail unless the broker acknowledged every one."""
    producer = make_producer(settings, acks="all")
    try:
        sent = [producer.send(topic, key=key, value=value, timestamp_ms=timestamp_ms)
                for key, value in records]
        for future in sent:
            future.get(timeout=30)
    finally:
        producer.close()


@pytest.fixture
def replayable(kafka_settings, llm_server, monkeypatch, clean_settings, tmp_path):
    """120 BANKING77 utterances (and one bad record) on the input topic; the DIALIN_*
    variables of a deployment with an LLM judge and namer on the test server."""
    settings = kafka_settings.model_copy(update={"topic_llm_responses": kafka_settings.app_id + "-r"})
    # One timestamp: a replay reads in (timestamp, partition, offset) order and the fit
    # depends on the order; records sent a millisecond apart interleave the partitions
    # differently from one test run to the next, and so would the intents the tests build
    # their live catalog from (seen: a rejected twin not found in two of ten runs).
    _produce(settings, settings.topic_utterances, [*_events(120), (b"bad", b"not json")],
             timestamp_ms=int(time.time() * 1000))
    env = {"KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "TOPIC_UTTERANCES": settings.topic_utterances,
           "TOPIC_CATALOG": settings.topic_catalog, "TOPIC_LLM_RESPONSES": settings.topic_llm_responses,
           "JUDGE": "openai", "NAMER": "openai", "LLM_URL": llm_server.url,
           "LLM_MODEL": "test-model", "LLM_CONCURRENCY": "4", "LLM_MAX_RETRIES": "0",
           "EMBEDDER": "lsa", "EMBEDDER_FIT_FILE": str(BANKING), "DATA_DIR": str(tmp_path / "data")}
    for key, value in env.items():
        monkeypatch.setenv(f"DIALIN_{key}", value)
    return settings


def test_the_same_range_twice_gives_the_same_bytes_also_with_the_llm_stopped(
        replayable, llm_server, tmp_path):
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    result = runner.invoke(app, ["rediscover", "--out", str(first)])
    assert result.exit_code == 0, result.stderr
    asked = len(llm_server.chat_requests())
    assert asked > 0 and "dry run, nothing published" in result.stderr
    doc = json.loads(first.read_text(encoding="utf-8"))
    assert doc["input"] == {"records": 121, "utterances": 120, "rejected": 1, "duplicates": 0,
                            "unassigned": doc["input"]["unassigned"]}
    assert doc["intents"] and all(i["judge"]["backend"] == "openai" for i in doc["intents"])
    assert "new " in result.stderr  # the live catalog is empty: every intent is new

    llm_server.stop()
    # Another process (another hash seed) with the LLM server gone: answers from the log.
    dialin = shutil.which("dialin", path=str(Path(sys.executable).parent)) or "dialin"
    done = subprocess.run([dialin, "rediscover", "--out", str(second)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONHASHSEED": "7"})
    assert done.returncode == 0, done.stderr
    assert "0 requests sent" in done.stderr
    assert second.read_bytes() == first.read_bytes()

    intent = doc["intents"][0]["intent_id"]
    result = runner.invoke(app, ["rediscover", "--explain", intent])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith(intent) and any("-> Good" in line for line in lines[1:])


def test_an_offset_range_reads_only_its_records(replayable, llm_server, tmp_path):
    out = tmp_path / "part.json"
    ends = ",".join(f"{p}:10" for p in range(replayable.topic_partitions))
    result = runner.invoke(app, ["rediscover", "--to-offset", ends, "--out", str(out), "--no-diff"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["input"]["records"] <= 10 * replayable.topic_partitions
    assert doc["range"]["to_offsets"] == {str(p): 10 for p in range(replayable.topic_partitions)}


def test_publish_sends_the_catalog_to_the_named_topic_only(replayable, tmp_path):
    from dialin.streams.tools.watch import read_topic

    topic = replayable.app_id + "-replayed"
    result = runner.invoke(app, ["rediscover", "--out", str(tmp_path / "c.json"), "--no-diff",
                                 "--publish", topic])
    assert result.exit_code == 0, result.stderr
    doc = json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))
    published = read_topic(replayable, topic, wait_for_topic=5.0)
    assert sorted(r.key_str for r in published) == sorted(i["intent_id"] for i in doc["intents"])
    assert all(r.data["centroid"] and r.data["exemplars"] for r in published)
    assert read_topic(replayable, replayable.topic_catalog) == []
    one_line_error(runner.invoke(app, ["rediscover", "--publish", replayable.topic_catalog]), "live catalog topic")


def test_the_diff_says_same_for_intents_the_live_catalog_holds(replayable, tmp_path):
    from dialin.streams.settings import get_settings
    from dialin.streams.tools.rediscover import Range, publish, rediscover

    run = rediscover(get_settings(), Range())  # the DIALIN_* variables the command reads
    assert publish(run, replayable.topic_catalog) == len(run.intents)  # as if the leader had
    result = runner.invoke(app, ["rediscover", "--out", str(tmp_path / "c.json")])
    assert result.exit_code == 0, result.stderr
    diff = [line for line in result.stderr.splitlines()
            if line.startswith(("same", "matches", "new", "live-only"))]
    assert len(diff) == len(run.intents) and all(line.startswith("same ") for line in diff)


@pytest.mark.parametrize("args, says", [
    (["--from", "2026-11-02T00:00Z", "--to", "2026-11-01T00:00Z"], "is not before --to"),
    (["--from", "yesterday"], "not an ISO-8601 time"),
    (["--to-offset", "0-5"], "PARTITION:OFFSET"),
    (["--from-offset", "0:9", "--to-offset", "0:9"], "is not after"),
])
def test_a_bad_range_gets_one_clear_line(args, says, clean_settings):
    one_line_error(runner.invoke(app, ["rediscover", *args]), says)


def test_an_empty_range_and_an_unknown_intent_get_one_clear_line(replayable):
    one_line_error(runner.invoke(app, ["rediscover", "--from", "2001-01-01T00:00Z",
                                       "--to", "2001-01-02T00:00Z"]), "no utterances in that range")
    one_line_error(runner.invoke(app, ["rediscover", "--explain", "intent-000000000000"]),
                   "no such intent")


def test_an_unreachable_broker_gets_one_clear_line(clean_settings):
    one_line_error(runner.invoke(app, ["rediscover", "--bootstrap", f"127.0.0.1:{free_port()}"]),
                   "Kafka at 127.0.0.1")


# --- the review decisions as they stand now (issue 15 x issue 16 part 2) ---------------


def _live_catalog_with_decisions(settings, run) -> dict[str, str]:
    """Put on the live catalog topic the replay's four largest intents under other ids (so
    the replay finds them by the open-set rule, not by id), as the leader leaves them after
    a reviewer's decisions: the first rejected, the second renamed, the third merged into
    the fourth. Returns {role in the test: live id}."""
    from dialin.models import CatalogIntent, new_intent_id
    from dialin.streams.service.lifecycle import transition

    records = dict(run.catalog_records())
    now = "2026-11-29T00:00:00.000Z"

    def live(n: int) -> CatalogIntent:
        intent = CatalogIntent.from_record(records[run.intents[n].intent_id])
        # threshold 0: a row goes where most of its neighbours are (the vote alone), so
        # the test does not hang on how close LSA puts two BANKING77 intents
        return CatalogIntent.from_record(dict(intent.to_record(run.embedder), threshold=0.0,
                                              intent_id=new_intent_id(intent.role, [f"live-{n}"])))

    gone, named, merged, into = (live(n) for n in range(4))
    entries = [
        transition(gone, "rejected", "alice", now, pinned=True, decisions=("d1",)),
        transition(named, "renamed", "alice", now, label="report-lost_card", pinned=True,
                   renamed_from=named.label, decisions=("d2",)),
        transition(merged, "merged", "alice", now, merged_into=into.intent_id, pinned=True,
                   decisions=("d3",)),
        transition(into, "updated", "alice", now, pinned=True, decisions=("d3",)),
    ]
    _produce(settings, settings.topic_catalog,
             [(e.intent_id.encode(), json.dumps(e.to_record(run.embedder)).encode()) for e in entries])
    return {"rejected": gone.intent_id, "renamed": named.intent_id,
            "merged": merged.intent_id, "into": into.intent_id}


def _by_gold_label(body: dict) -> str:
    """The test server as a judge that says Good when 80% of the utterances shown share
    their BANKING77 category, and a namer that answers that category."""
    from collections import Counter

    from openai_server import task_of, utterance_groups

    with open(BANKING, newline="", encoding="utf-8") as f:
        gold = {r["text"]: r["category"] for r in csv.DictReader(f)}
    texts = [t for group in utterance_groups(body) for t in group]
    seen = Counter(gold.get(t, "") for t in texts)
    category, n = min(seen.items(), key=lambda kv: (-kv[1], kv[0])) if seen else ("help", 0)
    task = task_of(body)
    if task == "judge":
        return "Good" if n >= 0.8 * max(1, len(texts)) else "Bad"
    return f"ask-{category}" if task == "name" else "[30, 20, 40]"


def test_the_replay_applies_the_review_decisions_of_the_live_catalog(replayable, llm_server,
                                                                    tmp_path):
    from dialin.streams.settings import get_settings
    from dialin.streams.tools.rediscover import Range, rediscover

    llm_server.answer = _by_gold_label
    before = rediscover(get_settings(), Range())
    assert len(before.intents) >= 4 and not before.applied and before.decided_examples == 0
    live = _live_catalog_with_decisions(replayable, before)
    asked = len(llm_server.chat_requests())
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    for out in (one, two):
        result = runner.invoke(app, ["rediscover", "--out", str(out)])
        assert result.exit_code == 0, result.stderr
        assert "review decisions applied: 4 (1 intents dropped as rejected)" in result.stderr
    assert one.read_bytes() == two.read_bytes()  # the same range and catalog: the same bytes

    doc = json.loads(one.read_text(encoding="utf-8"))
    applied = doc["run"]["decisions_applied"]
    assert applied["count"] == 4 and applied["decisions"] == sorted(
        applied["decisions"], key=lambda a: (a["intent_id"], a["live_id"], a["action"]))
    by_live = {a["live_id"]: a for a in applied["decisions"]}
    assert {k: by_live[v]["action"] for k, v in live.items()} == {
        "rejected": "reject", "renamed": "label", "merged": "merge", "into": "label"}
    old = {i.intent_id: sorted(before.utterances.ids[r] for r in before.members[i.intent_id])
           for i in before.intents}
    intents = {i["intent_id"]: i for i in doc["intents"]}
    # rejected: dropped, its members unassigned, and the output says why
    dropped = by_live[live["rejected"]]["intent_id"]
    assert dropped not in intents and [d["intent_id"] for d in doc["dropped"]] == [dropped]
    assert "rejected by alice" in doc["dropped"][0]["reason"]
    assert not set(old[dropped]) & {m for i in intents.values() for m in i["members"]}
    assert doc["input"]["unassigned"] >= len(old[dropped])
    # a person's label kept over the namer's (ask-<category> from the test server)
    assert before.intents[1].label.startswith("ask-")
    assert intents[by_live[live["renamed"]]["intent_id"]]["label"] == "report-lost_card"
    # a person's merge: the replayed intent went into the one matching the target
    gone, host = by_live[live["merged"]]["intent_id"], by_live[live["merged"]]["into"]
    assert gone not in intents and host == by_live[live["into"]]["intent_id"]
    assert set(old[gone]) <= set(intents[host]["members"])
    assert intents[host]["size"] == len(intents[host]["members"])
    # the judge and namer were shown the decided clusters, as the live service shows them
    assert doc["run"]["decided_examples"] == 3
    from openai_server import task_of

    sent = llm_server.chat_requests()[asked:]
    for task in ("judge", "name"):
        shown = [json.dumps(body) for body in sent if task_of(body) == task]
        assert any("decided by a reviewer" in body for body in shown), task
    assert "dropped   " + dropped in result.stderr


def test_a_merge_no_replayed_intent_can_join_relabels_and_one_into_a_rejected_intent_drops():
    import numpy as np

    from dialin.models import CatalogIntent
    from dialin.streams.catalog import Snapshot
    from dialin.streams.settings import Settings
    from dialin.streams.tools.rediscover import apply_decisions, review_decisions

    rng = np.random.default_rng(0)

    def blob(corner: int) -> np.ndarray:
        return (np.eye(8)[corner] + 0.01 * rng.standard_normal((10, 8))).astype(np.float32)

    def entry(iid: str, label: str, corner: int, **lifecycle) -> dict:
        X = blob(corner)
        return CatalogIntent(iid, label, "customer", X.mean(axis=0), 10, examples=(label,),
                             exemplars=X, threshold=0.0, **lifecycle).to_record("e")

    person = dict(actor="alice", pinned=True, decisions=("d",))
    snapshot = Snapshot([
        entry("live-s", "old", 0, state="merged", status="merged", merged_into="live-t", **person),
        entry("live-t", "kept-target", 2),
        entry("live-r", "bad-one", 3, state="rejected", status="retired", **person),
        entry("live-u", "into-bad", 1, state="merged", status="merged", merged_into="live-r",
              **person)], "e", "test")
    X = np.vstack([blob(0), blob(1)])
    replayed = [CatalogIntent(f"new-{n}", f"ask-{n}", "customer", X[rows].mean(axis=0), 10)
                for n, rows in enumerate((range(10), range(10, 20)))]
    members = {"new-0": list(range(10)), "new-1": list(range(10, 20))}
    intents, applied, dropped = apply_decisions(
        replayed, members, X, review_decisions(Settings(), snapshot, "e"))
    assert [(a.intent_id, a.live_id, a.action, a.into) for a in applied] == [
        ("new-0", "live-s", "merge-label", "live-t"), ("new-1", "live-u", "reject", None)]
    assert [(i.intent_id, i.label) for i in intents] == [("new-0", "kept-target")]
    assert [d.intent.intent_id for d in dropped] == ["new-1"]
    assert "rejected by alice" in dropped[0].reason
    assert set(members) == {"new-0"}
