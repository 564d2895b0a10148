"""A judge that certifies nothing: ``dialin discover`` and ``dialin evaluate`` say so.

Utterances no Good verdict covers are not an intent (label -1): the CLI lists them as
unassigned, the report still renders, and scores treat them as one more cluster. The
judge is the real test LLM server (``openai_server.py``) answering Bad to every judge
question; the service side is in ``tests/test_worker.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai_server import task_of
from typer.testing import CliRunner

from dialin.streams.cli import app

pytestmark = pytest.mark.usefixtures("clean_settings")

BANKING = str(Path(__file__).parent / "data" / "banking77_sample.csv")
runner = CliRunner()


def llm_options(server) -> list[str]:
    return ["--text-field", "text", "--embedder", "lsa", "--judge", "openai",
            "--llm-url", server.url, "--llm-model", "test-model"]


@pytest.fixture
def bad_llm(llm_server):
    llm_server.answer = lambda body: "Bad" if task_of(body) == "judge" else "inquire-test"
    return llm_server


@pytest.mark.parametrize("strategy", ["budget", "paper"])
def test_discover_lists_every_row_as_unassigned(tmp_path, bad_llm, strategy):
    out, html = tmp_path / "intents.json", tmp_path / "report.html"
    result = runner.invoke(app, ["discover", BANKING, *llm_options(bad_llm), "--strategy", strategy,
                                 "--out", str(out), "--report", str(html)])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["intents"] == [] and doc["metadata"]["n_intents"] == 0
    assert doc["metadata"]["n_unassigned"] == 600 and doc["unassigned_rows"] == list(range(600))
    assert doc["metadata"]["judge_calls"] > 0
    assert "certified no cluster: all 600 utterances are left unassigned" in result.stderr
    assert "NothingCertifiedWarning" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout.startswith("0 intents in 600 utterances, 600 unassigned (no Good verdict")
    assert "0 intents in 600 utterances" in html.read_text(encoding="utf-8")


def test_evaluate_scores_the_unassigned_rows_as_one_group(bad_llm):
    result = runner.invoke(app, ["evaluate", BANKING, "--label-field", "category",
                                 *llm_options(bad_llm), "--json"])
    assert result.exit_code == 0, result.stderr
    itl = json.loads(result.stdout)["itl"]
    assert itl["n_clusters"] == 0 and itl["nmi"] == 0.0 and itl["ari"] == 0.0
