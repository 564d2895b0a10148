"""A consecutive-failure circuit breaker for LLM calls (closed, open, half-open).

Why: the ``openai`` SDK already retries a failed request with backoff; what it cannot
know is that the server has been dead for the last twenty requests. Without a breaker a
discovery run against a dead or stalled LLM spends ``timeout x (1 + max_retries)`` on
every one of its hundreds of questions before it gives up. With one, after
``failures`` consecutive outage-type failures every further call fails at once
(:class:`LLMUnavailableError`) for ``reset_seconds``; then a single probe is let
through (half-open): its success closes the breaker, its failure opens it again.

Each LLM judge, namer and pruner owns one breaker and hands it to its
:class:`~dialin.models.ChatClient`, which asks it before every request and reports every
outcome (the HTTP client; an in-process engine has no outage to report).

Why not ``pybreaker``: its async support goes through tornado, and our calls run on a
private asyncio loop owned by each HTTP client; the state machine is twenty lines.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class LLMUnavailableError(RuntimeError):
    """The LLM server is treated as down (circuit open): the call was not sent."""


class CircuitBreaker:
    """Opens after ``failures`` consecutive failures, for ``reset_seconds``; thread-safe.

    ``allow()`` before a call, then ``success()`` or ``failure()`` after it. While open,
    ``allow()`` is False; after ``reset_seconds`` it is True for exactly one caller (the
    half-open probe) until that probe reports back.
    """

    def __init__(self, failures: int = 5, reset_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.reset_seconds = reset_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probing = False
        self.opened_count = 0

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open`` (a probe may go, or is in flight)."""
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._probing or self.clock() - self._opened_at >= self.reset_seconds:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        """May a call go out now? Claims the probe slot when half-open."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return True
            if state == "half-open" and not self._probing:
                self._probing = True
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self._consecutive = 0
            self._opened_at = None
            self._probing = False

    def failure(self) -> None:
        with self._lock:
            self._consecutive += 1
            if self._probing or self._consecutive >= max(1, int(self.failures)):
                if self._opened_at is None or self._probing:
                    self.opened_count += 1
                self._opened_at = self.clock()
                self._probing = False

    @property
    def probing(self) -> bool:
        """A half-open probe is in flight: its outcome decides for the callers waiting."""
        with self._lock:
            return self._probing

    @property
    def is_open(self) -> bool:
        """True while calls are refused (open, or half-open with the probe in flight)."""
        with self._lock:
            return self._opened_at is not None and (
                self._probing or self.clock() - self._opened_at < self.reset_seconds)
