"""Judge, namer and pruner over any OpenAI-compatible chat-completions server (``vllm serve``).

Built on the official ``openai`` SDK's ``AsyncOpenAI`` with explicit ``base_url``,
``api_key``, ``timeout`` and ``max_retries``: the SDK already retries timeouts, 408, 409,
429 and 5xx with exponential backoff, so there is no second retry loop here for those.
The only retry of our own is for *invalid* answers (text that does not parse), which no
HTTP layer can see. A batch is sent concurrently, at most ``concurrency`` requests in
flight (vLLM batches concurrent requests; that is the throughput lever).

Answers are constrained where the server allows it (vLLM >= 0.12 ``structured_outputs`` in
``extra_body``, or OpenAI's ``response_format`` JSON schema) and always parsed strictly
(:mod:`._prompts`). A server that rejects the constraint or logprobs with HTTP 400 is
asked again without them once, and the endpoint is remembered for the rest of the process.

With a ``redactor`` (:class:`~._pii.Redactor`), every utterance is redacted just before
it is put in a prompt, so no phone number, card or ID leaves the process.

The async work runs on a private event loop in a daemon thread owned by each object, so
the sync ``judge``/``name`` are safe to call from plain code and from inside a running
loop (the service should still call them through ``asyncio.to_thread``, or await
``ajudge``/``aname``, to keep its own loop free).

A circuit breaker (:mod:`._breaker`) sits in front of every request: after
``breaker_failures`` consecutive outage-type failures (connection errors, timeouts,
5xx, 429, each after the SDK's own retries) calls fail fast with
:class:`LLMUnavailableError` for ``breaker_reset_seconds``, then one probe decides. A
batch that trips or meets an open breaker raises instead of returning invalid verdicts,
so a discovery run against a dead LLM fails (and is retried later) rather than
"succeeding" with every cluster judged Bad.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._accounting import LLMStats, OnCall
from ._breaker import CircuitBreaker, LLMUnavailableError
from ..text._pii import Redactor, redact_view
from .._base import ClusterView, Judge, Namer, Verdict
from ._prompts import (
    PromptedMixin,
    json_schema_format,
    judge_messages,
    name_messages,
    p_good,
    parse_label,
    parse_verdict,
    response_key,
    structured_choice,
)

#: Sampling temperature for retries after an invalid answer and for repetitions > 0: a
#: deterministic server would otherwise answer the same prompt the same way again.
RETRY_TEMPERATURE = 0.7
MAX_TOKENS = {"judge": 16, "name": 32, "prune": 96}
_STRUCTURED_MODES = (True, False, "choice", "json_schema")

# Endpoint features a server refused with HTTP 400, per (base_url, model): remembered so
# every later request goes straight to what works.
_REJECTED: dict[tuple[str, str], set[str]] = {}
_REJECTED_LOCK = threading.Lock()


class LLMWarning(UserWarning):
    """Every LLM call of a batch failed: verdicts are all invalid (treated as Bad)."""


@dataclass(frozen=True)
class Completion:
    """One answer: text, per-token (chosen, {alternative: logprob}) pairs, token usage."""

    text: str | None
    tokens: tuple[tuple[str, dict[str, float]], ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _LoopThread:
    """A private asyncio loop in a daemon thread, so sync callers never touch theirs."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="dialin-llm",
                                       daemon=True)
        self.thread.start()

    def submit(self, coro) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)
        if not self.loop.is_running():
            self.loop.close()


class _OpenAIBackend(PromptedMixin):
    """What the judge, namer and pruner share: client, loop, cache, accounting, retries."""

    task = "judge"
    logprobs = False

    def __init__(self, base_url: str, model: str, api_key: str = "EMPTY", timeout: float = 30.0,
                 max_retries: int = 3, concurrency: int = 16, language: str = "auto",
                 prompt_dir: str | None = None, structured: bool | str = True,
                 invalid_retries: int = 2, on_call: OnCall | None = None,
                 temperature: float = 0.0, cache_dir: str | None = None,
                 breaker_failures: int = 5, breaker_reset_seconds: float = 30.0,
                 redactor: Redactor | None = None) -> None:
        self.base_url = base_url
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.language = language
        self.prompt_dir = prompt_dir
        self.structured = structured
        self.invalid_retries = invalid_retries
        self.on_call = on_call
        self.temperature = temperature
        self.cache_dir = cache_dir
        self.breaker_failures = breaker_failures
        self.breaker_reset_seconds = breaker_reset_seconds
        self.redactor = redactor

    # --- lazily built private state (``__init__`` only stores parameters) ---------------

    @property
    def stats(self) -> LLMStats:
        """Counts of this object's calls by task and outcome, tokens, seconds, cache hits."""
        if getattr(self, "_stats", None) is None:
            self._stats = LLMStats()
        return self._stats

    def _validate(self) -> None:
        if not isinstance(self.base_url, str) or not self.base_url.strip():
            raise ValueError("an LLM base_url is required (e.g. http://localhost:8000/v1)")
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError("an LLM model name is required (the name the server serves)")
        if int(self.concurrency) < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if int(self.invalid_retries) < 0:
            raise ValueError(f"invalid_retries must be >= 0, got {self.invalid_retries}")
        if self.structured not in _STRUCTURED_MODES:
            raise ValueError(f"structured must be one of {_STRUCTURED_MODES}, got {self.structured!r}")

    def _runtime(self) -> _LoopThread:
        lock = self.__dict__.setdefault("_lock", threading.Lock())
        with lock:
            if getattr(self, "_rt", None) is None:
                self._validate()
                rt = _LoopThread()
                rt.submit(self._start()).result()
                self._rt = rt
                self._cache = {}
                if getattr(self, "_breaker", None) is None:
                    self._breaker = CircuitBreaker(int(self.breaker_failures),
                                                   float(self.breaker_reset_seconds))
            return self._rt

    async def _start(self) -> None:
        import openai

        stats = self.stats

        async def count_status(response) -> None:
            stats.record_status(response.status_code)

        key = self.api_key
        key = key.get_secret_value() if hasattr(key, "get_secret_value") else (key or "EMPTY")
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url, api_key=key, timeout=float(self.timeout),
            max_retries=int(self.max_retries),
            http_client=openai.DefaultAsyncHttpxClient(event_hooks={"response": [count_status]}),
        )
        self._semaphore = asyncio.Semaphore(int(self.concurrency))

    def _run(self, coro_fn: Callable[[], Any]) -> Any:
        return self._runtime().submit(coro_fn()).result()

    async def _arun(self, coro_fn: Callable[[], Any]) -> Any:
        return await asyncio.wrap_future(self._runtime().submit(coro_fn()))

    def close(self) -> None:
        """Close the HTTP client and stop the private loop (a later call starts anew)."""
        rt = getattr(self, "_rt", None)
        if rt is None:
            return
        try:
            rt.submit(self._client.close()).result(timeout=5)
        finally:
            rt.stop()
            self._rt = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        # Threads, loops and sockets do not copy or pickle: a copy starts its own.
        return {k: v for k, v in self.__dict__.items()
                if k not in ("_rt", "_client", "_semaphore", "_lock", "_stats", "_cache", "_breaker")}

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
        return None

    def _cache_put(self, key: str, value) -> None:
        self._cache[key] = value
        if self.cache_dir is not None:
            folder = Path(self.cache_dir)
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f"{key}.json.tmp"
            tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
            tmp.replace(folder / f"{key}.json")

    # --- one question, with the invalid-answer retries ----------------------------------

    def _record(self, task: str, outcome: str, seconds: float = 0.0,
                prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        self.stats.record(task, outcome, seconds, prompt_tokens, completion_tokens)
        if self.on_call is not None:
            self.on_call(task, outcome, seconds, prompt_tokens, completion_tokens)

    async def _ask(self, task: str, messages: list[dict], parse: Callable[[str | None], Any],
                   repetition: int = 0) -> tuple[Any, float | None] | None:
        """(parsed answer, P(Good) or None), or None when no valid answer came back."""
        key = response_key(self.model, task, messages, repetition)
        hit = self._cache_get(key)
        if hit is not None:
            self._record(task, "cached")
            return hit[0], hit[1]
        breaker = self._breaker
        for attempt in range(1 + int(self.invalid_retries)):
            fresh = attempt > 0 or repetition > 0
            temperature = max(float(self.temperature), RETRY_TEMPERATURE) if fresh else float(self.temperature)
            seed = 1000 * repetition + attempt if fresh else None
            started = time.perf_counter()
            try:
                completion = await self._complete(task, messages, temperature, seed)
            except LLMUnavailableError:
                self._record(task, "error")
                raise
            except json.JSONDecodeError:
                # A 200 whose body is not JSON (a proxy's error page): the SDK does not
                # retry it, so it is an invalid answer, retried like one.
                completion = Completion(text=None)
            except Exception as exc:  # only the SDK's errors are caught, see below
                import openai

                if not isinstance(exc, openai.OpenAIError):
                    breaker.success()  # not the server's fault: never leave a probe claimed
                    raise
                self._last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                self._record(task, "error", time.perf_counter() - started)
                if _is_outage(exc):
                    breaker.failure()
                    if breaker.is_open:
                        raise self._unavailable() from None
                else:
                    breaker.success()  # the server answered (a 400): it is up
                return None
            breaker.success()
            seconds = time.perf_counter() - started
            value = parse(completion.text)
            if value is None:
                self._record(task, "invalid", seconds, completion.prompt_tokens,
                             completion.completion_tokens)
                continue
            self._record(task, "ok", seconds, completion.prompt_tokens, completion.completion_tokens)
            confidence = p_good(completion.tokens) if task == "judge" else None
            self._cache_put(key, [value, confidence])
            return value, confidence
        return None

    async def _admit(self) -> None:
        """Let one request go out, or raise at once while the breaker is open.

        Checked with the concurrency slot held, right before sending, so requests queued
        behind the ones that tripped the breaker are not sent. While a half-open probe is
        in flight the others wait for its outcome instead of failing.
        """
        breaker = self._breaker
        while not breaker.allow():
            if not breaker.probing:
                raise self._unavailable()
            await asyncio.sleep(0.05)

    def _unavailable(self) -> LLMUnavailableError:
        return LLMUnavailableError(
            f"LLM at {self.base_url} unavailable: circuit open after {self.breaker_failures} "
            f"consecutive failures, retry in {self.breaker_reset_seconds:g}s "
            f"(last: {getattr(self, '_last_error', 'unknown error')})")

    def _features(self) -> set[str]:
        wanted = set()
        if self.structured is not False:
            wanted.add("json_schema" if self.structured == "json_schema" else "choice")
        if self.task == "judge" and self.logprobs:
            wanted.add("logprobs")
        with _REJECTED_LOCK:
            return wanted - _REJECTED.get((self.base_url, self.model), set())

    async def _complete(self, task: str, messages: list[dict], temperature: float,
                        seed: int | None) -> Completion:
        import openai

        features = self._features()
        dropped: list[str] = []
        while True:
            kwargs: dict[str, Any] = {"model": self.model, "messages": messages,
                                      "temperature": temperature, "max_tokens": MAX_TOKENS[task]}
            if seed is not None:
                kwargs["seed"] = seed
            if "choice" in features:
                kwargs["extra_body"] = {"structured_outputs": structured_choice(task)}
            if "json_schema" in features:
                kwargs["response_format"] = json_schema_format(task)
            if "logprobs" in features:
                kwargs["logprobs"] = True
                kwargs["top_logprobs"] = 5
            try:
                async with self._semaphore:
                    await self._admit()
                    response = await self._client.chat.completions.create(**kwargs)
            except (openai.BadRequestError, openai.UnprocessableEntityError):
                # Drop one optional feature (constraint first, then logprobs) and ask
                # again; a plain request rejected is an error.
                drop = next((f for f in ("choice", "json_schema", "logprobs") if f in features), None)
                if drop is None:
                    raise
                features.discard(drop)
                dropped.append(drop)
                continue
            if dropped:
                # Remembered only once a request without them worked: a 400 for another
                # reason (an over-long prompt) must not switch constraints off for good.
                with _REJECTED_LOCK:
                    _REJECTED.setdefault((self.base_url, self.model), set()).update(dropped)
            return _completion(response)

    def _warn_if_all_failed(self, results: Sequence, n_errors_before: int) -> None:
        errors = self.stats.count(outcome="error") - n_errors_before
        if results and errors >= len(results) and all(r is None for r in results):
            warnings.warn(f"all {len(results)} LLM calls to {self.base_url} failed "
                          f"({getattr(self, '_last_error', 'unknown error')})", LLMWarning,
                          stacklevel=3)


def _raise_first(results: list) -> list:
    """``gather(return_exceptions=True)`` results, re-raising the first exception: every
    task has finished, so none leaves an exception unretrieved."""
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def _is_outage(exc: BaseException) -> bool:
    """Connection errors, timeouts, 5xx and 429 (after the SDK's retries): the server is
    down or overloaded. A 4xx other than 429 means it is up and answered."""
    import openai

    if isinstance(exc, (openai.APIConnectionError, openai.RateLimitError)):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and status >= 500


def _completion(response) -> Completion:
    """Text, logprobs and usage out of a ChatCompletion; a malformed one has text None."""
    try:
        choice = response.choices[0]
        text = choice.message.content
    except (AttributeError, IndexError, TypeError):
        return Completion(text=None)
    tokens: list[tuple[str, dict[str, float]]] = []
    content = getattr(getattr(choice, "logprobs", None), "content", None) or []
    for item in content:
        alternatives = {alt.token: alt.logprob for alt in (item.top_logprobs or [])}
        alternatives.setdefault(item.token, item.logprob)
        tokens.append((item.token, alternatives))
    usage = getattr(response, "usage", None)
    return Completion(text=text, tokens=tuple(tokens),
                      prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                      completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0))


class OpenAIJudge(_OpenAIBackend, Judge):
    """LLM_eval over an OpenAI-compatible endpoint: Good/Bad per cluster, batched.

    ``Verdict.confidence`` is P(Good) from the answer's logprobs (normalised over Good and
    Bad) when the server returns them, else None. ``good`` is None when no valid answer
    came back after ``invalid_retries`` retries or the request failed.
    ``structured``: True/"choice" asks vLLM's guided choice, "json_schema" OpenAI's
    response_format, False plain text; all answers are parsed strictly anyway.
    """

    backend = "openai"
    task = "judge"

    def __init__(self, base_url: str, model: str, api_key: str = "EMPTY", timeout: float = 30.0,
                 max_retries: int = 3, concurrency: int = 16, language: str = "auto",
                 prompt_dir: str | None = None, structured: bool | str = True,
                 logprobs: bool = True, invalid_retries: int = 2, on_call: OnCall | None = None,
                 temperature: float = 0.0, cache_dir: str | None = None,
                 breaker_failures: int = 5, breaker_reset_seconds: float = 30.0,
                 redactor: Redactor | None = None) -> None:
        super().__init__(base_url, model, api_key=api_key, timeout=timeout,
                         max_retries=max_retries, concurrency=concurrency, language=language,
                         prompt_dir=prompt_dir, structured=structured,
                         invalid_retries=invalid_retries, on_call=on_call,
                         temperature=temperature, cache_dir=cache_dir,
                         breaker_failures=breaker_failures,
                         breaker_reset_seconds=breaker_reset_seconds, redactor=redactor)
        self.logprobs = logprobs

    async def _judge_all(self, views: Sequence[ClusterView]) -> list[Verdict]:
        template = self._template("judge", views)
        results = _raise_first(await asyncio.gather(*[
            self._ask("judge", judge_messages(template, redact_view(self.redactor, v)),
                      parse_verdict, v.repetition)
            for v in views], return_exceptions=True))
        return [Verdict(good=None, confidence=None, backend=self.backend) if r is None
                else Verdict(good=bool(r[0]), confidence=r[1], backend=self.backend)
                for r in results]

    def judge(self, views: Sequence[ClusterView]) -> list[Verdict]:
        views = list(views)
        if not views:
            return []
        errors = self.stats.count(outcome="error")
        verdicts = self._run(lambda: self._judge_all(views))
        self._warn_if_all_failed([v.good for v in verdicts], errors)
        return verdicts

    async def ajudge(self, views: Sequence[ClusterView]) -> list[Verdict]:
        """``judge`` for async callers: awaits the private loop without blocking theirs."""
        views = list(views)
        return await self._arun(lambda: self._judge_all(views)) if views else []


class OpenAINamer(_OpenAIBackend, Namer):
    """LLM_name over an OpenAI-compatible endpoint: one ``action-objective`` label per view.

    Returns ``""`` for a view that got no valid label (after ``invalid_retries``): callers
    keep their own fallback name (e.g. the keyword namer's) for those.
    """

    backend = "openai"
    task = "name"

    async def _name_all(self, views: Sequence[ClusterView]) -> list[str]:
        template = self._template("name", views)
        results = _raise_first(await asyncio.gather(*[
            self._ask("name", name_messages(template, redact_view(self.redactor, v)),
                      parse_label, v.repetition)
            for v in views], return_exceptions=True))
        return ["" if r is None else r[0] for r in results]

    def name(self, views: Sequence[ClusterView]) -> list[str]:
        views = list(views)
        if not views:
            return []
        errors = self.stats.count(outcome="error")
        labels = self._run(lambda: self._name_all(views))
        self._warn_if_all_failed([lab or None for lab in labels], errors)
        return labels

    async def aname(self, views: Sequence[ClusterView]) -> list[str]:
        """``name`` for async callers."""
        views = list(views)
        return await self._arun(lambda: self._name_all(views)) if views else []
