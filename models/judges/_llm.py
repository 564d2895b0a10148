"""The LLM judge, namer and pruner, over any :class:`~dialin.models.ChatClient`.

Everything that does not depend on how an LLM is reached lives here, once: the prompt
(:mod:`dialin.models.llm._prompts`: language, quoting, strict parsing), PII redaction of
every utterance before it is put in a prompt (:class:`~dialin.models.Redactor`), the
response cache (in memory, on disk with ``cache_dir``, and in a
:class:`~dialin.models.ResponseLog` with ``responses``: looked up before asking, the first
valid answer to every prompt recorded, so a later run replays it), the retries of
*invalid* answers (text that does not parse, which no transport can see), the sampling policy
(``temperature`` for a first question; at least :data:`RETRY_TEMPERATURE` and a seed for
a retry or a deliberate repetition, so a deterministic server does not answer the same
way again), the circuit breaker's state (:mod:`dialin.models.llm._breaker`: a batch that
trips or meets an open breaker raises :class:`~dialin.models.LLMUnavailableError`
instead of returning invalid verdicts, so a discovery run against a dead LLM fails and
is retried rather than "succeeding" with every cluster judged Bad) and the accounting
(:class:`~dialin.models.LLMStats` plus the ``on_call`` hook the service feeds Prometheus
with), and the spend cap's policy (:mod:`dialin.models.llm._spend`): a batch is sent
largest clusters first, so when a cap falls mid-batch the calls left went to the
clusters that matter most; the questions the cap refused are answered by the
``fallback`` judge or namer (``Verdict.fallback`` says why) or, with the cap's
``action="wait"``, asked again once the next window opens. A client only sends a round
of conversations and returns the answers.

A batch goes out in rounds: every question not in the cache in one ``complete`` call
(the HTTP client sends them concurrently, vLLM batches them on the GPU), then the ones
whose answer did not parse in the next, up to ``invalid_retries`` times.

:class:`OpenAIJudge`, :class:`OpenAINamer`, :class:`VLLMJudge` and :class:`VLLMNamer`
are the same classes with the parameters they always took: they build the client from
those parameters and pass it on. :class:`LLMPruner` takes a ``client``, or builds an
:class:`~dialin.models.OpenAIClient` from ``base_url`` and ``model`` as it always did.
"""

from __future__ import annotations

import asyncio
import json
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .._base import ChatClient, ClusterView, Judge, Namer, Pruner, Verdict
from ..llm._accounting import LLMStats, OnCall
from ..llm._breaker import CircuitBreaker, LLMUnavailableError
from ..llm._openai import OpenAIClient
from ..llm._responses import ResponseLog
from ..llm._spend import SpendCap
from ..llm._prompts import (
    DecidedExamples,
    PromptedMixin,
    judge_messages,
    load_prompt,
    name_messages,
    p_good,
    parse_counts,
    parse_label,
    parse_verdict,
    prune_messages,
    response_key,
    with_decided,
)
from ..llm._vllm import VLLMClient
from ..text._pii import Redactor, redact_view
from ._pruning import HeuristicPruner, _check_range

#: Sampling temperature for retries after an invalid answer and for repetitions > 0: a
#: deterministic server would otherwise answer the same prompt the same way again.
RETRY_TEMPERATURE = 0.7

#: One answer's parsed value and P(Good) (None but for the judge), or None: no valid answer.
_Answer = tuple[Any, float | None] | None
#: Question index -> why the spend cap refused it (``call_cap`` or ``token_cap``).
_Capped = dict[int, str]


class LLMWarning(UserWarning):
    """Every LLM call of a batch failed: verdicts are all invalid (treated as Bad)."""


def _of_client(name: str) -> property:
    """A constructor parameter that went into the client, read back from it."""
    return property(lambda self: getattr(self.client, name), doc=f"The client's ``{name}``.")


class _OpenAIParams:
    """The :class:`~dialin.models.OpenAIClient` parameters a class took, read back from its
    client (which they built)."""

    base_url = _of_client("base_url")
    model = _of_client("model")
    api_key = _of_client("api_key")
    timeout = _of_client("timeout")
    max_retries = _of_client("max_retries")


class _LLMTask(PromptedMixin):
    """Prompting, cache, invalid-answer retries, sampling, breaker and accounting, over
    ``client``; the parameters are :class:`LLMJudge`'s."""

    def __init__(self, client: ChatClient, *, language: str = "auto",
                 prompt_dir: str | None = None, structured: bool | str = True,
                 invalid_retries: int = 2, temperature: float = 0.0,
                 cache_dir: str | None = None, on_call: OnCall | None = None,
                 breaker_failures: int = 5, breaker_reset_seconds: float = 30.0,
                 redactor: Redactor | None = None, spend: SpendCap | None = None,
                 responses: ResponseLog | None = None,
                 examples: DecidedExamples | None = None) -> None:
        self.client = client
        self.language = language
        self.prompt_dir = prompt_dir
        self.structured = structured
        self.invalid_retries = invalid_retries
        self.temperature = temperature
        self.cache_dir = cache_dir
        self.on_call = on_call
        self.breaker_failures = breaker_failures
        self.breaker_reset_seconds = breaker_reset_seconds
        self.redactor = redactor
        self.spend = spend
        self.responses = responses
        self.examples = examples

    def _with_examples(self, messages: list[dict], task: str, language: str) -> list[dict]:
        """``messages`` with the decided examples of ``examples`` for this prompt (redacted
        again by ``redactor``: they come from outside the engine)."""
        if self.examples is None:
            return messages
        chosen = self.examples.select(task, language)
        if self.redactor is not None:
            chosen = [replace(ex, texts=tuple(self.redactor.redact_many(ex.texts)))
                      for ex in chosen]
        return with_decided(messages, task, language, chosen)

    # --- lazily built private state (``__init__`` only stores parameters) ---------------

    @property
    def backend(self) -> str:
        """The client's name ("openai", "vllm", ...), reported with every verdict."""
        return self.client.backend

    @property
    def stats(self) -> LLMStats:
        """Counts of this object's calls by task and outcome, tokens, seconds, cache hits."""
        if getattr(self, "_stats", None) is None:
            self._stats = LLMStats()
        return self._stats

    def _state(self) -> CircuitBreaker:
        """The breaker, and the in-memory cache, made on first use (not copied)."""
        with self.__dict__.setdefault("_lock", threading.Lock()):
            if getattr(self, "_breaker", None) is None:
                self._cache: dict[str, Any] = {}
                self._breaker = CircuitBreaker(int(self.breaker_failures),
                                               float(self.breaker_reset_seconds))
            return self._breaker

    def close(self) -> None:
        """Close the client (a later call starts anew)."""
        self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        # Threads, loops and sockets do not copy or pickle: a copy starts its own.
        return {k: v for k, v in self.__dict__.items()
                if k not in ("_lock", "_stats", "_cache", "_breaker", "_data", "_fallback_ready")}

    # --- caching ------------------------------------------------------------------------

    def _cache_get(self, key: str):
        if key in self._cache:
            return self._cache[key]
        if self.cache_dir is not None:
            path = Path(self.cache_dir) / f"{key}.json"
            if path.is_file():
                value = json.loads(path.read_text(encoding="utf-8"))
                self._cache[key] = value
                return value
        if self.responses is not None:
            value = self.responses.get(key)
            if value is not None:
                self._cache[key] = value
                return value
        return None

    def _cache_put(self, key: str, value, task: str) -> None:
        self._cache[key] = value
        if self.responses is not None:
            self.responses.put(key, task, value)
        if self.cache_dir is not None:
            folder = Path(self.cache_dir)
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f"{key}.json.{threading.get_ident()}.tmp"
            tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
            tmp.replace(folder / f"{key}.json")

    # --- a batch of questions, with the invalid-answer retries --------------------------

    def _record(self, task: str, outcome: str, seconds: float = 0.0,
                prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        self.stats.record(task, outcome, seconds, prompt_tokens, completion_tokens)
        if self.on_call is not None:
            self.on_call(task, outcome, seconds, prompt_tokens, completion_tokens)

    def _ask_all(self, task: str, conversations: list[list[dict]], repetitions: list[int],
                 parse: Callable[[str | None], Any], logprobs: bool = False,
                 sizes: Sequence[int] | None = None) -> tuple[list[_Answer], _Capped]:
        """(parsed answer, P(Good) or None) per conversation, or None where no valid answer
        came back, and the questions the spend cap refused (with its ``action="wait"``,
        none: they are asked again in the next window). Sent largest ``sizes`` first.
        Raises :class:`LLMUnavailableError` when the breaker refused or opened."""
        if int(self.invalid_retries) < 0:
            raise ValueError(f"invalid_retries must be >= 0, got {self.invalid_retries}")
        client = self.client
        breaker = self._state()
        keys = [response_key(client.model, task, c, r) for c, r in zip(conversations, repetitions)]
        results: list[_Answer] = [None] * len(conversations)
        order = range(len(conversations)) if sizes is None else sorted(
            range(len(conversations)), key=lambda i: -sizes[i])
        pending = []
        for i in order:
            hit = self._cache_get(keys[i])
            if hit is None:
                pending.append(i)
            else:
                self._record(task, "cached")
                results[i] = (hit[0], hit[1])
        while True:
            capped = self._send(task, conversations, repetitions, keys, pending, parse,
                                logprobs, breaker, results)
            if not capped or self.spend is None or self.spend.action != "wait":
                return results, capped
            self.spend.wait_for_next_window()
            pending = [i for i in pending if i in capped]

    def _send(self, task: str, conversations: list[list[dict]], repetitions: list[int],
              keys: list[str], pending: list[int], parse: Callable[[str | None], Any],
              logprobs: bool, breaker: CircuitBreaker, results: list[_Answer]) -> _Capped:
        """Ask ``pending`` (in that order), retrying invalid answers; fills ``results``
        and returns the questions the spend cap refused."""
        client = self.client
        refused: dict[int, str] = {}
        capped: _Capped = {}
        spend = {} if self.spend is None else {"spend": self.spend}
        for attempt in range(1 + int(self.invalid_retries)):
            if not pending:
                break
            fresh = [attempt > 0 or repetitions[i] > 0 for i in pending]
            completions = client.complete(
                [conversations[i] for i in pending], task=task,
                temperatures=[max(float(self.temperature), RETRY_TEMPERATURE) if f
                              else float(self.temperature) for f in fresh],
                seeds=[1000 * repetitions[i] + attempt if f else None
                       for i, f in zip(pending, fresh)],
                logprobs=logprobs, structured=self.structured, breaker=breaker, **spend)
            still = []
            for i, completion in zip(pending, completions):
                for status in completion.http_status:
                    self.stats.record_status(status)
                if completion.capped is not None:
                    capped[i] = completion.capped
                    continue
                if completion.error is not None:
                    self._record(task, "error", completion.seconds)
                    if completion.unavailable:
                        refused[i] = completion.error
                    else:
                        self._last_error = completion.error
                    continue
                value = parse(completion.text)
                if value is None:
                    self._record(task, "invalid", completion.seconds, completion.prompt_tokens,
                                 completion.completion_tokens)
                    still.append(i)
                    continue
                self._record(task, "ok", completion.seconds, completion.prompt_tokens,
                             completion.completion_tokens)
                confidence = p_good(completion.tokens) if task == "judge" else None
                self._cache_put(keys[i], [value, confidence], task)
                results[i] = (value, confidence)
            pending = still
        if refused:
            raise LLMUnavailableError(refused[min(refused)])
        return capped

    # --- the offline fallback for questions the spend cap refused ----------------------

    def prepare(self, X: np.ndarray, texts: Sequence[str]) -> None:
        """Keep the data of this fit: the fallback is prepared on it when first needed."""
        self._data = (X, texts)
        self._fallback_ready = False

    def _fallen_back(self, task: str, views: list[ClusterView], capped: _Capped) -> list | None:
        """The fallback's answers to the refused views (in ``capped``'s order), counted on
        the cap; None when there is no fallback."""
        for reason in sorted(set(capped.values())) if self.spend is not None else ():
            self.spend.fell_back(task, reason, sum(r == reason for r in capped.values()))
        if self.fallback is None:
            return None
        if not getattr(self, "_fallback_ready", False):
            data = getattr(self, "_data", None)
            if data is None:
                raise RuntimeError(f"the {task} fallback needs prepare(X, texts) first "
                                   "(every strategy's fit calls it)")
            self.fallback.prepare(*data)
            self._fallback_ready = True
        method = self.fallback.judge if task == "judge" else self.fallback.name
        return list(method([views[i] for i in capped]))

    def _answer(self, views: Sequence[ClusterView], answer_all: Callable[[list], list],
                valid: Callable[[Any], bool]) -> list:
        """``answer_all(views)``, with an :class:`LLMWarning` when every request failed."""
        views = list(views)
        if not views:
            return []
        errors = self.stats.count(outcome="error")
        answers = answer_all(views)
        errors = self.stats.count(outcome="error") - errors
        if errors >= len(answers) and not any(valid(a) for a in answers):
            warnings.warn(f"all {len(answers)} LLM calls to "
                          f"{getattr(self.client, 'base_url', self.client.backend)} failed "
                          f"({getattr(self, '_last_error', 'unknown error')})", LLMWarning,
                          stacklevel=3)
        return answers


class LLMJudge(_LLMTask, Judge):
    """LLM_eval over a :class:`~dialin.models.ChatClient`: Good/Bad per cluster, batched.

    ``Verdict.confidence`` is P(Good) from the answer's logprobs (normalised over Good and
    Bad) when ``logprobs`` and the client returns them, else None. ``good`` is None when
    no valid answer came back after ``invalid_retries`` retries or the request failed.

    Keyword parameters (the judge, namer and pruner share all but ``logprobs``):
    ``language`` (auto|en|zh) and ``prompt_dir`` choose the prompt; ``structured``
    (True/"choice" guided choice, "json_schema" a response_format, False plain text;
    answers are parsed strictly anyway); ``invalid_retries``; ``temperature`` of a first
    question; ``cache_dir`` keeps answers across processes; ``on_call(task, outcome,
    seconds, prompt_tokens, completion_tokens)`` sees every request;
    ``breaker_failures`` consecutive outages open the circuit for
    ``breaker_reset_seconds``; ``redactor`` redacts every utterance before it is sent;
    ``spend`` (a :class:`~dialin.models.SpendCap`, shared by every LLM task of the
    process) caps calls and tokens per window; ``responses`` (a
    :class:`~dialin.models.ResponseLog`) answers every prompt it has an answer for and
    records the first valid answer to each one asked; ``examples`` (a
    :class:`~dialin.models.DecidedExamples` the service fills with the clusters people
    approved or rejected) adds them to the prompt as few-shot examples, language-matched.

    ``fallback`` (a :class:`~dialin.models.Judge`, e.g. the offline
    :class:`~dialin.models.HeuristicJudge`) answers the questions the spend cap refused;
    their verdicts carry ``fallback="call_cap"`` or ``"token_cap"``. Without one they
    are invalid (None, treated as Bad), with the same ``fallback`` reason.
    """

    concurrent = True  # a batch is sent concurrently: one round trip, not one per question

    def __init__(self, client: ChatClient, *, logprobs: bool = True, fallback: Judge | None = None,
                 **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.logprobs = logprobs
        self.fallback = fallback

    def _judge_all(self, views: list[ClusterView]) -> list[Verdict]:
        template = self._template("judge", views)
        results, capped = self._ask_all(
            "judge", [self._with_examples(judge_messages(template, redact_view(self.redactor, v)),
                                          "judge", template.language) for v in views],
            [v.repetition for v in views], parse_verdict, logprobs=bool(self.logprobs),
            sizes=[v.size for v in views])
        backend = self.backend
        verdicts = [Verdict(good=None, confidence=None, backend=backend) if r is None
                    else Verdict(good=bool(r[0]), confidence=r[1], backend=backend)
                    for r in results]
        if capped:
            offline = self._fallen_back("judge", views, capped)
            for k, (i, reason) in enumerate(capped.items()):
                verdicts[i] = replace(verdicts[i] if offline is None else offline[k],
                                      fallback=reason)
        return verdicts

    def judge(self, views: Sequence[ClusterView]) -> list[Verdict]:
        return self._answer(views, self._judge_all, lambda verdict: verdict.good is not None)

    async def ajudge(self, views: Sequence[ClusterView]) -> list[Verdict]:
        """``judge`` for async callers: runs in a worker thread, their loop stays free."""
        views = list(views)
        return await asyncio.to_thread(self._judge_all, views) if views else []


class LLMNamer(_LLMTask, Namer):
    """LLM_name over a :class:`~dialin.models.ChatClient`: one ``action-objective`` label per view.

    Returns ``""`` for a view that got no valid label (after ``invalid_retries``): callers
    keep their own fallback name (e.g. the keyword namer's) for those. Keyword parameters
    as :class:`LLMJudge`'s, without ``logprobs``; ``fallback`` (a
    :class:`~dialin.models.Namer`, e.g. the :class:`~dialin.models.KeywordNamer`) names
    the views the spend cap refused (``""`` without one).
    """

    def __init__(self, client: ChatClient, *, fallback: Namer | None = None, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.fallback = fallback

    def _name_all(self, views: list[ClusterView]) -> list[str]:
        template = self._template("name", views)
        results, capped = self._ask_all(
            "name", [self._with_examples(name_messages(template, redact_view(self.redactor, v)),
                                         "name", template.language) for v in views],
            [v.repetition for v in views], parse_label, sizes=[v.size for v in views])
        names = ["" if r is None else r[0] for r in results]
        if capped:
            offline = self._fallen_back("name", views, capped)
            if offline is not None:
                for i, name in zip(capped, offline):
                    names[i] = name
        return names

    def name(self, views: Sequence[ClusterView]) -> list[str]:
        return self._answer(views, self._name_all, bool)

    async def aname(self, views: Sequence[ClusterView]) -> list[str]:
        """``name`` for async callers."""
        views = list(views)
        return await asyncio.to_thread(self._name_all, views) if views else []


class LLMPruner(_OpenAIParams, _LLMTask, Pruner):
    """The paper's LLM-native search-space pruning (§6.4.2).

    Asks for ``k`` counts as a JSON list (constrained by a JSON schema where the server
    supports it), keeps the distinct integers in ``[lo, hi]`` and drops the rest; with
    ``fill=True`` a short or failed answer is topped up from :class:`HeuristicPruner`,
    so ``propose`` always returns ``min(k, hi - lo + 1)`` counts.

    Over ``client``, any :class:`~dialin.models.ChatClient`; without one, over the
    OpenAI-compatible server at ``base_url`` serving ``model`` (one request at a time).
    Other keyword parameters: see :class:`LLMJudge`.
    """

    def __init__(self, base_url: str | None = None, model: str | None = None,
                 api_key: str = "EMPTY", timeout: float = 30.0, max_retries: int = 3, *,
                 client: ChatClient | None = None, language: str = "en", fill: bool = True,
                 **kwargs: Any) -> None:
        if client is None:
            client = OpenAIClient(base_url, model, api_key=api_key, timeout=timeout,
                                  max_retries=max_retries, concurrency=1)
        super().__init__(client, language=language, **kwargs)
        self.fill = fill

    def propose(self, log: Sequence[Mapping], n_remaining: int, lo: int, hi: int,
                k: int = 5) -> list[int]:
        _check_range(n_remaining, lo, hi, k)
        language = "en" if self.language == "auto" else self.language
        template = load_prompt("prune", language, self.prompt_dir)
        messages = prune_messages(template, log, n_remaining, lo, hi, k)

        def parse(text: str | None) -> list[int] | None:
            return parse_counts(text, lo, hi, k) or None

        (result,), capped = self._ask_all("prune", [messages], [0], parse)
        if capped and self.spend is not None:  # the heuristic fill below is the fallback
            self.spend.fell_back("prune", capped[0])
        counts = [] if result is None else list(result[0])
        if self.fill and len(counts) < k:
            for value in HeuristicPruner().propose(log, n_remaining, lo, hi, k + len(counts)):
                if value not in counts and len(counts) < k:
                    counts.append(value)
        return counts


# --- the named backends: the parameters they always took, the client built from them -----

class _OverHTTP(_OpenAIParams):
    """Builds an :class:`~dialin.models.OpenAIClient` and passes it on.

    ``base_url``, ``model``, ``api_key``, ``timeout``, ``max_retries`` (the SDK's own
    retries of timeouts, 429 and 5xx) and ``concurrency`` (requests in flight) make the
    client, and read back from it; every other keyword goes to :class:`LLMJudge` /
    :class:`LLMNamer` unchanged.
    """

    def __init__(self, base_url: str, model: str, api_key: str = "EMPTY", timeout: float = 30.0,
                 max_retries: int = 3, concurrency: int = 16, **kwargs: Any) -> None:
        super().__init__(OpenAIClient(base_url, model, api_key=api_key, timeout=timeout,  # type: ignore[call-arg]
                                      max_retries=max_retries, concurrency=concurrency), **kwargs)

    concurrency = _of_client("concurrency")


class _InProcess:
    """Builds a :class:`~dialin.models.VLLMClient` and passes it on.

    ``model`` and ``llm_kwargs`` (for ``vllm.LLM``: ``tensor_parallel_size``,
    ``enable_lora``, ``gpu_memory_utilization``, ...) make the client, and read back from
    it; every other keyword goes to :class:`LLMJudge` / :class:`LLMNamer` unchanged.
    Without vLLM installed, construction raises ``ModuleNotFoundError`` naming the extra.
    """

    def __init__(self, model: str, *, llm_kwargs: dict | None = None, **kwargs: Any) -> None:
        super().__init__(VLLMClient(model, llm_kwargs=llm_kwargs), **kwargs)  # type: ignore[call-arg]

    model = _of_client("model")
    llm_kwargs = _of_client("llm_kwargs")


class OpenAIJudge(_OverHTTP, LLMJudge):
    """:class:`LLMJudge` over an OpenAI-compatible endpoint (``vllm serve``, OpenAI, ...)."""


class OpenAINamer(_OverHTTP, LLMNamer):
    """:class:`LLMNamer` over an OpenAI-compatible endpoint."""


class VLLMJudge(_InProcess, LLMJudge):
    """:class:`LLMJudge` on in-process vLLM: same prompts, parsing and Verdict meaning."""


class VLLMNamer(_InProcess, LLMNamer):
    """:class:`LLMNamer` on in-process vLLM."""
