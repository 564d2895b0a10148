"""A :class:`~dialin.models.ChatClient` for any OpenAI-compatible chat-completions server
(``vllm serve``, OpenAI, ...).

Built on the official ``openai`` SDK's ``AsyncOpenAI`` with explicit ``base_url``,
``api_key``, ``timeout`` and ``max_retries``: the SDK already retries timeouts, 408, 409,
429 and 5xx with exponential backoff, so there is no second retry loop here for those.
(Retrying *invalid* answers, text that does not parse, is the judge's business: no HTTP
layer can see it.) A batch is sent concurrently, at most ``concurrency`` requests in
flight (vLLM batches concurrent requests; that is the throughput lever).

Answers are constrained where the server allows it (vLLM >= 0.12 ``structured_outputs`` in
``extra_body``, or OpenAI's ``response_format`` JSON schema). A server that rejects the
constraint or logprobs with HTTP 400 is asked again without them once, and the endpoint is
remembered for the rest of the process.

The async work runs on a private event loop in a daemon thread owned by each client, so
the sync ``complete`` is safe to call from plain code and from inside a running loop.

The circuit breaker (:mod:`._breaker`) it is handed is asked right before each request,
with the concurrency slot held, so requests queued behind the ones that tripped it are
never sent; HTTP outcomes become its signal: connection errors, timeouts, 5xx and 429
(after the SDK's own retries) are outages, any other answer, a 400 included, says the
server is up.

A spend cap (:mod:`._spend`) it is handed is asked at the same place, before the
breaker: one call when a request gets its slot (so a batch is served in the order it was
given), and one more for each of the SDK's retries, taken in an httpx ``request`` hook as
the retry is sent. A retry the cap refuses raises in that hook, before anything is sent,
and ends the request; every answer's ``usage`` tokens are added to the cap.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import json
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from .._base import ChatClient, Completion
from ._breaker import CircuitBreaker, LLMUnavailableError
from ._prompts import json_schema_format, structured_choice
from ._spend import SpendCap, SpendCapReached

#: Longest answer per task, in tokens.
MAX_TOKENS = {"judge": 16, "name": 32, "prune": 96}
_STRUCTURED_MODES = (True, False, "choice", "json_schema")

# Endpoint features a server refused with HTTP 400, per (base_url, model): remembered so
# every later request goes straight to what works.
_REJECTED: dict[tuple[str, str], set[str]] = {}
_REJECTED_LOCK = threading.Lock()

# The HTTP statuses the request running in this task has seen (the SDK's retries
# included): the response hook runs inside the task that sent the request.
_STATUSES: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "dialin_llm_statuses", default=None)


class _Calls:
    """The spend cap's calls of one request task: the first attempt of each ``create`` is
    paid when it gets its slot (:meth:`prepay`), every further HTTP request (the SDK's
    retries) as it is sent (:meth:`sent`, from the httpx hook)."""

    def __init__(self, spend: SpendCap) -> None:
        self.spend = spend
        self.prepaid = 0
        self.refused_retry = False

    def prepay(self) -> None:
        reason = self.spend.take()
        if reason is not None:
            raise SpendCapReached(reason, self.spend.refusal(reason))
        self.prepaid += 1

    def sent(self) -> None:
        if self.prepaid:
            self.prepaid -= 1
            return
        reason = self.spend.take()
        if reason is not None:
            self.refused_retry = True
            raise SpendCapReached(reason, self.spend.refusal(reason))

    def settle(self) -> None:
        """Give back a prepaid call whose request was never sent."""
        if self.prepaid:
            self.spend.refund(self.prepaid)
            self.prepaid = 0


# The spend cap's calls of the request running in this task (None: no cap).
_CALLS: contextvars.ContextVar[_Calls | None] = contextvars.ContextVar(
    "dialin_llm_calls", default=None)


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


class OpenAIClient(ChatClient):
    """Chat completions over HTTP from an OpenAI-compatible server.

    ``__init__`` only stores its parameters: the loop thread, the HTTP client and the
    concurrency slots are built on the first ``complete`` (and again after ``close``).
    """

    backend = "openai"

    def __init__(self, base_url: str, model: str, api_key: Any = "EMPTY", timeout: float = 30.0,
                 max_retries: int = 3, concurrency: int = 16) -> None:
        self.base_url = base_url
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.concurrency = concurrency

    def _validate(self) -> None:
        if not isinstance(self.base_url, str) or not self.base_url.strip():
            raise ValueError("an LLM base_url is required (e.g. http://localhost:8000/v1)")
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError("an LLM model name is required (the name the server serves)")
        if int(self.concurrency) < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")

    def _runtime(self) -> _LoopThread:
        lock = self.__dict__.setdefault("_lock", threading.Lock())
        with lock:
            if getattr(self, "_rt", None) is None:
                self._validate()
                rt = _LoopThread()
                rt.submit(self._start()).result()
                self._rt = rt
            return self._rt

    async def _start(self) -> None:
        import openai

        async def count_status(response) -> None:
            seen = _STATUSES.get()
            if seen is not None:
                seen.append(response.status_code)

        async def take_call(request) -> None:
            calls = _CALLS.get()
            if calls is not None:
                calls.sent()  # raises SpendCapReached: this request is not sent

        key = self.api_key
        key = key.get_secret_value() if hasattr(key, "get_secret_value") else (key or "EMPTY")
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url, api_key=key, timeout=float(self.timeout),
            max_retries=int(self.max_retries),
            http_client=openai.DefaultAsyncHttpxClient(
                event_hooks={"request": [take_call], "response": [count_status]}),
        )
        self._semaphore = asyncio.Semaphore(int(self.concurrency))

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

    def __getstate__(self) -> dict:
        # Threads, loops and sockets do not copy or pickle: a copy starts its own.
        return {k: v for k, v in self.__dict__.items()
                if k not in ("_rt", "_client", "_semaphore", "_lock")}

    def complete(self, conversations: Sequence[list[dict]], *, task: str,
                 temperatures: Sequence[float], seeds: Sequence[int | None],
                 logprobs: bool = False, structured: bool | str = True,
                 breaker: CircuitBreaker | None = None,
                 spend: SpendCap | None = None) -> list[Completion]:
        if structured not in _STRUCTURED_MODES:
            raise ValueError(f"structured must be one of {_STRUCTURED_MODES}, got {structured!r}")
        if not conversations:
            return []
        if breaker is None:  # one that cannot open within this call
            breaker = CircuitBreaker(failures=len(conversations) + 1)
        features = self._features(task, logprobs, structured)

        async def send_all() -> list:
            return await asyncio.gather(*[
                self._one(messages, task, temperature, seed, features, breaker, spend)
                for messages, temperature, seed in zip(conversations, temperatures, seeds)
            ], return_exceptions=True)

        return _raise_first(self._runtime().submit(send_all()).result())

    async def _one(self, messages: list[dict], task: str, temperature: float, seed: int | None,
                   features: set[str], breaker: CircuitBreaker,
                   spend: SpendCap | None = None) -> Completion:
        """One request and what became of it; only exceptions foreign to the SDK escape."""
        import openai

        statuses: list[int] = []
        _STATUSES.set(statuses)
        calls = _Calls(spend) if spend is not None else None
        _CALLS.set(calls)
        started = time.perf_counter()
        try:
            completion = await self._create(messages, task, temperature, seed, set(features),
                                            breaker, calls)
        except LLMUnavailableError as exc:  # refused: the circuit is open, nothing was sent
            return Completion(text=None, error=str(exc), unavailable=True)
        except SpendCapReached as exc:
            return self._capped(exc, breaker, calls, started, statuses)
        except json.JSONDecodeError:
            # A 200 whose body is not JSON (a proxy's error page): the SDK does not
            # retry it, so it is an invalid answer, retried like one.
            completion = Completion(text=None)
        except Exception as exc:  # only the SDK's errors are caught, see below
            if isinstance(exc.__cause__, SpendCapReached):
                # an SDK that wraps a hook's exception (after retrying it, refused each time)
                return self._capped(exc.__cause__, breaker, calls, started, statuses)
            if not isinstance(exc, openai.OpenAIError):
                breaker.success()  # not the server's fault: never leave a probe claimed
                raise
            self._last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            seconds = time.perf_counter() - started
            if _is_outage(exc):
                breaker.failure()
                if breaker.is_open:
                    return Completion(text=None, seconds=seconds, http_status=tuple(statuses),
                                      error=str(self._unavailable(breaker)), unavailable=True)
            else:
                breaker.success()  # the server answered (a 400): it is up
            return Completion(text=None, seconds=seconds, http_status=tuple(statuses),
                              error=self._last_error)
        breaker.success()
        if spend is not None:
            spend.add_tokens(completion.prompt_tokens + completion.completion_tokens)
        return dataclasses.replace(completion, seconds=time.perf_counter() - started,
                                   http_status=tuple(statuses))

    def _capped(self, exc: SpendCapReached, breaker: CircuitBreaker, calls: _Calls | None,
                started: float, statuses: list[int]) -> Completion:
        """A request the spend cap refused. A refused first attempt never reached the
        breaker; a refused *retry* follows a failure the SDK retries (timeouts, connection
        errors, 408, 409, 429, 5xx), which the breaker hears of as one."""
        if calls is not None and calls.refused_retry:
            breaker.failure()
        return Completion(text=None, seconds=time.perf_counter() - started,
                          http_status=tuple(statuses), error=str(exc), capped=exc.reason)

    async def _admit(self, breaker: CircuitBreaker) -> None:
        """Let one request go out, or raise at once while the breaker is open.

        Checked with the concurrency slot held, right before sending, so requests queued
        behind the ones that tripped the breaker are not sent. While a half-open probe is
        in flight the others wait for its outcome instead of failing.
        """
        while not breaker.allow():
            if not breaker.probing:
                raise self._unavailable(breaker)
            await asyncio.sleep(0.05)

    def _unavailable(self, breaker: CircuitBreaker) -> LLMUnavailableError:
        return LLMUnavailableError(
            f"LLM at {self.base_url} unavailable: circuit open after {breaker.failures} "
            f"consecutive failures, retry in {breaker.reset_seconds:g}s "
            f"(last: {getattr(self, '_last_error', 'unknown error')})")

    def _features(self, task: str, logprobs: bool, structured: bool | str) -> set[str]:
        wanted = set()
        if structured is not False:
            wanted.add("json_schema" if structured == "json_schema" else "choice")
        if logprobs:
            wanted.add("logprobs")
        with _REJECTED_LOCK:
            return wanted - _REJECTED.get((self.base_url, self.model), set())

    async def _create(self, messages: list[dict], task: str, temperature: float,
                      seed: int | None, features: set[str], breaker: CircuitBreaker,
                      calls: _Calls | None = None) -> Completion:
        import openai

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
                    if calls is not None:
                        calls.prepay()  # before the breaker: a refusal claims no probe
                    try:
                        await self._admit(breaker)
                        response = await self._client.chat.completions.create(**kwargs)
                    finally:
                        if calls is not None:
                            calls.settle()
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
