"""LoRA fine-tuning for a few steps on a tiny model built here from a config (no downloads).

Needs the ``finetune`` extra (peft, transformers; ``make test`` installs it, on CPU). Without
it these tests fail, never skip: CI installs it, so a skip could only hide a broken install.
"""

from __future__ import annotations

import json

import pytest

from dialin.models import PROMPT_VERSION, export_annotations, load_annotations
from dialin.models.finetune import build_example, main, train_lora

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


@pytest.fixture(scope="module")
def transformers():
    """The ``transformers`` module, once the finetune extra is known to be installed."""
    try:
        import peft  # noqa: F401
        import torch  # noqa: F401
        import transformers
    except ImportError as exc:
        pytest.fail(f"{exc.name} is not installed: the finetune extra is needed "
                    "(pip install -e '.[finetune]'; make test installs it)", pytrace=False)
    return transformers


@pytest.fixture
def annotated(tmp_path):
    path = tmp_path / "annotated.jsonl"
    clusters = [["when will my card arrive", "card not here yet"],
                ["change my pin", "why was I charged a fee"],
                ["exchange rate for euros", "what rate do you use"],
                ["top up failed", "top up limits"]]
    export_annotations(path, clusters, task="both")
    labels = iter(["Good", "inquire-card_arrival", "Bad", "inquire-pin", "Good",
                   "inquire-exchange_rate", "Bad", "report-top_up"])
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        row["label"] = next(labels)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny(annotations, transformers) -> tuple:
    """A word-level tokenizer over the training chats and a 2-layer Qwen2 on top of it."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    corpus = [m["content"] for a in annotations for m in a.messages()]
    corpus += ["<|system|> <|user|> <|assistant|>"]
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "[EOS]"]))
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]",
                                                     pad_token="[PAD]", eos_token="[EOS]")
    tokenizer.chat_template = CHAT_TEMPLATE
    config = transformers.Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, max_position_embeddings=2048)
    torch.manual_seed(0)
    return transformers.Qwen2ForCausalLM(config), tokenizer


def test_only_the_answer_carries_loss(annotated, transformers):
    annotations = load_annotations(annotated)
    _, tokenizer = tiny(annotations, transformers)
    example = build_example(tokenizer, annotations[1].messages(), max_length=4096)
    answer = [t for t in example["labels"] if t != -100]
    assert tokenizer.decode(answer[:-1]).replace(" ", "") == "inquire-card_arrival"
    assert answer[-1] == tokenizer.eos_token_id
    assert example["labels"][:-len(answer)] == [-100] * (len(example["labels"]) - len(answer))
    short = build_example(tokenizer, annotations[1].messages(), max_length=64)
    assert len(short["input_ids"]) == 64 and [t for t in short["labels"] if t != -100] == answer


def test_a_few_lora_steps_train_and_save_an_adapter(annotated, transformers, tmp_path):
    from safetensors.torch import load_file

    annotations = load_annotations(annotated)
    model, tokenizer = tiny(annotations, transformers)
    out = tmp_path / "adapter"
    summary = train_lora(annotated, out, model=model, tokenizer=tokenizer, max_steps=8,
                         learning_rate=1e-2, batch_size=4, max_length=512, lora_dropout=0.0)
    assert summary["steps"] == 8 and summary["examples"] == 8
    assert summary["by_task"] == {"judge": 4, "name": 4}
    assert summary["final_loss"] < summary["first_loss"]
    assert summary["prompt_version"] == PROMPT_VERSION
    assert json.loads((out / "dialin_finetune.json").read_text()) == summary
    assert (out / "adapter_config.json").is_file()
    weights = load_file(str(out / "adapter_model.safetensors"))
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and any(float(w.abs().sum()) > 0 for w in lora_b)  # B starts at zero


def test_the_command_line_reports_bad_input_in_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "missing.jsonl"), "--base-model", "x", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: annotation file not found") and err.count("\n") == 1
