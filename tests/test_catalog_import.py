"""``dialin catalog import``: a taxonomy seeds the catalog and a real worker matches its
intents from the first utterance; a ``dialin`` backup restored on a new empty broker
gives back the same catalog; a Rasa file; and malformed files (one line, exit status 2).

All on the real embedded broker; the embedder is LSA fitted once on the BANKING77 sample
(shared by the importer and the worker through the data dir, as in a deployment).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from catalog_cli import catalog_cli, one_error_line, runner
from kafka_harness import records_of, wait_for

from dialin.models import CatalogIntent
from dialin.streams.catalog import read_live
from dialin.streams.cli import app
from dialin.streams.settings import Settings
from dialin.streams.tools.broker import EmbeddedBroker, free_port
from dialin.streams.tools.replay import make_producer, replay
from dialin.streams.tools.supervise import metric

pytestmark = pytest.mark.usefixtures("clean_settings")

DATA = Path(__file__).parent / "data"
BANKING = DATA / "banking77_sample.csv"
LSA = {"DIALIN_EMBEDDER": "lsa", "DIALIN_EMBEDDER_FIT_FILE": str(BANKING)}
#: The leader never ticks during a test: what is assigned was matched on arrival.
NO_DISCOVERY = {"DIALIN_DISCOVERY_INTERVAL_SECONDS": "3600", "DIALIN_BATCH_SECONDS": "0.2"}


def cli(monkeypatch, settings: Settings, data_dir: Path, *args: str):
    """``dialin catalog ARGS`` with the LSA embedder kept in ``data_dir``."""
    return catalog_cli(monkeypatch, settings, *args,
                       env={**LSA, "DIALIN_DATA_DIR": str(data_dir)})


def latest(settings: Settings, topic: str) -> dict[str, dict]:
    """The latest JSON value per key of a compacted topic."""
    out = {}
    for record in records_of(settings, topic):
        if record.key_str is not None and isinstance(record.data, dict):
            out[record.key_str] = record.data
    return out


def banking_by_intent(n_intents: int = 5) -> dict[str, list[str]]:
    with BANKING.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    cats = sorted({r["category"] for r in rows})[:n_intents]
    return {c: [r["text"] for r in rows if r["category"] == c] for c in cats}


# --- a taxonomy, then live traffic through a real worker -----------------------------------

def test_imported_taxonomy_is_matched_from_the_first_utterance(kafka_settings, workers,
                                                               monkeypatch, tmp_path):
    texts = banking_by_intent()
    taxonomy = tmp_path / "taxonomy.csv"
    with taxonomy.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["label", "example"])
        for cat, items in texts.items():
            writer.writerows([cat.replace("_", " "), t] for t in items[:20])
    data_dir = tmp_path / "data"
    result = cli(monkeypatch, kafka_settings, data_dir, "import", str(taxonomy))
    assert result.exit_code == 0, result.stderr
    assert "imported 5 of 5 intents" in result.stdout and "5 embedded" in result.stdout

    catalog = latest(kafka_settings, kafka_settings.topic_catalog)
    id_of = {rec["label"]: iid for iid, rec in catalog.items()}
    assert set(id_of) == {c.replace("_", " ") for c in texts}
    for rec in catalog.values():  # what the leader writes for an intent it creates
        intent = CatalogIntent.from_record(rec)
        assert intent.status == "created" and intent.version == 1 and intent.role == "customer"
        assert intent.exemplars.shape[0] == 20 and 0 < intent.threshold <= 1
        assert rec["judge"]["backend"] == "import"
    updates = latest(kafka_settings, kafka_settings.topic_updates)
    assert {iid: u["status"] for iid, u in updates.items()} == {iid: "created" for iid in catalog}

    # The worker reads the catalog at start; the held-out utterances are its first traffic.
    worker = workers.start({**LSA, **NO_DISCOVERY}, data_dir=data_dir)
    events = []
    for cat, items in texts.items():
        for k, text in enumerate(items[20:]):
            event = {"call_id": f"call-{cat}-{k}", "utterance_id": f"{cat}/{k}", "turn": 0,
                     "role": "customer", "text": text}
            events.append((event["call_id"].encode(), json.dumps(event).encode()))
    assert replay(iter(events), kafka_settings).sent == len(events) == 50
    wait_for(lambda: metric(worker.metrics(), "dialin_events_total") >= len(events), 120,
             message="the worker to decide on every utterance")
    assigned = latest(kafka_settings, kafka_settings.topic_assignments)
    assert len(assigned) >= 20, f"only {len(assigned)} of 50 matched an imported intent"
    assert {a["intent_id"] for a in assigned.values()} <= set(catalog)
    assert all(a["cause"] == "matched" for a in assigned.values())
    right = sum(a["intent_id"] == id_of[uid.split("/")[0].replace("_", " ")]
                for uid, a in assigned.items())
    assert right >= 0.9 * len(assigned), (right, len(assigned))


# --- backup: export, a new empty broker, import --------------------------------------------

def lineage_catalog(embedder) -> list[CatalogIntent]:
    """Five entries with lineage and versions, vectors in ``embedder``'s space."""
    texts = banking_by_intent(4)
    cats = list(texts)
    spec = [  # id, label, status, version, merged_into, split_from, category
        ("intent-b00000000001", "activate card", "updated", 3, None, None, cats[0]),
        ("intent-b00000000002", "age limit", "created", 1, None, None, cats[1]),
        ("intent-b00000000003", "atm support", "created", 1, None, "intent-b00000000001", cats[2]),
        ("intent-b00000000004", "card accepted", "updated", 2, None, None, cats[3]),
        ("intent-b00000000005", "card acceptance", "merged", 4, "intent-b00000000004", None, cats[3]),
    ]
    out = []
    for iid, label, status, version, into, split, cat in spec:
        X = embedder.encode(texts[cat][:12]).astype(np.float32)
        out.append(CatalogIntent(
            intent_id=iid, label=label, role="customer", centroid=X.mean(axis=0), size=12,
            examples=tuple(texts[cat][:5]), version=version, status=status, merged_into=into,
            split_from=split, created_at="2026-11-01T00:00:00Z", updated_at="2026-11-20T00:00:00Z",
            judge_backend="heuristic", judge_confidence=0.75, exemplars=X[:8], threshold=0.42))
    return out


def publish_as_leader(settings: Settings, intents: list[CatalogIntent], embedder: str) -> None:
    from dialin.streams.service.app import ensure_topics
    from dialin.streams.service.discovery import update_of
    from dialin.streams.service.records import dumps
    import asyncio

    asyncio.run(ensure_topics(settings))
    producer = make_producer(settings, acks="all")
    try:
        for i in intents:
            producer.send(settings.topic_catalog, key=i.intent_id.encode(),
                          value=json.dumps(i.to_record(embedder), ensure_ascii=False).encode())
        producer.flush()
        for i in intents:
            producer.send(settings.topic_updates, key=i.intent_id.encode(), value=dumps(update_of(i)))
        producer.flush()
    finally:
        producer.close()


def test_backup_round_trip_on_a_new_empty_broker(monkeypatch, tmp_path):
    from dialin.streams.factory import build_service_embedder

    data_dir, backup = tmp_path / "data", tmp_path / "backup.json"
    topics = dict(topic_catalog="cat", topic_updates="upd", kafka_security_protocol="PLAINTEXT")
    with EmbeddedBroker(free_port(), log_path=tmp_path / "first.log") as first:
        settings = Settings(kafka_bootstrap=first.bootstrap, **topics)
        embedder = build_service_embedder(Settings(**{"embedder": "lsa", "data_dir": str(data_dir),
                                                      "embedder_fit_file": str(BANKING)}))
        intents = lineage_catalog(embedder)
        publish_as_leader(settings, intents, embedder.name)
        before = read_live(settings)
        assert len(before.records) == 5
        result = cli(monkeypatch, settings, data_dir, "export", "--format", "dialin",
                     "--out", str(backup))
        assert result.exit_code == 0, result.stderr
    # Fields a newer leader writes, that this version does not know, come back too.
    doc = json.loads(backup.read_text(encoding="utf-8"))
    expected = [dict(r) for r in before.records]
    for records in (doc["intents"], expected):
        records[1]["judge"] = {**records[1]["judge"], "fallback": "call_cap"}
        records[1]["from_a_newer_leader"] = {"kept": True}
    backup.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    # The embedded broker keeps nothing: a new one starts empty.
    with EmbeddedBroker(free_port(), log_path=tmp_path / "second.log") as second:
        settings = Settings(kafka_bootstrap=second.bootstrap, **topics)
        assert read_live(settings).records == []
        result = cli(monkeypatch, settings, data_dir, "import", str(backup))
        assert result.exit_code == 0, result.stderr
        assert "imported 5 of 5" in result.stdout and "5 restored with their vectors" in result.stdout
        after = read_live(settings)
        assert after.records == expected  # ids, labels, lineage, versions, vectors
        updates = latest(settings, settings.topic_updates)
        assert {k: (u["version"], u["status"], u["merged_into"], u["split_from"])
                for k, u in updates.items()} == {
            i.intent_id: (i.version, i.status, i.merged_into, i.split_from) for i in intents}

        # Importing the same backup again changes nothing.
        n = len(records_of(settings, settings.topic_catalog))
        result = cli(monkeypatch, settings, data_dir, "import", str(backup))
        assert result.exit_code == 0 and "imported 0 of 5" in result.stdout
        assert "5 already in the catalog" in result.stdout
        assert len(records_of(settings, settings.topic_catalog)) == n

    # A backup from another embedding space keeps ids and lineage; vectors are rebuilt.
    doc = json.loads(backup.read_text(encoding="utf-8"))
    for rec in doc["intents"]:
        rec["embedder"] = "minilm"
    other = tmp_path / "other-space.json"
    other.write_text(json.dumps(doc), encoding="utf-8")
    with EmbeddedBroker(free_port(), log_path=tmp_path / "third.log") as third:
        settings = Settings(kafka_bootstrap=third.bootstrap, **topics)
        result = cli(monkeypatch, settings, data_dir, "import", str(other))
        assert result.exit_code == 0, result.stderr
        assert "0 restored with their vectors, 5 embedded" in result.stdout
        rebuilt = {r["intent_id"]: r for r in read_live(settings).records}
        for rec in before.records:
            got = rebuilt[rec["intent_id"]]
            assert {k: got[k] for k in ("label", "version", "status", "merged_into", "split_from")} \
                == {k: rec[k] for k in ("label", "version", "status", "merged_into", "split_from")}
            assert got["embedder"] == rec["embedder"] and got["centroid"] != rec["centroid"]


# --- a Rasa file ---------------------------------------------------------------------------

RASA = """\
version: "3.1"
nlu:
- synonym: credit card
  examples: |
    - cc
- intent: report_lost_card
  examples: |
    - I lost my [card](item), call me on 07700 900123
    - my card is lost
    - I can't find my card anywhere
- intent: 查询-酒店-地址
  metadata:
    intent_id: intent-rasa00000001
    role: agent
  examples:
  - text: 这家酒店的地址是什么？
  - text: 酒店在哪？
  - text: 酒店的地址是在哪啊？
"""


def test_rasa_import_publishes_like_the_leader_and_is_idempotent(kafka_settings, monkeypatch,
                                                                  tmp_path):
    path = tmp_path / "nlu.yml"
    path.write_text(RASA, encoding="utf-8")
    data_dir = tmp_path / "data"
    result = cli(monkeypatch, kafka_settings, data_dir, "import", str(path))
    assert result.exit_code == 0, result.stderr
    assert "imported 2 of 2 intents" in result.stdout and "(rasa)" in result.stdout
    catalog = latest(kafka_settings, kafka_settings.topic_catalog)
    by_label = {rec["label"]: rec for rec in catalog.values()}
    assert set(by_label) == {"report_lost_card", "查询-酒店-地址"}
    zh = by_label["查询-酒店-地址"]
    assert zh["intent_id"] == "intent-rasa00000001" and zh["role"] == "agent"
    en = by_label["report_lost_card"]
    assert en["role"] == "customer" and en["examples"][0] == "I lost my card, call me on <PHONE>"
    assert CatalogIntent.from_record(en).exemplars.shape[0] == 3
    assert Counter(u["status"] for u in latest(kafka_settings,
                                               kafka_settings.topic_updates).values()) == {"created": 2}

    again = cli(monkeypatch, kafka_settings, data_dir, "import", str(path))
    assert again.exit_code == 0 and "imported 0 of 2" in again.stdout

    clash = tmp_path / "clash.csv"
    clash.write_text("label,example\nReport_Lost_Card,where is my card\n", encoding="utf-8")
    one_error_line(cli(monkeypatch, kafka_settings, data_dir, "import", str(clash)),
                   "already intent", en["intent_id"])


# --- malformed files: one line, exit status 2 ----------------------------------------------

BAD_FILES = [
    ("nlu.yml", "nlu: [intent: x\n", ["not YAML"]),
    ("nlu.yml", 'version: "3.1"\nnlu:\n- intent: x\n', ["not Rasa 3 NLU training data"]),
    ("nlu.yml", 'version: "3.1"\nnlu:\n- intent: x\n  examples: "just text"\n', ["nlu/0"]),
    ("nlu.yml", 'version: "3.1"\nnlu:\n- synonym: cc\n  examples: |\n    - c\n', ["no intent"]),
    ("t.csv", "name,example\nx,hello\n", ["needs the columns label and example"]),
    ("t.csv", "label,example\n,hello\n", [":2: empty label"]),
    ("t.csv", "label,example,role\nx,hello,robot\n", ["role 'robot'"]),
    ("b.json", '{"format": "something-else"}', ["not a dialin catalog backup"]),
    ("b.json", "{not json", ["not JSON"]),
    ("b.json", json.dumps({"format": "dialin-catalog", "version": 1, "intents": [{
        "intent_id": "i", "label": "x", "version": 1, "status": "created", "size": 1,
        "embedder": "lsa", "centroid": "@@not base64@@"}]}), ["do not decode"]),
    ("t.txt", "label,example\nx,y\n", ["cannot tell the format", "--format"]),
]


@pytest.mark.parametrize("name, content, words", BAD_FILES)
def test_a_malformed_import_file_is_one_line(name, content, words, tmp_path):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    one_error_line(runner.invoke(app, ["catalog", "import", str(path)]), *words)


def test_import_usage_errors_are_one_line(tmp_path):
    one_error_line(runner.invoke(app, ["catalog", "import", str(tmp_path / "none.csv")]),
                   "no such file")
    path = tmp_path / "t.csv"
    path.write_text("label,example\nx,y\n", encoding="utf-8")
    one_error_line(runner.invoke(app, ["catalog", "import", str(path), "--format", "lex-v2"]),
                   "lex-v2")
