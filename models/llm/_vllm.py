"""A :class:`~dialin.models.ChatClient` on an in-process ``vllm.LLM`` (GPU machines,
``pip install 'dialin[gpu]'``).

vLLM's offline ``LLM.chat`` takes a whole batch at once and schedules it with continuous
batching, so a batch of conversations is one call. The answer is constrained with vLLM's
structured outputs (``StructuredOutputsParams`` since 0.12; the older
``GuidedDecodingParams`` is used when that is what the installed vLLM has), with the same
constraints as the HTTP client (:mod:`._prompts`).
vLLM is imported on first use only, like BERTopic's optional backends, so
``dialin.models`` imports on machines without it; constructing a client without vLLM
installed raises ``ModuleNotFoundError`` naming the extra. Clients on the same model (a
judge's and a namer's) share one engine. There is no network, so no outage: the circuit
breaker a caller hands over is not consulted. A spend cap it is handed (:mod:`._spend`)
counts one call per conversation, taken in the order given before the batch goes to the
engine; the conversations it refuses are not generated, and the tokens vLLM reports
(prompt and generated token ids) are added once the batch is back.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from .._base import ChatClient, Completion
from ._breaker import CircuitBreaker
from ._openai import MAX_TOKENS
from ._prompts import structured_choice
from ._spend import SpendCap

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
                     structured: bool | str):
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


class VLLMClient(ChatClient):
    """Chat completions from an in-process vLLM engine; one batched ``LLM.chat`` per call.

    ``llm_kwargs`` go to ``vllm.LLM`` (e.g. ``tensor_parallel_size``, ``enable_lora``,
    ``gpu_memory_utilization``).
    """

    backend = "vllm"

    def __init__(self, model: str, llm_kwargs: dict | None = None) -> None:
        _check_vllm()  # the one check done early: a missing extra is a setup error
        self.model = model
        self.llm_kwargs = llm_kwargs

    def _engine(self):
        if getattr(self, "_llm", None) is None:
            if not isinstance(self.model, str) or not self.model:
                raise ValueError("a model name or path is required for the vllm backend")
            vllm = _import_vllm()
            self._vllm = vllm
            self._llm = _shared_engine(vllm, self.model, self.llm_kwargs)
        return self._llm

    def __getstate__(self) -> dict:
        # The engine holds the GPU weights: a copy finds the shared one again.
        return {k: v for k, v in self.__dict__.items() if k not in ("_llm", "_vllm")}

    def complete(self, conversations: Sequence[list[dict]], *, task: str,
                 temperatures: Sequence[float], seeds: Sequence[int | None],
                 logprobs: bool = False, structured: bool | str = True,
                 breaker: CircuitBreaker | None = None,
                 spend: SpendCap | None = None) -> list[Completion]:
        llm = self._engine()
        if not conversations:
            return []
        refused = {}
        if spend is not None:
            for i in range(len(conversations)):
                reason = spend.take()
                if reason is not None:
                    refused[i] = Completion(text=None, error=spend.refusal(reason), capped=reason)
        go = [i for i in range(len(conversations)) if i not in refused]
        params = [_sampling_params(self._vllm, task, temperatures[i], seeds[i], logprobs, structured)
                  for i in go]
        started = time.perf_counter()
        outputs = (llm.chat([conversations[i] for i in go], sampling_params=params, use_tqdm=False)
                   if go else [])
        share = (time.perf_counter() - started) / max(1, len(go))
        completions = dict(refused)
        for i, out in zip(go, outputs):
            completion = out.outputs[0]
            completions[i] = Completion(
                text=completion.text, tokens=_tokens(completion),
                prompt_tokens=len(out.prompt_token_ids or []),
                completion_tokens=len(completion.token_ids), seconds=share)
            if spend is not None:
                spend.add_tokens(completions[i].prompt_tokens + completions[i].completion_tokens)
        return [completions[i] for i in range(len(conversations))]
