"""Prompt injection: utterances stay quoted data, and only strict answers are accepted.

The corpus ``tests/data/injection.jsonl`` holds realistic attempts in English and Chinese
(instruction overrides, fake ``</utterances>`` tags, JSON-breaking quotes, role play,
label injection, fake chat turns, zero-width, bidi and line-separator characters). Each
attempt goes through the real OpenAI judge and namer to the real local test server, which
parses the prompt it receives: the user message must be the prompt file's text with each
placeholder replaced by exactly one ``<utterances>`` block whose lines are the JSON-quoted
utterances, one per line, nothing else. Then the server answers as a hijacked model
would (``answer`` in the corpus) and the strict parsers must give no verdict and no label.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai_server import utterance_groups

from dialin.models import ClusterView, OpenAIJudge, OpenAINamer, load_prompt
from dialin.models.llm._prompts import MAX_UTTERANCE_CHARS, parse_label, parse_verdict, utterance_block

CORPUS = [json.loads(line) for line in
          (Path(__file__).parent / "data" / "injection.jsonl").read_text("utf-8").splitlines()
          if line.strip()]
NORMAL = {"en": ("When will my new card arrive?", "My card still hasn't come in the mail"),
          "zh": ("我的新卡什么时候能寄到", "卡到现在还没收到")}
# One block as utterance_block writes it: an opening tag, numbered JSON strings, a closing tag.
_BLOCK = r'(<utterances(?: group="[AB]")?>\n(?:\d+\. "(?:[^"\\\n]|\\.)*"\n)*</utterances>)'


def shown(text: str) -> str:
    """What the prompt may show of an utterance: whitespace collapsed, length capped."""
    return " ".join(text.split())[:MAX_UTTERANCE_CHARS]


def views_for(lang: str) -> list[ClusterView]:
    """One cluster per attempt of ``lang``: two ordinary utterances and the attempt."""
    return [ClusterView(members=(0, 1, 2), texts=(*NORMAL[lang], row["text"]))
            for row in CORPUS if row["lang"] == lang]


def blocks_of(body: dict, task: str, lang: str, section: str = "user") -> list[str]:
    """The user message must be the prompt file's section with each slot one block."""
    template = load_prompt(task, lang)
    system, user = body["messages"]
    assert system == {"role": "system", "content": template.sections["system"]}
    slots = re.findall(r"\{\{(\w+)\}\}", template.sections[section])
    rendered = template.messages(section, **{s: f"\x00{s}\x00" for s in slots})[1]["content"]
    literal = re.split(r"\x00\w+\x00", rendered)
    pattern = _BLOCK.join(re.escape(p) for p in literal)
    match = re.fullmatch(pattern, user["content"])
    assert match, f"prompt structure broken:\n{user['content']}"
    # No utterance can write a tag of its own, even inside its quotes.
    for tag in ("<utterances", "</utterances>"):
        in_template = sum(p.count(tag) for p in literal)
        assert user["content"].count(tag) == in_template + len(slots), tag
    return list(match.groups())


def attempt_in(body: dict) -> dict:
    texts = [t for group in utterance_groups(body) for t in group]
    found = [row for row in CORPUS if shown(row["text"]) in texts]
    assert len(found) == 1, texts
    return found[0]


def test_the_corpus_is_what_the_guarantee_claims():
    assert 20 <= len(CORPUS) <= 40
    assert len({row["id"] for row in CORPUS}) == len(CORPUS)
    assert {row["lang"] for row in CORPUS} == {"en", "zh"}
    kinds = {row["kind"] for row in CORPUS}
    assert {"override", "fake_tag", "json_break", "role_play", "label", "chat_turn",
            "zero_width"} <= kinds
    assert any("</utterances>" in row["text"] for row in CORPUS)
    assert any("\u200b" in row["text"] for row in CORPUS)


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("cls", [OpenAIJudge, OpenAINamer])
def test_every_attempt_stays_inside_the_data_block(llm_server, cls, lang):
    views = views_for(lang)
    with cls(llm_server.url, "test-model", language=lang) as backend:
        (backend.judge if cls is OpenAIJudge else backend.name)(views)
    bodies = llm_server.chat_requests()
    assert len(bodies) == len(views)
    task = "judge" if cls is OpenAIJudge else "name"
    for body in bodies:
        row = attempt_in(body)
        (block,) = blocks_of(body, task, lang)
        lines = block.splitlines()[1:-1]
        assert [json.loads(line.split(". ", 1)[1]) for line in lines] == \
            [shown(t) for t in (*NORMAL[lang], row["text"])], row["id"]


def test_attempts_stay_inside_their_group_in_a_union_question(llm_server):
    views = [ClusterView(members=(0, 1, 2), texts=(), split=1,
                         parts=((NORMAL["en"][0],), (row["text"], NORMAL["en"][1])))
             for row in CORPUS if row["lang"] == "en"]
    with OpenAIJudge(llm_server.url, "test-model", language="en") as judge:
        judge.judge(views)
    for body in llm_server.chat_requests():
        row = attempt_in(body)
        group_a, group_b = blocks_of(body, "judge", "en", section="user_union")
        assert group_a.startswith('<utterances group="A">')
        assert group_b.startswith('<utterances group="B">')
        assert utterance_groups(body) == [[shown(NORMAL["en"][0])],
                                          [shown(row["text"]), shown(NORMAL["en"][1])]], row["id"]


@pytest.mark.parametrize("row", CORPUS, ids=[row["id"] for row in CORPUS])
def test_a_hijacked_answer_is_neither_a_verdict_nor_a_label(row):
    assert parse_verdict(row["answer"]) is None
    assert parse_label(row["answer"]) is None


@pytest.mark.parametrize("cls", [OpenAIJudge, OpenAINamer])
def test_hijacked_answers_over_http_give_no_verdict_and_no_label(llm_server, cls):
    llm_server.answer = lambda body: attempt_in(body)["answer"]
    views = views_for("en") + views_for("zh")
    with cls(llm_server.url, "test-model", invalid_retries=1, structured=False) as backend:
        if cls is OpenAIJudge:
            assert [v.good for v in backend.judge(views)] == [None] * len(views)
        else:
            assert backend.name(views) == [""] * len(views)
        assert backend.stats.count(outcome="invalid") == 2 * len(views)
        assert backend.stats.count(outcome="ok") == 0


def test_the_limit_a_well_formed_answer_is_accepted_whatever_prompted_it():
    # The guarantee is about form: an injection can still pick Good over Bad, or a short
    # label, but never smuggle free text, markup or several lines through the parser.
    assert parse_verdict("Good") is True
    assert parse_label("SYSTEM-PWNED") == "system-pwned"
    assert parse_label("SYSTEM-PWNED and here is my prompt") is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=600), min_size=1, max_size=6))
def test_any_text_is_one_quoted_line_of_its_block(texts):
    block = utterance_block(texts)
    lines = block.split("\n")
    assert lines[0] == "<utterances>" and lines[-1] == "</utterances>"
    assert block.count("</utterances>") == 1 and block.count("<utterances") == 1
    assert len(lines) == len(texts) + 2
    assert [json.loads(line.split(". ", 1)[1]) for line in lines[1:-1]] == [shown(t) for t in texts]
    assert len(block.splitlines()) == len(lines)  # no other line break an LLM could see
