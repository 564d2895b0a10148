"""What LLM work cost: calls by task and outcome, tokens, seconds, cache hits.

Every LLM judge, namer and pruner (whatever its client: HTTP or in-process) owns one
:class:`LLMStats` and may also call an ``on_call`` hook per request. The hook is how the
service feeds Prometheus without ``dialin.models`` importing prometheus; the stats object
is how a batch run (``dialin discover``/``evaluate``) prints the same figures at the end.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

#: Tasks an LLM is asked to do.
TASKS = ("judge", "name", "prune")
#: ok: a valid answer; invalid: an answer that did not parse (retried, never used);
#: error: the request failed after the SDK's own retries; cached: answered from memory.
OUTCOMES = ("ok", "invalid", "error", "cached")

#: ``on_call(task, outcome, seconds, prompt_tokens, completion_tokens)``
OnCall = Callable[[str, str, float, int, int], None]


@dataclass
class LLMStats:
    """Counters for one judge, namer or pruner; thread-safe, cheap, plain numbers out.

    ``http_status`` counts every HTTP response status the client saw, including the
    ones the SDK retried by itself (a 500 then a 200 shows as one ``500`` and one
    ``200`` but a single ``ok`` call), so hidden retries stay visible.
    """

    calls: Counter = field(default_factory=Counter)
    http_status: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, task: str, outcome: str, seconds: float = 0.0,
               prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        with self._lock:
            self.calls[(task, outcome)] += 1
            self.seconds += seconds
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens

    def record_status(self, status: int) -> None:
        with self._lock:
            self.http_status[int(status)] += 1

    def count(self, task: str | None = None, outcome: str | None = None) -> int:
        """Calls matching ``task`` and ``outcome`` (None matches any)."""
        with self._lock:
            return sum(n for (t, o), n in self.calls.items()
                       if (task is None or t == task) and (outcome is None or o == outcome))

    @property
    def cache_hits(self) -> int:
        return self.count(outcome="cached")

    def as_dict(self) -> dict:
        """JSON-ready summary: ``{"calls": {"judge": {"ok": 3, ...}}, "tokens": ..., ...}``."""
        with self._lock:
            by_task: dict[str, dict[str, int]] = {}
            for (task, outcome), n in sorted(self.calls.items()):
                by_task.setdefault(task, {})[outcome] = n
            return {
                "calls": by_task,
                "cache_hits": sum(n for (_, o), n in self.calls.items() if o == "cached"),
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "seconds": round(self.seconds, 3),
                "http_status": {str(k): v for k, v in sorted(self.http_status.items())},
            }

    def merge(self, other: LLMStats) -> LLMStats:
        """A new object with both sets of counts (a crowd of judges reports as one)."""
        out = LLMStats()
        for src in (self, other):
            with src._lock:
                out.calls.update(src.calls)
                out.http_status.update(src.http_status)
                out.prompt_tokens += src.prompt_tokens
                out.completion_tokens += src.completion_tokens
                out.seconds += src.seconds
        return out
