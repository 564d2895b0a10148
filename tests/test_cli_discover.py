"""``dialin discover``: the intents JSON schema, roles, ids, the LLM backend, and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dialin.streams.cli import app


pytestmark = pytest.mark.usefixtures("clean_settings")

DATA = Path(__file__).parent / "data"
BANKING = str(DATA / "banking77_sample.csv")
CROSSWOZ = str(DATA / "crosswoz_sample.jsonl")
runner = CliRunner()

INTENT_KEYS = {"id", "cluster", "label", "role", "size", "share", "rows", "examples",
               "verdict", "confidence"}
METADATA_KEYS = {"input", "n_utterances", "n_intents", "embedder", "strategy", "judge", "namer",
                 "prompt_version", "llm", "judge_calls", "judge_calls_per_utterance",
                 "calls_by_phase", "seed", "seconds", "dialin_version", "created_at"}


def discover(*args: str):
    return runner.invoke(app, ["discover", *args])


def read(path: Path) -> dict:
    """Parse strictly: NaN or Infinity would break every JSON reader but Python's."""
    def reject(constant: str):
        raise AssertionError(f"{path} is not strict JSON: {constant}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=reject)


def test_intents_json_schema_and_report(tmp_path):
    out, html = tmp_path / "intents.json", tmp_path / "report.html"
    result = discover(BANKING, "--text-field", "text", "--embedder", "lsa",
                      "--out", str(out), "--report", str(html))
    assert result.exit_code == 0, result.stderr
    doc = read(out)
    assert METADATA_KEYS <= set(doc["metadata"])
    meta = doc["metadata"]
    assert meta["n_utterances"] == 600 and meta["judge"] == "heuristic"
    assert meta["strategy"] == "budget" and meta["embedder"].startswith("lsa")
    assert meta["prompt_version"] is None and meta["llm"] is None  # no LLM in this run
    intents = doc["intents"]
    assert len(intents) == meta["n_intents"] >= 2
    for it in intents:
        assert set(it) == INTENT_KEYS
        assert it["size"] == len(it["rows"]) and 1 <= len(it["examples"]) <= 10
        assert it["verdict"] in ("Good", "Bad", None)
        assert isinstance(it["label"], str) and it["label"]
    sizes = [it["size"] for it in intents]
    assert sizes == sorted(sizes, reverse=True)
    # Every row is in exactly one intent or listed as unassigned.
    rows = [r for it in intents for r in it["rows"]] + doc["unassigned_rows"]
    assert sorted(rows) == list(range(600))
    assert len({it["id"] for it in intents}) == len(intents)
    assert isinstance(doc["log"], list)
    text = html.read_text(encoding="utf-8")
    assert "<svg" in text and intents[0]["label"].split()[0] in text


def test_timings_cover_every_stage(tmp_path):
    out, html, clock = tmp_path / "intents.json", tmp_path / "report.html", tmp_path / "timings.json"
    result = discover(BANKING, "--text-field", "text", "--embedder", "lsa", "--out", str(out),
                      "--report", str(html), "--timings", str(clock))
    assert result.exit_code == 0, result.stderr
    stages = read(clock)
    assert list(stages) == ["load", "embed", "cluster", "name", "write", "report", "total"]
    assert all(v >= 0 for v in stages.values()) and stages["name"] > 0
    # The stages add up to the whole (naming is carved out of clustering, not counted twice).
    assert sum(v for k, v in stages.items() if k != "total") == pytest.approx(stages["total"], abs=0.005)


def test_paper_strategy_log_is_strict_json(tmp_path):
    out = tmp_path / "intents.json"
    result = discover(BANKING, "--text-field", "text", "--embedder", "lsa", "--strategy", "paper",
                      "--out", str(out))
    assert result.exit_code == 0, result.stderr
    doc = read(out)
    assert doc["metadata"]["strategy"] == "paper" and doc["metadata"]["judge_budget"] is None
    assert doc["log"] and {"iteration", "n_cluster", "good", "bad", "rate"} <= set(doc["log"][0])


def test_same_input_and_seed_give_the_same_ids(tmp_path):
    ids = []
    for name in ("a.json", "b.json"):
        result = discover(BANKING, "--text-field", "text", "--embedder", "lsa", "--seed", "1",
                          "--out", str(tmp_path / name))
        assert result.exit_code == 0, result.stderr
        ids.append([it["id"] for it in read(tmp_path / name)["intents"]])
    assert ids[0] == ids[1]


def test_roles_and_id_field(tmp_path):
    src = tmp_path / "calls.jsonl"
    with open(CROSSWOZ, encoding="utf-8") as f, open(src, "w", encoding="utf-8") as g:
        for line in f:
            row = json.loads(line)
            row["uid"] = f"{row['call_id']}#{row['turn']}"
            g.write(json.dumps(row, ensure_ascii=False) + "\n")
    out = tmp_path / "intents.json"
    result = discover(str(src), "--text-field", "text", "--role-field", "role",
                      "--id-field", "uid", "--embedder", "lsa", "--out", str(out))
    assert result.exit_code == 0, result.stderr
    intents = read(out)["intents"]
    assert {it["role"] for it in intents} == {"customer", "agent"}
    assert all("#" in r for it in intents for r in it["rows"])


def test_embedding_cache_is_reused(tmp_path):
    cache = tmp_path / "cache"
    for name in ("a.json", "b.json"):
        result = discover(BANKING, "--text-field", "text", "--embedding-cache", str(cache),
                          "--out", str(tmp_path / name))
        assert result.exit_code == 0, result.stderr
    assert any(cache.iterdir())
    assert read(tmp_path / "a.json")["intents"] == read(tmp_path / "b.json")["intents"]


def test_labels_come_from_the_llm_server(tmp_path, llm_server):
    out = tmp_path / "intents.json"
    result = discover(BANKING, "--text-field", "text", "--embedder", "lsa", "--judge", "openai",
                      "--namer", "openai", "--llm-url", llm_server.url, "--llm-model", "test-model",
                      "--out", str(out), "--report", str(tmp_path / "r.html"))
    assert result.exit_code == 0, result.stderr
    doc = read(out)
    assert {it["label"] for it in doc["intents"]} == {"inquire-test"}
    meta = doc["metadata"]
    assert meta["judge"] == "openai" and meta["namer"] == "openai" and meta["prompt_version"]
    assert meta["llm"]["calls"]["name"]["ok"] >= 1
    assert any(it["confidence"] is not None for it in doc["intents"])


def test_completes_when_a_fifth_of_llm_requests_fail(tmp_path, llm_server):
    llm_server.fail = lambda i, body: ("garbage", None, "500", None, None, "notjson", None, None,
                                       None, None)[i % 10]
    out = tmp_path / "intents.json"
    result = discover(BANKING, "--text-field", "text", "--embedder", "lsa", "--judge", "openai",
                      "--namer", "openai", "--llm-url", llm_server.url, "--llm-model", "test-model",
                      "--out", str(out))
    assert result.exit_code == 0, result.stderr
    doc = read(out)
    calls = doc["metadata"]["llm"]["calls"]
    assert calls["judge"].get("invalid", 0) + calls["name"].get("invalid", 0) > 0
    assert all(it["label"] for it in doc["intents"])
    assert doc["metadata"]["llm"]["http_status"].get("500", 0) > 0


def test_oracle_is_not_offered():
    result = discover(BANKING, "--text-field", "text", "--judge", "oracle")
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_bad_input_is_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": \n', encoding="utf-8")
    for args, expected in [
        ([str(bad), "--text-field", "text"], ":2: invalid JSON"),
        ([str(tmp_path / "x.txt"), "--text-field", "text"], "unsupported file type"),
        ([BANKING, "--text-field", "text", "--id-field", "nope"], "id field 'nope'"),
        ([BANKING, "--text-field", "text", "--namer", "openai", "--embedder", "lsa"], "--llm-url"),
    ]:
        result = discover(*args, "--out", str(tmp_path / "o.json"))
        assert result.exit_code == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "o.json").exists()
