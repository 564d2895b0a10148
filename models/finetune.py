"""LoRA fine-tuning of a judge/namer from annotated clusters (``pip install 'dialin[finetune]'``).

The paper's fine-tuned 7B/14B Qwen models beat GPT-4o as cluster judges (§6.1, App. B):
this module trains such LoRA adapters with ``peft`` + ``transformers`` (``Trainer``)
from the JSONL of :func:`dialin.models.export_annotations`. Each example is the exact
chat the LLM backends send (same prompt files, same quoting) followed by the annotated
answer, and only the answer's tokens carry loss (supervised fine-tuning).

On a GPU machine::

    python -m dialin.models.finetune annotations.jsonl \\
        --base-model Qwen/Qwen2.5-7B-Instruct --out adapters/dialin-judge --task judge
    vllm serve Qwen/Qwen2.5-7B-Instruct --enable-lora \\
        --lora-modules dialin-judge=adapters/dialin-judge
    dialin discover calls.jsonl --judge openai --llm-url http://localhost:8000/v1 \\
        --llm-model dialin-judge

Everything heavy is imported inside the functions, so the module can be read (and the
CLI print its help) without the extra installed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from ._annotations import Annotation, AnnotationError, load_annotations
from .llm._prompts import prompt_version

INSTALL_HINT = "fine-tuning needs peft and transformers: pip install 'dialin[finetune]'"
#: Attention projections of Qwen2/Llama-style models, the paper's LoRA targets.
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


def _chat_text(tokenizer, messages: list[dict], generation_prompt: bool) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=generation_prompt)
    # A base model without a chat template: a plain, documented layout.
    text = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages)
    return text + ("<|assistant|>\n" if generation_prompt else "")


def build_example(tokenizer, messages: list[dict], max_length: int = 2048) -> dict[str, list[int]]:
    """Token ids of the whole chat with labels only on the answer (-100 on the prompt).

    Too long a chat keeps its end (the question and the answer), dropping the start of
    the system prompt's demonstrations rather than the answer.
    """
    prompt = _chat_text(tokenizer, messages[:-1], generation_prompt=True)
    full = _chat_text(tokenizer, messages, generation_prompt=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently with the answer")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        answer_ids = [*answer_ids, tokenizer.eos_token_id]
    ids = (prompt_ids + answer_ids)[-max_length:]
    n_answer = min(len(answer_ids), len(ids))
    labels = [-100] * (len(ids) - n_answer) + ids[len(ids) - n_answer:]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def train_lora(annotations: str | Path | list[Annotation], output_dir: str | Path, *,
               base_model: str | None = None, model: Any = None, tokenizer: Any = None,
               task: str | None = None, language: str = "auto", prompt_dir: str | None = None,
               epochs: float = 2.0, max_steps: int = -1, learning_rate: float = 2e-4,
               batch_size: int = 4, grad_accumulation: int = 1, lora_r: int = 8,
               lora_alpha: int = 16, lora_dropout: float = 0.05,
               target_modules: tuple[str, ...] = DEFAULT_TARGETS, max_length: int = 2048,
               seed: int = 0) -> dict:
    """Train a LoRA adapter and save it (with ``dialin_finetune.json``) in ``output_dir``.

    Give ``base_model`` (a Hugging Face name or path) or an already built ``model`` and
    ``tokenizer``. Returns the summary also written to ``dialin_finetune.json``.
    """
    try:
        import peft
        import torch
        import transformers
    except ImportError as exc:
        raise ModuleNotFoundError(INSTALL_HINT) from exc

    items = (load_annotations(annotations, task=task) if isinstance(annotations, str | Path)
             else [a for a in annotations if task is None or a.task == task])
    if not items:
        raise AnnotationError("no labelled annotations to train on")
    if model is None or tokenizer is None:
        if base_model is None:
            raise ValueError("give base_model, or both model and tokenizer")
        tokenizer = tokenizer or transformers.AutoTokenizer.from_pretrained(base_model)
        model = model or transformers.AutoModelForCausalLM.from_pretrained(base_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    data = [build_example(tokenizer, a.messages(language, prompt_dir), max_length) for a in items]
    lora = peft.LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                           target_modules=list(target_modules), task_type="CAUSAL_LM")
    model = peft.get_peft_model(model, lora)
    args = transformers.TrainingArguments(
        output_dir=str(output_dir), num_train_epochs=epochs, max_steps=max_steps,
        learning_rate=learning_rate, per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accumulation, logging_steps=1, save_strategy="no",
        report_to=[], seed=seed, remove_unused_columns=False, disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available())
    collator = transformers.DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data,
                                   data_collator=collator)
    result = trainer.train()
    model.save_pretrained(str(output_dir))
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    summary = {
        "base_model": base_model or getattr(model.config, "_name_or_path", ""),
        "examples": len(data),
        "by_task": dict(Counter(a.task for a in items)),
        "steps": int(result.global_step),
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "prompt_version": prompt_version(prompt_dir),
        "lora": {"r": lora_r, "alpha": lora_alpha, "dropout": lora_dropout,
                 "target_modules": list(target_modules)},
    }
    if summary["final_loss"] is not None and not math.isfinite(summary["final_loss"]):
        raise RuntimeError(f"training diverged (loss {summary['final_loss']})")
    Path(output_dir, "dialin_finetune.json").write_text(json.dumps(summary, indent=2),
                                                        encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dialin.models.finetune",
                                     description="Train a LoRA judge/namer from annotated clusters.")
    parser.add_argument("annotations", help="annotated JSONL (see dialin.models.export_annotations)")
    parser.add_argument("--base-model", required=True, help="Hugging Face model name or path")
    parser.add_argument("--out", required=True, help="folder for the adapter")
    parser.add_argument("--task", choices=["judge", "name"], default=None)
    parser.add_argument("--language", default="auto", choices=["auto", "en", "zh"])
    parser.add_argument("--prompt-dir", default=None)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--max-steps", type=int, default=-1)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lora-r", type=int, default=8)
    args = parser.parse_args(argv)
    try:
        summary = train_lora(args.annotations, args.out, base_model=args.base_model,
                             task=args.task, language=args.language, prompt_dir=args.prompt_dir,
                             epochs=args.epochs, max_steps=args.max_steps,
                             learning_rate=args.learning_rate, batch_size=args.batch_size,
                             lora_r=args.lora_r)
    except (AnnotationError, ModuleNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
