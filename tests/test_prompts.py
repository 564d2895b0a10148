"""Prompt files, language choice, quoting, and the strict answer parsers."""

from __future__ import annotations

import json
import math
import shutil
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai_server import utterance_groups

from dialin.models import PROMPT_VERSION, ClusterView, OpenAIJudge, load_prompt, prompt_version
from dialin.models.llm._prompts import (
    PROMPT_DIR,
    PromptError,
    detect_language,
    judge_messages,
    p_good,
    parse_counts,
    parse_label,
    parse_verdict,
    utterance_block,
)


@pytest.mark.parametrize("task", ["judge", "name", "prune"])
@pytest.mark.parametrize("language", ["en", "zh"])
def test_every_packaged_prompt_loads_with_a_version_and_five_demonstrations(task, language):
    template = load_prompt(task, language)
    assert template.version.startswith(f"{task}-{language}-")
    system = template.sections["system"]
    assert system.count("input:") == 5 and system.count("output:") == 5
    if task != "prune":
        # Demonstrations use the same quoted, delimited form as real questions.
        assert system.count("</utterances>") >= 5


@pytest.mark.parametrize("task", ["judge", "name"])
@pytest.mark.parametrize("language", ["en", "zh"])
def test_demonstration_answers_parse(task, language):
    system = load_prompt(task, language).sections["system"]
    answers = [line.split("output:", 1)[1] for line in system.splitlines()
               if line.startswith("output:")]
    parse = parse_verdict if task == "judge" else parse_label
    assert all(parse(a) is not None for a in answers)


def test_prompt_version_hashes_the_files(tmp_path):
    assert len(PROMPT_VERSION) == 12
    edited = tmp_path / "prompts"
    shutil.copytree(PROMPT_DIR, edited)
    assert prompt_version(edited) == PROMPT_VERSION
    path = edited / "judge_en.txt"
    path.write_text(path.read_text().replace("version: judge-en-1", "version: judge-en-2"))
    assert prompt_version(edited) != PROMPT_VERSION
    assert load_prompt("judge", "en", edited).version == "judge-en-2"


def test_a_user_prompt_dir_is_what_the_server_receives(llm_server, tmp_path):
    edited = tmp_path / "prompts"
    shutil.copytree(PROMPT_DIR, edited)
    path = edited / "judge_en.txt"
    path.write_text(path.read_text().replace("You are a helpful assistant", "You are our QA bot"))
    with OpenAIJudge(llm_server.url, "m", prompt_dir=str(edited)) as judge:
        judge.judge([ClusterView(members=(0, 1), texts=("a", "b"))])
    assert llm_server.chat_requests()[0]["messages"][0]["content"].startswith("You are our QA bot")


def test_a_broken_prompt_file_is_a_clear_error(tmp_path):
    (tmp_path / "judge_en.txt").write_text("[system]\nhello\n[user]\n{{utterances}}\n")
    with pytest.raises(PromptError, match="version"):
        load_prompt("judge", "en", tmp_path)
    with pytest.raises(PromptError, match="not found"):
        load_prompt("name", "en", tmp_path)
    with pytest.raises(PromptError, match="language"):
        load_prompt("judge", "fr")


@pytest.mark.parametrize("texts, language", [
    (["How do I top up my card?"], "en"),
    (["我想咨询一下企业财产保险"], "zh"),
    (["我的 card 丢了怎么办"], "zh"),
    (["OK", "thanks 谢谢 so much for everything today"], "en"),
    ([], "en"),
])
def test_language_follows_the_share_of_cjk_characters(texts, language):
    assert detect_language(texts) == language


@given(st.lists(st.text(max_size=60), min_size=1, max_size=8))
def test_any_utterances_round_trip_through_the_block_and_never_close_it(texts):
    block = utterance_block(texts)
    body = {"messages": [{"role": "user", "content": block}]}
    assert block.count("</utterances>") == 1 and block.endswith("</utterances>")
    assert utterance_groups(body) == [[" ".join(t.split()) for t in texts]]


def test_a_union_with_more_than_two_parts_puts_the_rest_in_group_b():
    view = ClusterView(members=(0, 1, 2), texts=(), parts=(("a",), ("b",), ("c",)))
    content = judge_messages(load_prompt("judge", "en"), view)[1]["content"]
    assert utterance_groups({"messages": [{"role": "user", "content": content}]}) == [["a"], ["b", "c"]]


@pytest.mark.parametrize("text, label", [
    ("inquire-card_arrival", "inquire-card_arrival"),
    ("Inquire - card arrival", "inquire-card_arrival"),
    ('"request-refund".', "request-refund"),
    ("询问-优惠", "询问-优惠"),
    ('{"label": "report-lost_card"}', "report-lost_card"),
    ("inquire", None),
    ("inquire-card-arrival", None),
    ("The label is: inquire-card", None),
    ("inquire-card\nreport-loss", None),
    ("a" * 41 + "-b", None),
    ("", None),
    (None, None),
])
def test_label_parsing_is_strict(text, label):
    assert parse_label(text) == label


@pytest.mark.parametrize("text, counts", [
    ("[30, 20, 40]", [30, 20, 40]),
    ("[30, 30, 20.0, 5000, \"x\", true, 40, 50, 60, 70]", [30, 20, 40, 50, 60]),
    ('{"counts": [12, 11]}', [12, 11]),
    ("I suggest 30 or 40", []),
    ("[2.5]", []),
    ("{}", []),
])
def test_count_parsing_keeps_only_distinct_integers_in_range(text, counts):
    assert parse_counts(text, lo=5, hi=100, k=5) == counts


def test_p_good_reads_the_first_verdict_token_even_inside_json():
    def lp(p: float) -> float:
        return math.log(p)

    plain = [("Good", {"Good": lp(0.6), "Bad": lp(0.2), "The": lp(0.2)})]
    assert p_good(plain) == pytest.approx(0.75)
    as_json = [('{"', {'{"': 0.0}), ("verdict", {"verdict": 0.0}), ('":"', {'":"': 0.0}),
               ("Bad", {"Bad": lp(0.9), "Good": lp(0.1)})]
    assert p_good(as_json) == pytest.approx(0.1)
    assert p_good([("Sure", {"Sure": 0.0})]) is None
    assert p_good([]) is None


def test_the_json_schema_for_each_task_is_valid_json():
    from dialin.models.llm._prompts import json_schema_format

    for task in ("judge", "name", "prune"):
        assert json.loads(json.dumps(json_schema_format(task)))["type"] == "json_schema"


# --- the in-process vLLM backend shares these prompts and parsers -------------------------

class _FakeVLLM:
    """Just enough of vLLM's offline API (``LLM.chat``, ``SamplingParams``) to drive the glue;
    vLLM itself needs a GPU, which the test machines lack."""

    def __init__(self, answers):
        import types

        self.answers = list(answers)
        self.conversations: list = []
        self.params: list = []
        fake = self

        class LLM:
            def __init__(self, model, **kwargs):
                fake.model, fake.kwargs = model, kwargs

            def chat(self, conversations, sampling_params, use_tqdm=True):
                fake.conversations.extend(conversations)
                fake.params.extend(sampling_params)
                return [fake._output(fake.answers.pop(0)) for _ in conversations]

        class SamplingParams:
            def __init__(self, **kwargs):
                self.kwargs = kwargs

        class StructuredOutputsParams:
            def __init__(self, **kwargs):
                self.kwargs = kwargs

        self.module = types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams)
        self.sampling = types.SimpleNamespace(StructuredOutputsParams=StructuredOutputsParams)

    @staticmethod
    def _output(text):
        import types

        lp = types.SimpleNamespace
        position = {1: lp(logprob=math.log(0.7), decoded_token="Good"),
                    2: lp(logprob=math.log(0.3), decoded_token="Bad")}
        token_id = 1 if text == "Good" else 2
        completion = lp(text=text, token_ids=[token_id], logprobs=[position])
        return lp(outputs=[completion], prompt_token_ids=[0] * 50)


def test_the_vllm_judge_uses_the_same_prompts_retries_and_reads_p_good(monkeypatch):
    from dialin.models import VLLMJudge, VLLMNamer

    fake = _FakeVLLM(["Good", "nonsense", "Bad", "inquire-card", "no label here", "x"])
    monkeypatch.setitem(sys.modules, "vllm", fake.module)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", fake.sampling)
    monkeypatch.setattr("dialin.models.llm._vllm._ENGINES", {})
    judge = VLLMJudge("Qwen/Qwen2.5-7B-Instruct", invalid_retries=1, llm_kwargs={"max_model_len": 4096})
    views = [ClusterView(members=(0, 1), texts=("card", "cards")),
             ClusterView(members=(0, 1), texts=("fee", "pin"))]
    first, second = judge.judge(views)
    assert first.good is True and first.confidence == pytest.approx(0.7)
    assert second.good is False and second.backend == "vllm"
    assert fake.conversations[0] == judge_messages(load_prompt("judge", "en"), views[0])
    assert fake.params[0].kwargs["structured_outputs"].kwargs == {"choice": ["Good", "Bad"]}
    assert fake.params[2].kwargs["temperature"] > 0  # the retry of the invalid answer
    assert judge.judge(views) == [first, second] and judge.stats.cache_hits == 2
    assert judge.stats.as_dict()["calls"]["judge"] == {"cached": 2, "invalid": 1, "ok": 2}
    assert fake.kwargs == {"max_model_len": 4096}

    namer = VLLMNamer("Qwen/Qwen2.5-7B-Instruct", invalid_retries=1,
                      llm_kwargs={"max_model_len": 4096})
    assert namer.name(views) == ["inquire-card", ""]
    assert namer.client._engine() is judge.client._engine()  # one copy of the weights on the GPU


def test_a_missing_vllm_names_the_extra_to_install(monkeypatch):
    from dialin.models import VLLMJudge

    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'dialin\[gpu\]'"):
        VLLMJudge("some/model")
