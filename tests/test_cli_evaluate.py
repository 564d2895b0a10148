"""``dialin evaluate``: the one-JSON-object contract, the scores, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dialin.streams.cli import app


DATA = Path(__file__).parent / "data"
BANKING = str(DATA / "banking77_sample.csv")
CROSSWOZ = str(DATA / "crosswoz_sample.jsonl")
runner = CliRunner()


pytestmark = pytest.mark.usefixtures("clean_settings")


def evaluate(*args: str):
    return runner.invoke(app, ["evaluate", *args])


def one_line_error(result, code: int = 2) -> str:
    """The command failed with ``code`` and said so in exactly one stderr line."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


def test_oracle_json_is_one_object_with_the_contract_keys():
    result = evaluate(BANKING, "--text-field", "text", "--label-field", "category",
                      "--judge", "oracle", "--embedder", "lsa", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)  # the whole of stdout is one JSON object
    assert set(report) == {"baseline", "itl"}
    assert {"nmi", "ari", "n_clusters", "seconds"} <= set(report["baseline"])
    assert {"nmi", "ari", "n_clusters", "judge_calls", "judge_calls_per_utterance",
            "calls_by_phase", "seconds", "strategy", "judge"} <= set(report["itl"])
    assert report["baseline"]["n_clusters"] == 20  # told the true number of labels
    itl = report["itl"]
    assert itl["strategy"] == "budget"
    # The oracle says it is simulated (it knows the gold labels) and how often it errs.
    assert itl["judge"] == {"backend": "oracle", "simulated": True, "knows_gold_labels": True,
                            "sees": "every member", "accuracy": 0.96, "purity": 0.9}
    assert 0 < itl["judge_calls"] <= 0.3 * 600 + 1
    assert itl["judge_calls_per_utterance"] == pytest.approx(itl["judge_calls"] / 600, abs=1e-3)
    assert sum(itl["calls_by_phase"].values()) == itl["judge_calls"]
    assert 0.0 <= itl["nmi"] <= 1.0 and itl["n_clusters"] >= 2
    # Progress and stage lines went to stderr, not stdout.
    assert "dialin:" in result.stderr


def test_oracle_finds_the_sample_intents_not_told_how_many():
    result = evaluate(BANKING, "--text-field", "text", "--label-field", "category",
                      "--judge", "oracle", "--judge-accuracy", "1.0", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["itl"]["nmi"] > 0.7
    assert 10 <= report["itl"]["n_clusters"] <= 40


def test_paper_strategy_and_seed_are_reported():
    result = evaluate(BANKING, "--text-field", "text", "--label-field", "category",
                      "--judge", "oracle", "--strategy", "paper", "--embedder", "lsa",
                      "--seed", "3", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["itl"]["strategy"] == "paper"


def test_heuristic_human_readable_table():
    result = evaluate(BANKING, "--text-field", "text", "--label-field", "category",
                      "--embedder", "lsa")
    assert result.exit_code == 0, result.stderr
    assert "NMI" in result.stdout and "k-means (k=20, told)" in result.stdout
    assert "ITL budget / heuristic " in result.stdout
    assert result.stdout.splitlines()[-1] == "judge: heuristic"
    assert "simulated" not in result.stdout.lower() + result.stderr.lower()


def test_sampled_oracle_is_selectable_and_reported_as_simulated():
    result = evaluate(BANKING, "--text-field", "text", "--label-field", "category",
                      "--judge", "oracle-sampled", "--judge-accuracy", "0.9", "--embedder", "lsa",
                      "--json")
    assert result.exit_code == 0, result.stderr
    itl = json.loads(result.stdout)["itl"]
    assert itl["judge"] == {"backend": "oracle-sampled", "simulated": True,
                            "knows_gold_labels": True, "sees": "the prompt's sample",
                            "accuracy": 0.9, "purity": 0.9, "near_purity": 0.7, "leniency": 0.3}
    assert itl["judge_calls"] > 0 and 0.0 <= itl["nmi"] <= 1.0


def test_simulated_judges_say_so_in_the_table():
    for judge in ("oracle", "oracle-sampled"):
        result = evaluate(BANKING, "--text-field", "text", "--label-field", "category",
                          "--judge", judge, "--embedder", "lsa")
        assert result.exit_code == 0, result.stderr
        assert f"ITL budget / {judge} (simulated)" in result.stdout
        note = result.stdout.splitlines()[-1]
        assert note.startswith(f"judge: {judge}, a SIMULATED judge that knows the gold labels")
        assert "accuracy 0.96" in note and "purity 0.9" in note and note.endswith("not an LLM")
        assert f"judge {judge} (simulated: knows the gold labels)" in result.stderr


def test_roles_with_lsa_leave_unlabelled_rows_out():
    result = evaluate(CROSSWOZ, "--text-field", "text", "--label-field", "intent",
                      "--role-field", "role", "--embedder", "lsa", "--judge", "oracle", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert "have no label" in result.stderr
    assert report["itl"]["n_clusters"] >= 2


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("DIALIN_STRATEGY", "paper")
    monkeypatch.setenv("DIALIN_EMBEDDER", "lsa")
    result = evaluate(BANKING, "--text-field", "text", "--label-field", "category",
                      "--judge", "oracle", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["itl"]["strategy"] == "paper"


def test_real_process_stdout_is_exactly_one_json_object():
    cmd = [sys.executable, "-c", "from dialin.streams.cli import main; main()", "evaluate", BANKING,
           "--text-field", "text", "--label-field", "category", "--judge", "oracle",
           "--embedder", "lsa", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in __import__("os").environ.items()
                               if not k.startswith("DIALIN_")})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["itl"]["judge"]["backend"] == "oracle"
    assert proc.stdout.count("\n") == 1


@pytest.mark.parametrize("kind", ["oracle", "oracle-sampled"])
def test_the_service_and_discover_never_get_a_simulated_judge(kind, monkeypatch):
    from pydantic import ValidationError

    from dialin.streams.factory import SettingsError, build_judge
    from dialin.streams.settings import Settings, get_settings

    monkeypatch.setenv("DIALIN_JUDGE", kind)
    with pytest.raises(ValidationError):  # not a setting: the worker cannot start with it
        get_settings()
    monkeypatch.delenv("DIALIN_JUDGE")
    with pytest.raises(SettingsError, match="needs gold labels"):
        build_judge(Settings(), judge=kind)
    result = runner.invoke(app, ["discover", BANKING, "--text-field", "text", "--judge", kind])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1


# --- the LLM judge against a real local HTTP server ------------------------------------------

def test_openai_judge_against_a_local_server(llm_server):
    result = evaluate(BANKING, "--text-field", "text", "--label-field", "category",
                      "--embedder", "lsa", "--judge", "openai", "--llm-url", llm_server.url,
                      "--llm-model", "test-model", "--json")
    assert result.exit_code == 0, result.stderr
    itl = json.loads(result.stdout)["itl"]
    assert itl["judge"] == {"backend": "openai", "simulated": False}
    assert itl["judge_calls"] > 0
    judged = [r for r in llm_server.chat_requests() if "Action-Objective" not in r["messages"][0]["content"]]
    assert len(judged) >= itl["judge_calls"]
    assert itl["llm"]["calls"]["judge"]["ok"] >= 1
    assert itl["prompt_version"]


def test_openai_model_is_asked_of_the_server_when_not_given(llm_server, monkeypatch):
    monkeypatch.setenv("DIALIN_LLM_URL", llm_server.url)
    result = evaluate(BANKING, "--text-field", "text", "--label-field", "category",
                      "--embedder", "lsa", "--judge", "openai", "--json")
    assert result.exit_code == 0, result.stderr
    assert {r["model"] for r in llm_server.chat_requests()} == {"test-model"}


def test_openai_judge_survives_garbage_and_errors(llm_server):
    llm_server.fail = lambda i, body: ("garbage", "500", None, None, None)[i % 5]
    result = evaluate(BANKING, "--text-field", "text", "--label-field", "category",
                      "--embedder", "lsa", "--judge", "openai", "--llm-url", llm_server.url,
                      "--llm-model", "test-model", "--json")
    assert result.exit_code == 0, result.stderr
    llm = json.loads(result.stdout)["itl"]["llm"]
    assert llm["calls"]["judge"].get("invalid", 0) > 0
    assert llm["http_status"].get("500", 0) > 0


# --- bad input: one line on stderr, non-zero exit, no traceback ---------------------------------

def test_missing_file(tmp_path):
    line = one_line_error(evaluate(str(tmp_path / "none.csv"), "--text-field", "text",
                                   "--label-field", "category"))
    assert "no such file" in line


def test_missing_field():
    line = one_line_error(evaluate(BANKING, "--text-field", "utterance", "--label-field", "category"))
    assert "'utterance'" in line


def test_wrong_encoding(tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes("text,category\ncaf\xe9,a\n".encode("latin-1"))
    assert "not UTF-8" in one_line_error(evaluate(str(p), "--text-field", "text",
                                                  "--label-field", "category"))


def test_empty_text(tmp_path):
    p = tmp_path / "empty.jsonl"
    p.write_text('{"t": "hello", "l": "a"}\n{"t": "", "l": "b"}\n', encoding="utf-8")
    assert ":2: empty text" in one_line_error(evaluate(str(p), "--text-field", "t", "--label-field", "l"))


def test_bad_choice_is_a_usage_error_in_one_line():
    line = one_line_error(evaluate(BANKING, "--text-field", "text", "--label-field", "category",
                                   "--judge", "genius"), code=2)
    assert "--judge" in line and "genius" in line


def test_bad_number_and_missing_option_are_one_line():
    one_line_error(evaluate(BANKING, "--text-field", "text", "--label-field", "category",
                            "--judge-budget", "lots"), code=2)
    assert "--label-field" in one_line_error(evaluate(BANKING, "--text-field", "text"), code=2)


def test_out_of_range_values_name_the_option():
    assert "--judge-budget" in one_line_error(evaluate(
        BANKING, "--text-field", "text", "--label-field", "category", "--judge-budget", "-1"))
    assert "--judge-accuracy" in one_line_error(evaluate(
        BANKING, "--text-field", "text", "--label-field", "category", "--judge", "oracle",
        "--judge-accuracy", "0.2", "--embedder", "lsa"))


def test_unknown_embedder(tmp_path):
    line = one_line_error(evaluate(BANKING, "--text-field", "text", "--label-field", "category",
                                   "--embedder", str(tmp_path / "no-model")))
    assert "--embedder" in line and "no-model" in line


def test_openai_judge_without_url():
    line = one_line_error(evaluate(BANKING, "--text-field", "text", "--label-field", "category",
                                   "--judge", "openai", "--embedder", "lsa"))
    assert "--llm-url" in line and "DIALIN_LLM_URL" in line


def test_vllm_without_vllm_installed():
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vLLM is installed here: the missing-extra message cannot be shown")
    line = one_line_error(evaluate(BANKING, "--text-field", "text", "--label-field", "category",
                                   "--judge", "vllm", "--llm-model", "some/model", "--embedder", "lsa"))
    assert "--judge vllm" in line and "dialin[gpu]" in line


def test_bad_environment_variable(monkeypatch):
    monkeypatch.setenv("DIALIN_JUDGE_BUDGET", "-2")
    line = one_line_error(evaluate(BANKING, "--text-field", "text", "--label-field", "category"))
    assert "DIALIN_JUDGE_BUDGET" in line


@pytest.mark.parametrize("value", ["", "not json", "[1, 2"])
def test_an_environment_variable_that_cannot_be_parsed(monkeypatch, value):
    """pydantic-settings parses a dict or list setting as JSON before pydantic sees it; an
    empty or broken value raised its own SettingsError, a traceback."""
    monkeypatch.setenv("DIALIN_REVIEW_TOKENS", value)
    for result in (evaluate(BANKING, "--text-field", "text", "--label-field", "category"),
                   runner.invoke(app, ["review"])):  # the engine's and the service's reading
        line = one_line_error(result)
        assert "DIALIN_REVIEW_TOKENS" in line and "cannot parse" in line


# --- the command's wiring ---------------------------------------------------------------------

def test_the_option_choices_are_the_settings_literals_and_the_factory_names():
    from typing import get_args

    from dialin.streams import factory
    from dialin.streams.cli import engine
    from dialin.streams.settings import JudgeName, NamerName, Settings, StrategyName

    for choice, names, field in ((engine.JudgeChoice, JudgeName, "judge"),
                                 (engine.NamerChoice, NamerName, "namer"),
                                 (engine.StrategyChoice, StrategyName, "strategy")):
        assert [c.value for c in choice] == list(get_args(names))
        assert get_args(Settings.model_fields[field].annotation) == get_args(names)
    assert [c.value for c in engine.PruneChoice] == list(factory.PRUNERS)
    simulated = [c.value for c in engine.EvalJudge if c.value not in get_args(JudgeName)]
    assert simulated == list(factory.SIMULATED_JUDGES)


def test_the_itl_figures_are_plain_values_in_the_reported_order():
    import numpy as np

    from dialin.streams.cli.engine import ITLRun

    run = ITLRun(labels=np.array([0, 0, 1, -1]), intents=[object()], log=[{"phase": "coarse"}],
                 strategy="budget", judge="heuristic", namer="keywords", judge_budget=0.6,
                 prune="none", n_utterances=4, judge_calls=3, calls_by_phase={"coarse": 3},
                 prune_calls=0, seconds=1.5, naming_seconds=0.25)
    figures = run.figures()
    assert list(figures) == ["n_clusters", "judge_calls", "judge_calls_per_utterance",
                             "calls_by_phase", "seconds", "naming_seconds", "strategy",
                             "judge_budget", "prune", "prune_calls", "judge", "namer",
                             "n_utterances"]
    assert (figures["n_clusters"], figures["judge_calls_per_utterance"]) == (2, 0.75)
    json.dumps(figures, allow_nan=False)  # numbers and names only: no live object
    llm = ITLRun(**{**run.__dict__, "llm": {"calls": {}}, "prompt_version": "v1"}).figures()
    assert list(llm)[-2:] == ["llm", "prompt_version"] and llm["prompt_version"] == "v1"

