"""LLM spend caps: calls and tokens per window, shared by every LLM judge, namer and pruner
of a process, and kept across restarts by a :class:`SpendLedger`.

Why: the judge budget bounds the calls of one discovery run per utterance; it does not
bound the bill of a service that runs discovery every few minutes. A :class:`SpendCap`
is that bound: at most ``max_calls`` requests and ``max_tokens`` tokens per window
(an hour in the service).

What is counted, where it is counted:

- a **call** is one request to the LLM server, the SDK's own retries included. The HTTP
  client takes one call from the cap when a request gets its concurrency slot (so the
  questions of a batch are served in the order given: largest clusters first) and one
  more for every retry as it is sent; a retry the cap refuses ends the request. The
  call cap is therefore never passed. (In-process vLLM: one call per conversation.)
- **tokens** are what the server reports in ``usage``, known only once an answer is
  back. A request is let through while the window's tokens are under the cap, so the
  token cap may be passed by the requests in flight at that moment, never by more.

A refused request is never sent: the client answers it with
``Completion(capped="call_cap" | "token_cap")``. With ``action="fallback"`` the LLM judge
and namer then ask their offline fallback (and say so in ``Verdict.fallback``); with
``action="wait"`` they sleep until the next window and ask again.

Windows are fixed: with ``window_origin=0`` they start on the epoch's multiples of
``window_seconds`` (on the hour, UTC), so a restarted process finds the window it left
and the spend its ledger recorded for it; ``window_origin=None`` starts the first window
at the first call (one command-line run). After every change the window's spend goes to
the ledger (:class:`InMemorySpendLedger` here; the service's writes it to a compacted
Kafka topic, :mod:`dialin.streams.service.spend`), which is read back at the first call or
by :meth:`SpendCap.restore`.

Library: the standard library only (``threading``); no Kafka here, by design.
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

#: What a run does when a cap would be passed.
CAP_ACTIONS = ("fallback", "wait")
#: Why a request was refused (``Completion.capped``, ``Verdict.fallback``, metrics).
CAP_REASONS = ("call_cap", "token_cap")

#: ``on_fallback(task, reason, n)``: ``n`` questions of ``task`` answered offline.
OnFallback = Callable[[str, str, int], None]


class SpendCapReached(RuntimeError):
    """A request the spend cap refused (nothing was sent); ``reason`` is in :data:`CAP_REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SpendCapStopped(RuntimeError):
    """The process is stopping while a run waits for the next spend window."""


@dataclass(frozen=True)
class WindowSpend:
    """What one window spent: what a :class:`SpendLedger` keeps.

    ``start`` is the window's start (epoch seconds), ``hit`` the first cap reached in it
    (None while none is), ``before`` the number of consecutive windows just before this
    one in which a cap was reached.
    """

    start: float
    window_seconds: float
    calls: int = 0
    tokens: int = 0
    hit: str | None = None
    before: int = 0

    @property
    def streak(self) -> int:
        """Consecutive windows with a cap reached, up to this one (this one counts once hit)."""
        return self.before + (1 if self.hit else 0)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> WindowSpend:
        return cls(start=float(data["start"]), window_seconds=float(data["window_seconds"]),
                   calls=int(data.get("calls", 0)), tokens=int(data.get("tokens", 0)),
                   hit=data.get("hit"), before=int(data.get("before", 0)))


class SpendLedger(ABC):
    """Where the spend of the current window is kept, so a restart does not reset it."""

    @abstractmethod
    def record(self, spend: WindowSpend) -> None:
        """Keep ``spend``, the current window's figures (called after every change;
        must not block for long: it runs while a request waits)."""

    def restore(self) -> WindowSpend | None:
        """The last spend recorded (by this process or one before it); None: nothing."""
        return None


class InMemorySpendLedger(SpendLedger):
    """Keeps the last spend in memory: one process, or tests of a restart."""

    def __init__(self) -> None:
        self.last: WindowSpend | None = None

    def record(self, spend: WindowSpend) -> None:
        self.last = spend

    def restore(self) -> WindowSpend | None:
        return self.last


class SpendCap:
    """Calls and tokens per window for every LLM task of a process; thread-safe.

    Parameters
    ----------
    max_calls, max_tokens : int or None
        Requests and tokens per window; None: no cap of that kind; 0: no LLM at all.
    window_seconds : float
        Length of a window (3600: the settings' "per hour").
    window_origin : float or None
        Windows start at ``window_origin + k * window_seconds``; None: at the first call.
    action : {"fallback", "wait"}
        What the LLM judge, namer and pruner do with a question the cap refused.
    ledger : SpendLedger or None
        Where the window's spend is recorded and read back; None: an in-memory one.
    on_fallback : callable or None
        ``on_fallback(task, reason, n)`` for every question answered offline (metrics).
    clock : callable
        Wall-clock seconds (``time.time``); tests pass their own.

    Attributes (once used): ``fallbacks`` counts questions answered offline by
    (task, reason); ``refused`` counts requests refused by reason.
    """

    def __init__(self, max_calls: int | None = None, max_tokens: int | None = None, *,
                 window_seconds: float = 3600.0, window_origin: float | None = 0.0,
                 action: str = "fallback", ledger: SpendLedger | None = None,
                 on_fallback: OnFallback | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.max_calls = max_calls
        self.max_tokens = max_tokens
        self.window_seconds = window_seconds
        self.window_origin = window_origin
        self.action = action
        self.ledger = ledger
        self.on_fallback = on_fallback
        self.clock = clock

    # --- state, made on first use ------------------------------------------------------

    def _check(self) -> None:
        for name in ("max_calls", "max_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 0):
                raise ValueError(f"{name} must be None or an integer >= 0, got {value!r}")
        if not (isinstance(self.window_seconds, int | float) and self.window_seconds > 0
                and math.isfinite(self.window_seconds)):
            raise ValueError(f"window_seconds must be a finite number > 0, got {self.window_seconds!r}")
        if self.action not in CAP_ACTIONS:
            raise ValueError(f"action must be one of {', '.join(CAP_ACTIONS)}, got {self.action!r}")

    def _lock(self) -> threading.Condition:
        return self.__dict__.setdefault("_cond", threading.Condition())

    def _spend(self) -> WindowSpend:
        """The current window's spend, rolled over or read back as needed (lock held)."""
        now = self.clock()
        spend: WindowSpend | None = self.__dict__.get("_current")
        if spend is None:
            self._check()
            self._ledger = self.ledger if self.ledger is not None else InMemorySpendLedger()
            self.fallbacks: Counter[tuple[str, str]] = Counter()
            self.refused: Counter[str] = Counter()
            if self.window_origin is None:
                self._origin = now
            else:
                self._origin = float(self.window_origin)
            self._set(self._merged(WindowSpend(self._window_start(now), float(self.window_seconds)),
                                   now))
        elif now >= spend.start + spend.window_seconds:
            self._set(self._roll(spend, now))
        return self._current

    def _merged(self, spend: WindowSpend, now: float) -> WindowSpend:
        """``spend`` with what the ledger recorded for the same window added in (the larger
        of each count: the ledger may hold what another process, or this one, spent)."""
        restored = self._ledger.restore()
        theirs = self._roll(restored, now) if restored is not None else None
        if theirs is None or theirs.start != spend.start:
            return spend
        return replace(spend, calls=max(spend.calls, theirs.calls),
                       tokens=max(spend.tokens, theirs.tokens), hit=spend.hit or theirs.hit,
                       before=max(spend.before, theirs.before))

    def _window_start(self, now: float) -> float:
        w = float(self.window_seconds)
        return self._origin + math.floor((now - self._origin) / w) * w

    def _roll(self, last: WindowSpend, now: float) -> WindowSpend | None:
        """The window of ``now`` after ``last``: ``last`` itself when it is still open,
        a fresh one that carries the streak when ``last`` is the window just before."""
        w = float(self.window_seconds)
        if last.window_seconds != w:
            return None  # recorded under another window length: not comparable
        start = self._window_start(now)
        if last.start == start:
            return last
        before = last.streak if (last.hit and start - last.start == w) else 0
        return WindowSpend(start, w, before=before)

    def _set(self, spend: WindowSpend) -> None:
        self._current = spend
        self._ledger.record(spend)

    # --- what the clients call ---------------------------------------------------------

    def restore(self) -> WindowSpend:
        """Read the ledger back now (it is read at the first call too) and count what it
        recorded for the current window; the window's spend. The service calls it when a
        worker starts leading: the last leader's spend is on the ledger."""
        with self._lock():
            if "_current" not in self.__dict__:
                return self._spend()
            spend = self._spend()
            self._set(self._merged(spend, self.clock()))
            return self._current

    def take(self) -> str | None:
        """Take one call for a request about to be sent: None when it may go, else the
        reason it may not (:data:`CAP_REASONS`)."""
        with self._lock():
            spend = self._spend()
            reason = None
            if self.max_calls is not None and spend.calls >= self.max_calls:
                reason = "call_cap"
            elif self.max_tokens is not None and spend.tokens >= self.max_tokens:
                reason = "token_cap"
            if reason is not None:
                self.refused[reason] += 1
                if spend.hit is None:
                    self._set(replace(spend, hit=reason))
                return reason
            self._set(replace(spend, calls=spend.calls + 1))
            return None

    def refund(self, calls: int = 1) -> None:
        """Give back calls taken for requests that were never sent."""
        with self._lock():
            spend = self._spend()
            self._set(replace(spend, calls=max(0, spend.calls - int(calls))))

    def add_tokens(self, tokens: int) -> None:
        """Count the tokens an answer's ``usage`` reported."""
        if tokens <= 0:
            return
        with self._lock():
            spend = self._spend()
            self._set(replace(spend, tokens=spend.tokens + int(tokens)))

    def refusal(self, reason: str) -> str:
        """One line saying which cap refused a request, for ``Completion.error``."""
        with self._lock():
            spend = self._spend()
            if reason == "call_cap":
                what = f"{spend.calls} of {self.max_calls} LLM calls"
            else:
                what = f"{spend.tokens} of {self.max_tokens} LLM tokens"
            left = spend.start + spend.window_seconds - self.clock()
        return f"LLM spend cap reached: {what} spent in this window (next window in {left:.0f}s)"

    # --- what the judge, namer and pruner call -----------------------------------------

    def fell_back(self, task: str, reason: str, n: int = 1) -> None:
        """``n`` questions of ``task`` were answered offline because of ``reason``."""
        with self._lock():
            self._spend()
            self.fallbacks[(task, reason)] += n
        if self.on_fallback is not None:
            self.on_fallback(task, reason, n)

    def wait_for_next_window(self) -> None:
        """Sleep until the current window ends; :class:`SpendCapStopped` if
        :meth:`close` is called meanwhile."""
        cond = self._lock()
        with cond:
            end = self._spend().start + float(self.window_seconds)
            while not self.__dict__.get("_closed", False):
                left = end - self.clock()
                if left <= 0:
                    return
                cond.wait(timeout=min(left, 1.0))
        raise SpendCapStopped("stopped while waiting for the next LLM spend window")

    def close(self) -> None:
        """Wake every run waiting for the next window (it raises :class:`SpendCapStopped`)."""
        cond = self._lock()
        with cond:
            self._closed = True
            cond.notify_all()

    # --- reporting ---------------------------------------------------------------------

    def current(self) -> WindowSpend:
        """The current window's spend."""
        with self._lock():
            return self._spend()

    def streak(self) -> int:
        """Consecutive windows, up to the current one, in which a cap was reached (for the
        alert): the current window counts once a cap is reached in it. 0 before the cap's
        first use (asking does not read the ledger)."""
        with self._lock():
            if "_current" not in self.__dict__:
                return 0
            return self._spend().streak

    def summary(self) -> dict:
        """Plain numbers for a run's output: the caps, the window's spend, the fallbacks."""
        with self._lock():
            spend = self._spend()
            by_task: dict[str, dict[str, int]] = {}
            for (task, reason), n in sorted(self.fallbacks.items()):
                by_task.setdefault(task, {})[reason] = n
            return {"max_calls": self.max_calls, "max_tokens": self.max_tokens,
                    "window_seconds": spend.window_seconds, "action": self.action,
                    "calls": spend.calls, "tokens": spend.tokens, "hit": spend.hit,
                    "refused": dict(sorted(self.refused.items())), "fallbacks": by_task}

    # --- copies share the cap -------------------------------------------------------------

    def __deepcopy__(self, memo: dict) -> SpendCap:
        # One budget per process: a copied judge (sklearn's clone deep-copies
        # parameters) must spend from the same cap, not from a fresh one.
        return self

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_cond",)}
