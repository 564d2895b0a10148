"""``--prune none|heuristic|llm``: the paper strategy's search-space pruning from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dialin.streams.cli import app

from openai_server import task_of

BANKING = str(Path(__file__).parent / "data" / "banking77_sample.csv")
ARGS = ["evaluate", BANKING, "--text-field", "text", "--label-field", "category",
        "--judge", "oracle", "--embedder", "lsa", "--json"]
runner = CliRunner()


pytestmark = pytest.mark.usefixtures("clean_settings")


def itl(*extra: str) -> dict:
    result = runner.invoke(app, [*ARGS, *extra])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["itl"]


def discover_log(tmp_path, *extra: str) -> list[dict]:
    out = tmp_path / "intents.json"
    result = runner.invoke(app, ["discover", BANKING, "--text-field", "text", "--embedder", "lsa",
                                 "--strategy", "paper", "--out", str(out), *extra])
    assert result.exit_code == 0, result.stderr
    return json.loads(out.read_text())["log"]


def test_heuristic_pruning_is_reported_and_changes_the_search(tmp_path):
    plain = itl("--strategy", "paper")
    pruned = itl("--strategy", "paper", "--prune", "heuristic")
    assert plain["prune"] == "none" and plain["prune_calls"] == 0
    assert pruned["prune"] == "heuristic" and pruned["prune_calls"] == 0
    assert {r["proposed_by"] for r in discover_log(tmp_path)} == {"grid"}
    log = discover_log(tmp_path, "--prune", "heuristic")
    assert {r["proposed_by"] for r in log if r["iteration"] == 1} == {"grid"}
    assert {r["proposed_by"] for r in log if r["iteration"] > 1} == {"HeuristicPruner"}


def test_llm_pruning_asks_the_configured_server(llm_server, tmp_path):
    llm_server.answer = lambda body: "[12, 9, 7, 5, 3]" if task_of(body) == "prune" else "Good"
    report = itl("--strategy", "paper", "--prune", "llm", "--llm-url", llm_server.url,
                 "--llm-model", "test-model")
    prunes = [b for b in llm_server.chat_requests() if task_of(b) == "prune"]
    assert report["prune"] == "llm" and report["prune_calls"] == len(prunes) > 0
    assert report["llm"]["calls"]["prune"]["ok"] == len(prunes)
    assert "judge" not in report["llm"]["calls"]  # the oracle judged; only pruning went out
    log = discover_log(tmp_path, "--prune", "llm", "--llm-url", llm_server.url,
                       "--llm-model", "test-model")
    later = [r for r in log if r["iteration"] > 1]
    assert {r["proposed_by"] for r in later} == {"LLMPruner"}
    assert {r["n_cluster"] for r in later} <= {12, 9, 7, 5, 3}


def test_the_budget_strategy_ignores_pruning():
    report = itl("--strategy", "budget", "--prune", "llm")  # no LLM URL needed: not built
    assert report["strategy"] == "budget" and report["prune_calls"] == 0


def test_llm_pruning_without_a_server_is_one_line():
    result = runner.invoke(app, [*ARGS, "--strategy", "paper", "--prune", "llm"])
    assert result.exit_code == 2 and result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert errors == ["error: --prune llm needs an LLM server: set --llm-url or DIALIN_LLM_URL"]
    assert "Traceback" not in result.stderr


def test_a_bad_choice_is_a_usage_error():
    result = runner.invoke(app, [*ARGS, "--prune", "magic"])
    assert result.exit_code == 2 and "--prune" in result.stderr
