"""Majority votes over judgements: repeated evaluation and an LLM crowd (paper §6.4.1).

:class:`RepeatedJudge` asks one judge about each cluster ``t`` times (the paper's sample
time t), each time on a fresh sample of its members when the data set is known, and
takes the majority. :class:`CrowdJudge` asks several judges (different models or
endpoints) and takes the majority. Both are judges themselves, so they stack and go
through the same :class:`~dialin.models.JudgeLedger`.

Votes: invalid answers (``good is None``) do not vote; a tie is Bad (the engine should
only keep what a majority calls coherent); no valid vote at all is None. The
confidence is the share of valid votes that said Good, i.e. an estimate of P(Good), the
same meaning the LLM backends give it.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from ..llm._accounting import LLMStats
from .._base import ClusterView, Judge, Verdict


def majority(votes: Sequence[Verdict], backend: str) -> Verdict:
    """Majority of the valid votes; ties are Bad; confidence = share of Good."""
    valid = [v.good for v in votes if v.good is not None]
    if not valid:
        return Verdict(good=None, confidence=None, backend=backend)
    n_good = sum(valid)
    return Verdict(good=n_good * 2 > len(valid), confidence=n_good / len(valid), backend=backend)


def _merged_stats(judges: Sequence[Judge]) -> LLMStats | None:
    out = None
    for judge in judges:
        stats = getattr(judge, "stats", None)
        if isinstance(stats, LLMStats):
            out = stats if out is None else out.merge(stats)
    return out


class RepeatedJudge(Judge):
    """Ask ``judge`` ``t`` times per cluster (repetition 0..t-1) and take the majority.

    With ``resample=True`` and after ``prepare`` gave the data set, repetition r > 0 shows
    a new random sample of the cluster's members of the same size (seeded by
    ``random_state``, r and the member set, so a question asked again is the same
    question); otherwise the same texts are asked again and the backend varies its
    sampling by repetition. Unions (views with ``parts``) are never resampled.
    """

    def __init__(self, judge: Judge, t: int = 3, resample: bool = True,
                 random_state: int = 0) -> None:
        self.judge_ = judge
        self.t = t
        self.resample = resample
        self.random_state = random_state

    @property
    def backend(self) -> str:
        return f"{self.judge_.backend}x{self.t}"

    @property
    def deterministic(self) -> bool:
        return self.judge_.deterministic

    @property
    def concurrent(self) -> bool:
        return self.judge_.concurrent

    @property
    def stats(self) -> LLMStats | None:
        return _merged_stats([self.judge_])

    def prepare(self, X: np.ndarray, texts: Sequence[str]) -> None:
        self._texts = None if texts is None else list(texts)
        self.judge_.prepare(X, texts)

    def cache_key(self, view: ClusterView) -> tuple:
        # Resampled repetitions depend on the members, not only on what view 0 shows.
        return (view.members, *super().cache_key(view)) if self.resample else super().cache_key(view)

    def _repeat(self, view: ClusterView, r: int) -> ClusterView:
        texts = getattr(self, "_texts", None)
        shown = len(view.texts)
        if (r == 0 or not self.resample or texts is None or view.parts
                or view.size <= shown or shown == 0):
            return replace(view, repetition=r)
        members = np.asarray(view.members, dtype=np.int64)
        seed = [int(self.random_state), r, zlib.crc32(members.tobytes())]
        pick = np.random.default_rng(seed).choice(members, size=shown, replace=False)
        return replace(view, texts=tuple(texts[i] for i in pick), repetition=r)

    def judge(self, views: Sequence[ClusterView]) -> list[Verdict]:
        if int(self.t) < 1:
            raise ValueError(f"t must be >= 1, got {self.t}")
        t = int(self.t)
        asked = [self._repeat(v, r) for v in views for r in range(t)]
        answers = self.judge_.judge(asked)
        return [majority(answers[i * t:(i + 1) * t], self.backend) for i in range(len(views))]


class CrowdJudge(Judge):
    """Majority vote of several judges (e.g. fine-tuned models on different endpoints).

    The judges are asked in parallel threads (each LLM backend runs its own loop), every
    one with the whole batch.
    """

    backend = "crowd"

    def __init__(self, judges: Sequence[Judge]) -> None:
        self.judges = judges

    @property
    def deterministic(self) -> bool:
        return all(j.deterministic for j in self.judges)

    @property
    def concurrent(self) -> bool:
        return all(j.concurrent for j in self.judges)

    @property
    def stats(self) -> LLMStats | None:
        return _merged_stats(list(self.judges))

    def prepare(self, X: np.ndarray, texts: Sequence[str]) -> None:
        for judge in self.judges:
            judge.prepare(X, texts)

    def judge(self, views: Sequence[ClusterView]) -> list[Verdict]:
        judges = list(self.judges)
        if not judges:
            raise ValueError("CrowdJudge needs at least one judge")
        views = list(views)
        with ThreadPoolExecutor(max_workers=len(judges)) as pool:
            answers = list(pool.map(lambda j: j.judge(views), judges))
        return [majority([a[i] for a in answers], self.backend) for i in range(len(views))]
