"""Verdict cache and call accounting around any judge.

Every strategy asks its judge through a :class:`JudgeLedger`, so the same question
(as the judge's ``cache_key`` defines it) is never paid for twice within a run, and
calls are counted by phase for the fitted results, the CLI and Prometheus. A strategy
that decides one question at a time may ask ahead (:meth:`JudgeLedger.ask_ahead`): the
questions it expects to reach go in one batch and their answers wait in the cache, so an
LLM judge is waited for once per batch; answers nothing read are counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from .._base import ClusterView, Judge, Verdict


class JudgeLedger:
    """Cache verdicts by question and count what was spent, by phase."""

    def __init__(self, judge: Judge, cache: dict | None = None) -> None:
        self.judge_ = judge
        # A shared dict may be passed in so several fits (e.g. per role) share answers.
        self.cache: dict = {} if cache is None else cache
        self.calls_by_phase: Counter[str] = Counter()
        self.cache_hits = 0
        self.invalid = 0
        self.asked_ahead = 0
        self._unread: set = set()  # questions asked ahead whose answer nothing has read yet

    @property
    def n_calls(self) -> int:
        return sum(self.calls_by_phase.values())

    def ask(self, views: Sequence[ClusterView], phase: str) -> list[Verdict]:
        """Judge ``views``; cached questions cost nothing, the rest go in one batch."""
        keys = [self.judge_.cache_key(v) for v in views]
        todo: dict = {}
        for key, view in zip(keys, views):
            if key in self.cache:
                self.cache_hits += 1
                self._unread.discard(key)
            elif key not in todo:
                todo[key] = view
        self._send(todo, phase)
        return [self.cache[key] for key in keys]

    def ask_ahead(self, views: Sequence[ClusterView], phase: str,
                  limit: int) -> list[Verdict | None]:
        """Ask, in one batch, questions a strategy expects to reach (at most ``limit`` new
        ones); their answers wait in the cache for :meth:`ask`. Returns what is known of
        each (None: beyond the limit). Answers nothing reads are counted as unused."""
        keys = [self.judge_.cache_key(v) for v in views]
        todo: dict = {}
        for key, view in zip(keys, views):
            if key not in self.cache and key not in todo and len(todo) < limit:
                todo[key] = view
        self._send(todo, phase)
        self.asked_ahead += len(todo)
        self._unread.update(todo)
        return [self.cache.get(key) for key in keys]

    def _send(self, todo: dict, phase: str) -> None:
        """Ask the judge ``todo`` (cache key -> view) in one batch; cache and count."""
        if not todo:
            return
        verdicts = self.judge_.judge(list(todo.values()))
        for key, verdict in zip(todo, verdicts):
            self.cache[key] = verdict
            if verdict.good is None:
                self.invalid += 1
        self.calls_by_phase[phase] += len(todo)

    def ask_one(self, view: ClusterView, phase: str) -> Verdict:
        return self.ask([view], phase)[0]

    def has(self, view: ClusterView) -> bool:
        """Whether this question's answer is known already (asking it costs nothing)."""
        return self.judge_.cache_key(view) in self.cache

    def summary(self) -> dict:
        """Plain numbers for logs, JSON output and metrics."""
        return {
            "judge_calls": self.n_calls,
            "calls_by_phase": dict(self.calls_by_phase),
            "cache_hits": self.cache_hits,
            "invalid_answers": self.invalid,
            "asked_ahead": self.asked_ahead,
            "asked_ahead_unused": len(self._unread),
        }
