"""A simulated fine-tuned judge for benchmarks: knows the gold labels, errs on purpose.

The paper's fine-tuned Qwen judges agree with human annotators about 96% of the time
(Table 3). To measure the clustering algorithm apart from any LLM, this judge calls a
cluster Good when one gold label covers at least ``purity`` of its members, then flips
the verdict with probability ``1 - accuracy``, drawn independently at every call from a
generator seeded once. It is for ``dialin evaluate`` and ``bench/`` only: the service
never offers it, and there is deliberately no oracle namer (a namer that knew the gold
labels would make the label merge trivially perfect).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._base import ClusterView, Judge, Verdict


class OracleJudge(Judge):
    """Good when one gold label covers >= ``purity`` of a cluster, right with ``accuracy``."""

    backend = "oracle"

    def __init__(self, y_true: Sequence, accuracy: float = 0.96, purity: float = 0.9,
                 random_state: int | None = 0) -> None:
        if not 0.5 <= accuracy <= 1.0:
            raise ValueError(f"accuracy must be in [0.5, 1], got {accuracy}")
        _, self._codes = np.unique(np.asarray(y_true, dtype=object).astype(str), return_inverse=True)
        self.accuracy = accuracy
        self.purity = purity
        self._rng = np.random.default_rng(random_state)

    def cache_key(self, view: ClusterView) -> tuple:
        # The oracle looks at every member, so the member set is the question.
        return (tuple(sorted(view.members)), view.repetition)

    def _truth(self, view: ClusterView) -> bool:
        codes = self._codes[np.asarray(view.members, dtype=np.int64)]
        return bool(np.bincount(codes).max() >= self.purity * len(codes))

    def judge(self, views: Sequence[ClusterView]) -> list[Verdict]:
        out = []
        for view in views:
            truth = self._truth(view)
            flip = bool(self._rng.random() >= self.accuracy)
            out.append(Verdict(good=truth != flip, confidence=None, backend=self.backend))
        return out
