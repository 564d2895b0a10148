"""Search-space pruning (paper §6.4.2): which cluster counts to try in the next iteration.

Algorithm 1 fits and judges every candidate count at every iteration; the paper instead
shows an LLM the iteration log and keeps its top-5 distinct predictions (right 89% of
the time, Table 5). :class:`~dialin.models.LLMPruner` (in :mod:`._llm`) does that over
an LLM; :class:`HeuristicPruner`, here, is the free fallback when no LLM is configured,
and fills in when the LLM's answer is short or invalid. Both are a
:class:`~dialin.models.Pruner`, with one method::

    propose(log, n_remaining, lo, hi, k=5) -> list[int]   # distinct, in [lo, hi], best first

``log`` is the estimator's ``log_``: dicts with ``iteration``, ``n_cluster`` (or
``n_clusters``), ``good``, ``bad`` and ``rate`` (= good / bad), as in the paper's Table 10.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from .._base import Pruner


def _check_range(n_remaining: int, lo: int, hi: int, k: int) -> None:
    if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
        raise ValueError(f"need integers 1 <= lo <= hi, got lo={lo}, hi={hi}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if n_remaining < 0:
        raise ValueError(f"n_remaining must be >= 0, got {n_remaining}")


def _count(entry: Mapping) -> int | None:
    value = entry.get("n_cluster", entry.get("n_clusters"))
    return int(value) if isinstance(value, int | float) else None


def _rate(entry: Mapping) -> float:
    if "rate" in entry:
        return float(entry["rate"])
    good, bad = float(entry.get("good", 0)), float(entry.get("bad", 0))
    return good / bad if bad else math.inf


class HeuristicPruner(Pruner):
    """Around the last iteration's best count, scaled by the share of data still left.

    Table 10 shows the best count shrinking roughly with the square root of the data left
    (1600 for 55k utterances, then 800 for 2.9k, 200 for 447), so the centre is
    ``best * sqrt(n_remaining / n_then)`` where ``n_then = good + bad`` of that row; the
    proposals spread geometrically around it. Without a log: around ``sqrt(n_remaining)``.
    """

    def propose(self, log: Sequence[Mapping], n_remaining: int, lo: int, hi: int,
                k: int = 5) -> list[int]:
        _check_range(n_remaining, lo, hi, k)
        rows = [e for e in log if _count(e) is not None]
        if rows:
            last = max(e.get("iteration", 0) for e in rows)
            best = max((e for e in rows if e.get("iteration", 0) == last), key=_rate)
            n_then = float(best.get("good", 0)) + float(best.get("bad", 0))
            share = n_remaining / n_then if n_then > 0 else 1.0
            centre = _count(best) * math.sqrt(min(share, 1.0))
        else:
            centre = math.sqrt(max(n_remaining, 1))
        return _spread(centre, lo, hi, k)


def _spread(centre: float, lo: int, hi: int, k: int) -> list[int]:
    """``k`` distinct integers in [lo, hi] nearest to ``centre`` on a geometric scale."""
    centre = min(max(centre, lo), hi)
    out: list[int] = []
    for factor in (1.0, 0.75, 1.33, 0.5, 2.0, 0.35, 3.0, 0.25, 4.0):
        value = round(min(max(centre * factor, lo), hi))
        if value not in out:
            out.append(value)
        if len(out) == k:
            return out
    # A narrow range: take the remaining integers closest to the centre.
    for value in sorted(range(lo, hi + 1), key=lambda v: (abs(v - centre), v)):
        if len(out) == k:
            break
        if value not in out:
            out.append(value)
    return out
