"""The response log: every LLM answer, kept under the hash of the prompt that got it.

Why: a discovery run is only reproducible when the LLM's answers are. A judge, namer or
pruner given a :class:`ResponseLog` looks an answer up by
:func:`~dialin.models.llm._prompts.response_key` (model, task, full prompt, repetition)
before it asks, and records the first valid answer to every prompt it had to ask. A later
run over the same data (``dialin rediscover``) then gets the same answers without the LLM,
and asks the server only for prompts never asked before.

What is kept is the parsed answer (``[value, P(Good) or None]``, what the in-memory cache
keeps), never the raw text: a parser fix does not change what was decided. The first
answer to a prompt wins: :meth:`ResponseLog.put` never replaces one.

This module is the interface and an in-memory log (tests, one process); where the answers
live for a deployment is the caller's choice (the service keeps them on a compacted Kafka
topic, :mod:`dialin.streams.service.responses`), so ``dialin.models`` stays free of Kafka.
Standard library only.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Any

#: A parsed answer: [value, P(Good) or None] (JSON-able).
Answer = list[Any]


class ResponseLog(ABC):
    """Where LLM answers are recorded, by prompt hash. Shared, thread-safe; copies of a
    judge (scikit-learn's ``clone`` deep-copies parameters) share the same log."""

    @abstractmethod
    def get(self, key: str) -> Answer | None:
        """The answer recorded for ``key``, or None when the prompt was never answered."""

    @abstractmethod
    def put(self, key: str, task: str, answer: Answer) -> None:
        """Record ``answer`` (of ``task``: judge, name or prune) for ``key``, unless one is
        recorded already (the first answer wins)."""

    def close(self) -> None:
        """Make every answer put so far durable (nothing to do for an in-memory log)."""

    def __deepcopy__(self, memo: dict) -> ResponseLog:
        return self


class MemoryResponseLog(ResponseLog):
    """A response log in a dict: one process's answers (tests, a single run)."""

    def __init__(self) -> None:
        self._answers: dict[str, tuple[str, Answer]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Answer | None:
        with self._lock:
            found = self._answers.get(key)
        return None if found is None else list(found[1])

    def put(self, key: str, task: str, answer: Answer) -> None:
        with self._lock:
            self._answers.setdefault(key, (task, list(answer)))

    def __len__(self) -> int:
        with self._lock:
            return len(self._answers)
