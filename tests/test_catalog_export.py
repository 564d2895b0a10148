"""``dialin catalog export``: every format, for an English and a Chinese catalog read back
from the real embedded broker, checked by each platform's own definition; and bad input.

Each platform's definition is applied here as well as in the exporter: the Rasa file
against the JSON schema written from Rasa's documented format, every Dialogflow CX intent
parsed into the official protobuf type, every Lex V2 request through botocore's
``ParamValidator`` and the ``intentName`` pattern of botocore's service model.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from catalog_cli import catalog_cli, one_error_line, runner

from dialin.models import CatalogIntent
from dialin.streams.catalog import FORMATS, PUBLISHED_EXAMPLES, RASA_NLU_SCHEMA
from dialin.streams.cli import app
from dialin.streams.cli.catalog import EXPORT_FORMATS, export_command
from dialin.streams.tools.replay import make_producer

pytestmark = pytest.mark.usefixtures("clean_settings")

DATA = Path(__file__).parent / "data"
EMBEDDER = "test-space"
MAX = 4
LANGS = ("en", "zh")

#: (intent_id, label, role, status, merged_into, examples). The first examples of some
#: intents hold PII (within the cap, so a leak would show), duplicates that differ only
#: in case and spacing, and the markup Rasa (``[x](y)``) and Lex (``{x}``) would misread.
CATALOGS = {
    "en": [
        ("intent-en0000000001", "report-lost_card", "customer", "created", None,
         ["I lost my card, call me on 07700 900123", "I lost my  card", "i LOST my card",
          "where is my [card](item)?", "my card is gone {again}", "block my card please"]),
        ("intent-en0000000002", "Café crème refund", "customer", "updated", None,
         ["I want a refund for the café", "refund my crème brûlée order"]),
        ("intent-en0000000003", "card top-up", "customer", "created", None,
         ["how do I top up my card", "top up with a card"]),
        ("intent-en0000000004", "card_top-up", "agent", "created", None,
         ["you can top up your card in the app", "email us at help@example.com to top up"]),
        ("intent-en0000000005", "lost card", "customer", "merged", "intent-en0000000001",
         ["lost card"]),
    ],
    "zh": [
        ("intent-zh0000000001", "查询-酒店-地址", "customer", "created", None,
         ["我的电话是13812345678，请回电", "好。这家酒店的地址是什么？",
          "好。这家酒店的地址是什么？", "酒店的地址是在哪啊？", "该酒店在哪?"]),
        ("intent-zh0000000002", "Inform-餐馆-电话", "agent", "updated", None,
         ["电话是010-67019393。", "你记一下啊，电话是67010327。", "电话是84467565。"]),
        ("intent-zh0000000003", "推荐-景点", "agent", "created", None,
         ["给您推荐故宫博物院。", "推荐您去[颐和园](景点)看看"]),
        ("intent-zh0000000004", "酒店地址", "customer", "merged", "intent-zh0000000001",
         ["地址在哪"]),
    ],
}
RAW_PII = ("07700 900123", "13812345678", "010-67019393", "67010327", "help@example.com")


def catalog_of(lang: str) -> list[CatalogIntent]:
    rng = np.random.default_rng(0)
    out = []
    for k, (iid, label, role, status, into, examples) in enumerate(CATALOGS[lang]):
        E = rng.normal(size=(3, 8)).astype(np.float32)
        out.append(CatalogIntent(
            intent_id=iid, label=label, role=role, centroid=E.mean(axis=0), size=10 + k,
            examples=tuple(examples), version=1 if status == "created" else 2, status=status,
            merged_into=into, created_at="2026-11-01T00:00:00Z", updated_at="2026-11-02T00:00:00Z",
            judge_backend="heuristic", judge_confidence=0.9, exemplars=E, threshold=0.5))
    return out


def publish(settings, intents: list[CatalogIntent], tombstones: tuple[str, ...] = ()) -> None:
    """Catalog records on the catalog topic, as the discovery leader writes them."""
    producer = make_producer(settings, acks="all")
    try:
        for intent in intents:
            producer.send(settings.topic_catalog, key=intent.intent_id.encode(),
                          value=json.dumps(intent.to_record(EMBEDDER), ensure_ascii=False).encode())
        for key in tombstones:
            producer.send(settings.topic_catalog, key=key.encode(), value=None)
        producer.flush()
    finally:
        producer.close()


# --- the platforms' own definitions, applied to what was written ---------------------------

def read_rasa(text: str) -> dict[str, tuple[str, list[str]]]:
    from jsonschema import Draft202012Validator

    doc = yaml.safe_load(text)
    Draft202012Validator(RASA_NLU_SCHEMA).validate(doc)
    assert doc["version"] == "3.1"
    out = {}
    for item in doc["nlu"]:
        lines = item["examples"].splitlines()
        assert all(line.startswith("- ") for line in lines)
        phrases = [line[2:] for line in lines]
        # An entity annotation would turn part of a phrase into an entity.
        assert not any(re.search(r"\[[^\]]*\]\s*[({]", p) for p in phrases), phrases
        assert re.fullmatch(r"[\w-]+", item["intent"]), item["intent"]
        out[item["metadata"]["intent_id"]] = (item["intent"], phrases)
    return out


def read_cx(text: str, lang: str) -> dict[str, tuple[str, list[str]]]:
    from google.cloud.dialogflowcx_v3 import Intent
    from google.protobuf import json_format

    doc = json.loads(text)
    assert doc["languageCode"] == {"en": "en", "zh": "zh-cn"}[lang]
    out = {}
    for body in doc["intents"]:
        intent = json_format.ParseDict(body, Intent.pb()())  # unknown fields raise
        phrases = ["".join(part.text for part in tp.parts) for tp in intent.training_phrases]
        out[intent.labels["dialin-id"]] = (intent.display_name, phrases)
    return out


def read_lex(text: str, lang: str) -> dict[str, tuple[str, list[str]]]:
    import botocore.session
    from botocore.validate import ParamValidator

    shape = botocore.session.get_session().get_service_model(
        "lexv2-models").operation_model("CreateIntent").input_shape
    pattern = shape.members["intentName"].metadata["pattern"]
    doc = json.loads(text)
    assert doc["localeId"] == {"en": "en_US", "zh": "zh_CN"}[lang]
    out = {}
    for request in doc["intents"]:
        report = ParamValidator().validate(request, shape)
        assert not report.has_errors(), report.generate_report()
        assert re.search(pattern, request["intentName"]) and len(request["intentName"]) <= 100
        phrases = [u["utterance"] for u in request["sampleUtterances"]]
        assert not any("{" in p or "}" in p for p in phrases)  # a slot reference to Lex
        iid = request["description"].removeprefix("dialin intent ")
        out[iid] = (request["intentName"], phrases, request["intentDisplayName"])
    return out


def read_csv(text: str) -> dict[str, tuple[str, list[str]]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and set(rows[0]) == {"intent_id", "label", "role", "example"}
    out: dict[str, tuple[str, list[str]]] = {}
    for row in rows:
        out.setdefault(row["intent_id"], (row["label"], []))[1].append(row["example"])
    return out


def test_cli_formats_are_the_package_formats():
    assert EXPORT_FORMATS == FORMATS
    default = inspect.signature(export_command).parameters["max_examples"].default
    assert default == PUBLISHED_EXAMPLES  # what the catalog keeps per intent


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_export_is_valid_by_the_platforms_definition(fmt, lang, kafka_settings, monkeypatch,
                                                     tmp_path):
    intents = catalog_of(lang)
    publish(kafka_settings, intents)
    out = tmp_path / f"export.{fmt}"
    result = catalog_cli(monkeypatch, kafka_settings, "export", "--format", fmt, "--out", str(out),
                 "--max-examples", str(MAX))
    assert result.exit_code == 0, result.stderr
    text = out.read_text(encoding="utf-8")
    active = {i.intent_id: i for i in intents if i.active}
    assert f"from topic {kafka_settings.topic_catalog}" in result.stderr
    for raw in RAW_PII:  # redacted in every format, the backup included
        assert raw not in text, raw

    if fmt == "dialin":
        doc = json.loads(text)
        assert doc["format"] == "dialin-catalog" and doc["embedder"] == EMBEDDER
        by_id = {r["intent_id"]: r for r in doc["intents"]}
        assert set(by_id) == {i.intent_id for i in intents}  # merged ones keep the lineage
        for intent in intents:
            rec = by_id[intent.intent_id]
            assert (rec["label"], rec["status"], rec["version"], rec["merged_into"]) == (
                intent.label, intent.status, intent.version, intent.merged_into)
            assert CatalogIntent.from_record(rec).exemplars.shape == (3, 8)
        return

    got = {"rasa": read_rasa, "csv": read_csv}.get(fmt)
    got = got(text) if got else {"dialogflow-cx": read_cx, "lex-v2": read_lex}[fmt](text, lang)
    assert set(got) == set(active), "exactly the active intents"
    names = [v[0] for v in got.values()]
    assert len({n.casefold() for n in names}) == len(names), names
    for iid, (name, phrases, *rest) in got.items():
        assert 1 <= len(phrases) <= MAX
        keys = [" ".join(p.casefold().split()) for p in phrases]
        assert len(set(keys)) == len(keys), phrases  # de-duplicated
    first = next(iter(active))  # its first example has a phone number
    assert "<PHONE>" in got[first][1][0]

    labels = {iid: i.label for iid, i in active.items()}
    if fmt == "csv":
        assert {iid: v[0] for iid, v in got.items()} == labels
    elif fmt == "dialogflow-cx":  # display names keep every script
        assert {iid: v[0] for iid, v in got.items()} == labels
    elif fmt == "lex-v2":  # the name is ASCII; the display name keeps the label
        assert {iid: v[2] for iid, v in got.items()} == labels
        if lang == "zh":
            assert got["intent-zh0000000001"][0] == "intent_zh0000000001"  # id-based
        else:
            assert got["intent-en0000000002"][0] == "Cafe_creme_refund"  # transliterated
    elif fmt == "rasa":
        if lang == "zh":
            assert got["intent-zh0000000001"][0] == "查询-酒店-地址"  # Chinese kept
        else:  # "card top-up" and "card_top-up" map to one name: the later id gets _2
            assert got["intent-en0000000003"][0] == "card_top-up"
            assert got["intent-en0000000004"][0] == "card_top-up_2"


def test_export_to_stdout_skips_tombstoned_intents(kafka_settings, monkeypatch):
    intents = catalog_of("en")
    publish(kafka_settings, intents, tombstones=("intent-en0000000003",))
    result = catalog_cli(monkeypatch, kafka_settings, "export", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    got = read_csv(result.stdout)
    assert set(got) == {"intent-en0000000001", "intent-en0000000002", "intent-en0000000004"}
    assert "exported 3 intents" in result.stderr


@pytest.fixture(scope="module")
def discover_outputs(tmp_path_factory) -> dict[str, Path]:
    """Real ``dialin discover`` outputs: 120 BANKING77 rows, 150 CrossWOZ lines (lsa)."""
    folder = tmp_path_factory.mktemp("discover")
    lines = (DATA / "crosswoz_sample.jsonl").read_text(encoding="utf-8").splitlines()[:150]
    (folder / "zh.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = (DATA / "banking77_sample.csv").read_text(encoding="utf-8").splitlines()
    (folder / "en.csv").write_text("\n".join(rows[:1] + rows[1::5]) + "\n", encoding="utf-8")
    out = {}
    for lang, source, extra in (("en", "en.csv", []), ("zh", "zh.jsonl", ["--role-field", "role"])):
        out[lang] = folder / f"intents-{lang}.json"
        result = runner.invoke(app, ["discover", str(folder / source), "--text-field", "text",
                                     *extra, "--embedder", "lsa", "--out", str(out[lang])])
        assert result.exit_code == 0, result.stderr
    return out


@pytest.mark.parametrize("lang", LANGS)
def test_export_from_a_discover_output(lang, discover_outputs, tmp_path):
    doc = json.loads(discover_outputs[lang].read_text(encoding="utf-8"))
    good = {it["id"]: it for it in doc["intents"] if it["verdict"] != "Bad"}
    assert good
    for fmt in FORMATS:
        out = tmp_path / f"x.{fmt}"
        result = runner.invoke(app, ["catalog", "export", "--format", fmt, "--from",
                                     str(discover_outputs[lang]), "--out", str(out)])
        assert result.exit_code == 0, (fmt, result.stderr)
        text = out.read_text(encoding="utf-8")
        ids = {"rasa": lambda: set(read_rasa(text)), "csv": lambda: set(read_csv(text)),
               "dialogflow-cx": lambda: set(read_cx(text, lang)),
               "lex-v2": lambda: set(read_lex(text, lang)),
               "dialin": lambda: {r["intent_id"] for r in json.loads(text)["intents"]}}[fmt]()
        assert ids == set(good), fmt


# --- bad input: one clear line, exit status 2 ------------------------------------------------

def test_unknown_format_is_one_line(tmp_path):
    result = runner.invoke(app, ["catalog", "export", "--format", "watson", "--out",
                                 str(tmp_path / "x")])
    one_error_line(result, "watson")


def test_zero_examples_is_one_line():
    one_error_line(runner.invoke(app, ["catalog", "export", "--format", "csv",
                                       "--max-examples", "0"]), "--max-examples")


def test_empty_catalog_is_one_line(kafka_settings, monkeypatch, tmp_path):
    out = tmp_path / "never.yml"
    one_error_line(catalog_cli(monkeypatch, kafka_settings, "export", "--format", "rasa",
                               "--out", str(out)),
                   kafka_settings.topic_catalog, "nothing to export")
    merged_only = [i for i in catalog_of("en") if not i.active]
    publish(kafka_settings, merged_only)
    one_error_line(catalog_cli(monkeypatch, kafka_settings, "export", "--format", "lex-v2"),
                   "no active intent")
    assert not out.exists()


@pytest.mark.parametrize("fmt", ["rasa", "dialogflow-cx", "lex-v2", "csv"])
def test_a_label_that_names_nothing_is_one_line(fmt, kafka_settings, monkeypatch):
    intents = catalog_of("zh")
    intents[1].label = "？？ —"
    publish(kafka_settings, intents)
    one_error_line(catalog_cli(monkeypatch, kafka_settings, "export", "--format", fmt),
                   intents[1].intent_id, "no letter or digit")


@pytest.mark.parametrize("content, words", [
    ("not json at all", ["not JSON"]),
    ('{"metadata": {"embedder": "lsa"}}', ["not a `dialin discover` output", "intents"]),
    ('{"metadata": {"embedder": "lsa"}, "intents": [{"id": "x", "label": 3}]}', ["intents.0"]),
])
def test_a_malformed_discover_file_is_one_line(content, words, tmp_path):
    path = tmp_path / "intents.json"
    path.write_text(content, encoding="utf-8")
    one_error_line(runner.invoke(app, ["catalog", "export", "--format", "rasa", "--from",
                                       str(path)]), str(path), *words)
    one_error_line(runner.invoke(app, ["catalog", "export", "--format", "rasa", "--from",
                                       str(tmp_path / "missing.json")]), "no such file")
