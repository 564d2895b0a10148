"""Judge and namer on an in-process ``vllm.LLM`` (GPU machines, ``pip install 'dialin[gpu]'``).

vLLM's offline ``LLM.chat`` takes a whole batch at once and schedules it with continuous
batching, so a batch of clusters is one call. The answer is constrained with vLLM's
structured outputs (``StructuredOutputsParams`` since 0.12; the older
``GuidedDecodingParams`` is used when that is what the installed vLLM has), and parsed
with the same strict parsers and prompts as the HTTP backend (:mod:`._prompts`).
vLLM is imported on first use only, like BERTopic's optional backends, so
``dialin.models`` imports on machines without it; constructing a backend without vLLM
installed raises ``ModuleNotFoundError`` naming the extra. With a ``redactor``, utterances are
redacted before they are put in a prompt, as in the HTTP backend. Judge and namer on the same
model share one engine.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ._accounting import LLMStats, OnCall
from .._base import ClusterView, Judge, Namer, Verdict
from ._openai import RETRY_TEMPERATURE, MAX_TOKENS
from ..text._pii import Redactor, redact_view
from ._prompts import (
    PromptedMixin,
    judge_messages,
    name_messages,
    p_good,
    parse_label,
    parse_verdict,
    response_key,
    structured_choice,
)

INSTALL_HINT = "the vllm backend needs vLLM on a GPU machine: pip install 'dialin[gpu]'"


# One engine per (model, options) in the process: a judge and a namer on the same model
# share the GPU weights instead of loading them twice.
_ENGINES: dict[tuple[str, str], Any] = {}
_ENGINES_LOCK = threading.Lock()


def _check_vllm() -> None:
    """Fail at construction, without importing vLLM (slow), when it is not installed."""
    if "vllm" in sys.modules:
        missing = sys.modules["vllm"] is None
    else:
        missing = importlib.util.find_spec("vllm") is None
    if missing:
        raise ModuleNotFoundError(INSTALL_HINT)


def _import_vllm():
    try:
        import vllm
    except ImportError as exc:
        raise ModuleNotFoundError(INSTALL_HINT) from exc
    return vllm


def _shared_engine(vllm, model: str, llm_kwargs: dict | None):
    key = (model, json.dumps(llm_kwargs or {}, sort_keys=True, default=str))
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            _ENGINES[key] = vllm.LLM(model=model, **(llm_kwargs or {}))
        return _ENGINES[key]


def _sampling_params(vllm, task: str, temperature: float, seed: int | None, logprobs: bool,
                     structured: bool):
    kwargs: dict[str, Any] = {"temperature": temperature, "max_tokens": MAX_TOKENS[task],
                              "seed": seed}
    if logprobs:
        kwargs["logprobs"] = 5
    if structured:
        options = structured_choice(task)
        try:
            from vllm.sampling_params import StructuredOutputsParams
            kwargs["structured_outputs"] = StructuredOutputsParams(**options)
        except ImportError:  # vLLM < 0.11
            from vllm.sampling_params import GuidedDecodingParams
            kwargs["guided_decoding"] = GuidedDecodingParams(**options)
    return vllm.SamplingParams(**kwargs)


def _tokens(output) -> tuple[tuple[str, dict[str, float]], ...]:
    """vLLM's per-position {token_id: Logprob} into (chosen token, {text: logprob}) pairs."""
    out = []
    for token_id, position in zip(output.token_ids, output.logprobs or []):
        alternatives = {lp.decoded_token: lp.logprob for lp in position.values()
                        if lp.decoded_token is not None}
        chosen = position.get(token_id)
        if chosen is None or chosen.decoded_token is None:
            continue
        out.append((chosen.decoded_token, alternatives))
    return tuple(out)


class _VLLMBackend(PromptedMixin):
    """Engine, cache, accounting and the invalid-answer retries shared by judge and namer."""

    task = "judge"

    def __init__(self, model: str, language: str = "auto", prompt_dir: str | None = None,
                 structured: bool = True, invalid_retries: int = 2, temperature: float = 0.0,
                 on_call: OnCall | None = None, llm_kwargs: dict | None = None,
                 redactor: Redactor | None = None) -> None:
        _check_vllm()  # the one check done early: a missing extra is a setup error
        self.model = model
        self.language = language
        self.prompt_dir = prompt_dir
        self.structured = structured
        self.invalid_retries = invalid_retries
        self.temperature = temperature
        self.on_call = on_call
        self.llm_kwargs = llm_kwargs
        self.redactor = redactor

    logprobs = False

    @property
    def stats(self) -> LLMStats:
        if getattr(self, "_stats", None) is None:
            self._stats = LLMStats()
        return self._stats

    def _engine(self):
        if getattr(self, "_llm", None) is None:
            if not isinstance(self.model, str) or not self.model:
                raise ValueError("a model name or path is required for the vllm backend")
            vllm = _import_vllm()
            self._vllm = vllm
            self._llm = _shared_engine(vllm, self.model, self.llm_kwargs)
            self._cache = {}
        return self._llm

    def _record(self, outcome: str, seconds: float = 0.0, prompt_tokens: int = 0,
                completion_tokens: int = 0) -> None:
        self.stats.record(self.task, outcome, seconds, prompt_tokens, completion_tokens)
        if self.on_call is not None:
            self.on_call(self.task, outcome, seconds, prompt_tokens, completion_tokens)

    def _ask_all(self, conversations: list[list[dict]], repetitions: list[int],
                 parse: Callable[[str | None], Any]) -> list[tuple[Any, float | None] | None]:
        """One batched generation per round; invalid answers go to the next round."""
        llm = self._engine()
        keys = [response_key(self.model, self.task, c, r) for c, r in zip(conversations, repetitions)]
        results: list[tuple[Any, float | None] | None] = [None] * len(conversations)
        pending = []
        for i, key in enumerate(keys):
            if key in self._cache:
                results[i] = self._cache[key]
                self._record("cached")
            else:
                pending.append(i)
        for attempt in range(1 + int(self.invalid_retries)):
            if not pending:
                break
            params = []
            for i in pending:
                fresh = attempt > 0 or repetitions[i] > 0
                temperature = max(self.temperature, RETRY_TEMPERATURE) if fresh else self.temperature
                seed = 1000 * repetitions[i] + attempt if fresh else None
                params.append(_sampling_params(self._vllm, self.task, temperature, seed,
                                               self.logprobs, self.structured))
            started = time.perf_counter()
            outputs = llm.chat([conversations[i] for i in pending], sampling_params=params,
                               use_tqdm=False)
            share = (time.perf_counter() - started) / len(pending)
            still = []
            for i, out in zip(pending, outputs):
                completion = out.outputs[0]
                n_prompt = len(out.prompt_token_ids or [])
                n_completion = len(completion.token_ids)
                value = parse(completion.text)
                if value is None:
                    self._record("invalid", share, n_prompt, n_completion)
                    still.append(i)
                    continue
                self._record("ok", share, n_prompt, n_completion)
                confidence = p_good(_tokens(completion)) if self.task == "judge" else None
                results[i] = self._cache[keys[i]] = (value, confidence)
            pending = still
        return results


class VLLMJudge(_VLLMBackend, Judge):
    """LLM_eval on in-process vLLM; same prompts, parsing and Verdict meaning as OpenAIJudge.

    ``llm_kwargs`` go to ``vllm.LLM`` (e.g. ``tensor_parallel_size``, ``enable_lora``,
    ``gpu_memory_utilization``).
    """

    backend = "vllm"
    task = "judge"

    def __init__(self, model: str, language: str = "auto", prompt_dir: str | None = None,
                 structured: bool = True, logprobs: bool = True, invalid_retries: int = 2,
                 temperature: float = 0.0, on_call: OnCall | None = None,
                 llm_kwargs: dict | None = None, redactor: Redactor | None = None) -> None:
        super().__init__(model, language=language, prompt_dir=prompt_dir, structured=structured,
                         invalid_retries=invalid_retries, temperature=temperature,
                         on_call=on_call, llm_kwargs=llm_kwargs, redactor=redactor)
        self.logprobs = logprobs

    def judge(self, views: Sequence[ClusterView]) -> list[Verdict]:
        views = list(views)
        if not views:
            return []
        template = self._template("judge", views)
        redacted = [redact_view(self.redactor, v) for v in views]
        results = self._ask_all([judge_messages(template, v) for v in redacted],
                                [v.repetition for v in views], parse_verdict)
        return [Verdict(good=None, backend=self.backend) if r is None
                else Verdict(good=bool(r[0]), confidence=r[1], backend=self.backend)
                for r in results]


class VLLMNamer(_VLLMBackend, Namer):
    """LLM_name on in-process vLLM; ``""`` for a view without a valid label (callers fall back)."""

    backend = "vllm"
    task = "name"

    def name(self, views: Sequence[ClusterView]) -> list[str]:
        views = list(views)
        if not views:
            return []
        template = self._template("name", views)
        redacted = [redact_view(self.redactor, v) for v in views]
        results = self._ask_all([name_messages(template, v) for v in redacted],
                                [v.repetition for v in views], parse_label)
        return ["" if r is None else r[0] for r in results]
