"""bench/heuristic_limits.py: the two ablation tools its section rests on, on data whose
answer is known (the boundary gap of one blob cut in two against two blobs apart, and
forced merges that must join the most-linked groups first)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def limits(bench_module):
    return bench_module("heuristic_limits")


def _blob(rng, centre: np.ndarray, n: int, spread: float) -> np.ndarray:
    X = centre + spread * rng.standard_normal((n, centre.size))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def test_boundary_gap_is_near_zero_inside_one_blob_and_negative_between_two(limits):
    rng = np.random.default_rng(0)
    d = 16
    one = _blob(rng, np.eye(d)[0] * 3, 80, 1.0)
    halves = np.argsort(one[:, 1])  # one blob cut in two along a direction
    a, b = halves[:40], halves[40:]
    inside = limits.boundary_gap(one, a, b)
    two = np.vstack([_blob(rng, np.eye(d)[0] * 3, 40, 0.5), _blob(rng, np.eye(d)[1] * 3, 40, 0.5)])
    apart = limits.boundary_gap(two, np.arange(40), np.arange(40, 80))
    assert abs(inside) < 0.1
    assert apart < -0.3
    assert apart < inside


def test_merged_to_joins_the_most_linked_groups_first(limits):
    rng = np.random.default_rng(1)
    d = 16
    # two intents, each cut into two groups that overlap; the intents are far apart
    X = np.vstack([_blob(rng, np.eye(d)[0] * 3, 60, 0.6), _blob(rng, np.eye(d)[1] * 3, 60, 0.6)])
    labels = np.repeat([0, 1, 2, 3], 30)
    merged = limits.merged_to(X, labels, 2)
    assert len(np.unique(merged)) == 2
    assert len(set(merged[:60])) == 1 and len(set(merged[60:])) == 1
    assert merged[0] != merged[-1]
    # already at or under the target: nothing changes
    assert len(np.unique(limits.merged_to(X, labels, 4))) == 4
