"""A simulated fine-tuned judge for benchmarks: knows the gold labels, errs on purpose.

The paper's fine-tuned Qwen judges agree with human annotators about 96% of the time
(Table 3). To measure the clustering algorithm apart from any LLM, this judge calls a
cluster Good when one gold label covers at least ``purity`` of its members, then flips
the verdict with probability ``1 - accuracy``, drawn independently at every call from a
generator seeded once. It is for ``dialin evaluate`` and ``bench/`` only: the service
never offers it, and there is deliberately no oracle namer (a namer that knew the gold
labels would make the label merge trivially perfect).

:class:`SampledOracleJudge` is a stricter yardstick: it reads only what an LLM's prompt
would show, answers the same prompt the same way, and is lenient with nearly pure
clusters, as LLM judges are. Both say ``simulated`` in :meth:`describe`, so no report
can pass their results off as an LLM's.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from .._base import ClusterView, Judge, Verdict


class OracleJudge(Judge):
    """Good when one gold label covers >= ``purity`` of a cluster, right with ``accuracy``."""

    backend = "oracle"
    simulated = True

    def __init__(self, y_true: Sequence, accuracy: float = 0.96, purity: float = 0.9,
                 random_state: int | None = 0) -> None:
        if not 0.5 <= accuracy <= 1.0:
            raise ValueError(f"accuracy must be in [0.5, 1], got {accuracy}")
        _, self._codes = np.unique(np.asarray(y_true, dtype=object).astype(str), return_inverse=True)
        self.accuracy = accuracy
        self.purity = purity
        self._rng = np.random.default_rng(random_state)

    def describe(self) -> dict:
        return {**super().describe(), "knows_gold_labels": True, "sees": "every member",
                "accuracy": self.accuracy, "purity": self.purity}

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


class SampledOracleJudge(OracleJudge):
    """A stricter simulated judge: the gold labels of the *prompt's sample* only.

    Where :class:`OracleJudge` reads every member and errs afresh at every call, a real
    LLM reads the twenty-odd sampled texts of its prompt and, asked the same prompt
    again, gives the same answer. Three rules, each on top of the one before:

    1. **Sample truth.** Good when one gold label covers >= ``purity`` of the *sampled*
       texts (``view.texts``; for a union question both sides' samples, ``parts``,
       each looked up among its own side's members). A bad cluster whose sample
       happens to be pure is called Good, as an LLM would.
    2. **One answer per prompt.** Errors are drawn from a generator seeded with a hash
       of the question (the judge's ``cache_key``: the sampled texts, the role and the
       repetition) and ``random_state``, so the same sample always gets the same
       verdict; asking again cannot average an error away.
    3. **Leniency.** A Bad sample whose dominant label covers >= ``near_purity`` of it
       (nearly pure) is called Good with probability ``leniency``; otherwise the
       verdict is flipped with probability ``1 - accuracy``.

    It is a yardstick for benchmarks and ``dialin evaluate --judge oracle-sampled``:
    never tune it to flatter the engine. ``prepare`` must see the texts the views are
    made from (every strategy calls it at the start of ``fit``).
    """

    backend = "oracle-sampled"

    def __init__(self, y_true: Sequence, accuracy: float = 0.96, purity: float = 0.9,
                 near_purity: float = 0.7, leniency: float = 0.3,
                 random_state: int | None = 0) -> None:
        super().__init__(y_true, accuracy=accuracy, purity=purity, random_state=random_state)
        if not 0.0 <= leniency <= 1.0:
            raise ValueError(f"leniency must be in [0, 1], got {leniency}")
        if not 0.0 < near_purity <= purity:
            raise ValueError(f"near_purity must be in (0, purity={purity}], got {near_purity}")
        self.near_purity = near_purity
        self.leniency = leniency
        self.random_state = random_state
        # random_state=None: one random salt for this judge's lifetime (still one
        # answer per prompt within it).
        self._salt = int(np.random.SeedSequence(random_state).entropy)
        self._texts: list[str] | None = None

    def describe(self) -> dict:
        return {**super().describe(), "sees": "the prompt's sample",
                "near_purity": self.near_purity, "leniency": self.leniency}

    def prepare(self, X: np.ndarray, texts: Sequence[str]) -> None:
        self._texts = list(texts)

    def cache_key(self, view: ClusterView) -> tuple:
        # What the prompt shows is the question (Judge's default), not the member set.
        return Judge.cache_key(self, view)

    def _sampled_rows(self, members: Sequence[int], shown: Sequence[str]) -> list[int]:
        """The rows among ``members`` whose texts are the ``shown`` sample."""
        rows_of: dict[str, list[int]] = defaultdict(list)
        for i in members:
            rows_of[self._texts[i]].append(i)
        out = []
        for text in shown:
            if not rows_of.get(text):
                raise ValueError("a sampled text is not among the cluster's members: prepare() "
                                 "must be given the texts the views were made from")
            out.append(rows_of[text].pop(0))
        return out

    def _share(self, view: ClusterView) -> float:
        """The dominant gold label's share of the sampled texts (both sides of a union)."""
        if self._texts is None:
            raise ValueError("SampledOracleJudge needs prepare(X, texts) before judging")
        if view.split:
            rows = (self._sampled_rows(view.members[:view.split], view.parts[0])
                    + self._sampled_rows(view.members[view.split:], view.parts[1]))
        else:
            rows = self._sampled_rows(view.members, view.texts)
        return float(np.bincount(self._codes[np.asarray(rows, dtype=np.int64)]).max() / len(rows))

    def _prompt_rng(self, view: ClusterView) -> np.random.Generator:
        key = json.dumps([self._salt, self.cache_key(view)], ensure_ascii=False)
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
        return np.random.default_rng(int.from_bytes(digest, "little"))

    def judge(self, views: Sequence[ClusterView]) -> list[Verdict]:
        out = []
        for view in views:
            share = self._share(view)
            rng = self._prompt_rng(view)
            lenient, flip = rng.random() < self.leniency, rng.random() >= self.accuracy
            if share < self.purity and share >= self.near_purity and lenient:
                good = True
            else:
                good = (share >= self.purity) != flip
            out.append(Verdict(good=good, confidence=None, backend=self.backend))
        return out
