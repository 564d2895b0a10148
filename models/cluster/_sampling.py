"""What a judge or namer is shown of a cluster: a small, representative sample.

An LLM reads some twenty sentences, not a cluster of hundreds, so the choice of
sentences decides what it sees. Three ways, all deterministic for a given seed:

* ``random``: a uniform sample (the paper's baseline sampling).
* ``nearest``: the members closest to the centroid (cosine), most central first:
  the cluster's typical wording.
* ``convex``: the paper's convex sampling (§6.4.1, Figure 2): project the cluster to
  ``d`` dimensions with PCA (scikit-learn), take the vertices of its convex hull
  (``scipy.spatial.ConvexHull``, Qhull) so the sample spans the cluster's extremes,
  then fill up with the most central members. Clusters too small or too flat for a
  hull fall back to ``nearest``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._base import ClusterView

SAMPLING_METHODS = ("random", "nearest", "convex")

Seed = int | np.random.Generator | None


def _members(members: Sequence[int]) -> np.ndarray:
    m = np.asarray(members, dtype=np.int64).ravel()
    if m.size == 0:
        raise ValueError("a cluster needs at least one member")
    return m


def _by_centrality(X: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``m`` ordered from the most to the least central (cosine to the centroid)."""
    rows = np.asarray(X[m], dtype=np.float64)
    centroid = rows.mean(axis=0)
    sims = rows @ centroid  # same order as cosine: the centroid's length is a constant
    return m[np.argsort(-sims, kind="stable")]


def _hull_vertices(X: np.ndarray, m: np.ndarray, d: int) -> np.ndarray:
    from scipy.spatial import ConvexHull, QhullError
    from sklearn.decomposition import PCA

    if m.size <= d + 1:
        return m[:0]
    rows = np.asarray(X[m], dtype=np.float64)
    if rows.var(axis=0).sum() <= 1e-12:
        return m[:0]  # all members identical: nothing to span
    Z = PCA(n_components=d, svd_solver="full").fit_transform(rows)
    try:
        hull = ConvexHull(Z)
    except (QhullError, ValueError):
        return m[:0]  # all points on a line/plane, or duplicates: no proper hull
    return m[np.sort(hull.vertices)]


def sample_members(members: Sequence[int], X: np.ndarray | None, size: int = 20,
                   method: str = "random", rng: Seed = None, d: int = 2) -> np.ndarray:
    """Pick up to ``size`` row indices out of ``members`` to show for this cluster.

    ``X`` holds the embeddings of all rows (unit vectors); it may be None only for
    ``random``. A cluster no larger than ``size`` is shown whole, in member order.
    """
    if method not in SAMPLING_METHODS:
        raise ValueError(f"unknown sampling method {method!r}; choose one of {', '.join(SAMPLING_METHODS)}")
    if int(size) < 1:
        raise ValueError(f"sample size must be >= 1, got {size}")
    if method != "random" and X is None:
        raise ValueError(f"sampling method {method!r} needs the embeddings X")
    m = _members(members)
    if m.size <= size:
        return m.copy()
    gen = np.random.default_rng(rng)
    if method == "random":
        return gen.choice(m, size=size, replace=False)
    central = _by_centrality(X, m)
    if method == "nearest":
        return central[:size]
    vertices = _hull_vertices(X, m, int(d))
    if vertices.size > size:
        vertices = np.sort(gen.choice(vertices, size=size, replace=False))
    taken = set(vertices.tolist())
    fill = [i for i in central if i not in taken][: size - vertices.size]
    return np.concatenate([vertices, np.asarray(fill, dtype=np.int64)])


def make_view(members: Sequence[int], texts: Sequence[str], X: np.ndarray | None,
              size: int = 20, method: str = "nearest", rng: Seed = None,
              role: str | None = None, repetition: int = 0) -> ClusterView:
    """The :class:`ClusterView` of one cluster: every member, plus a sampled text list."""
    picked = sample_members(members, X, size=size, method=method, rng=rng)
    return ClusterView(members=tuple(int(i) for i in _members(members)),
                       texts=tuple(texts[int(i)] for i in picked), role=role, repetition=repetition)


def make_union_view(members_a: Sequence[int], members_b: Sequence[int], texts: Sequence[str],
                    X: np.ndarray | None, per_side: int = 10, method: str = "nearest",
                    rng: Seed = None, role: str | None = None, repetition: int = 0) -> ClusterView:
    """The view of two clusters asked as one ("is their union coherent?").

    ``parts`` keeps each side's sample apart so a prompt can show both groups;
    ``texts`` is both samples in order and ``members`` is ``a`` then ``b``, with
    ``split`` the size of ``a``.
    """
    gen = np.random.default_rng(rng)
    a = sample_members(members_a, X, size=per_side, method=method, rng=gen)
    b = sample_members(members_b, X, size=per_side, method=method, rng=gen)
    part_a = tuple(texts[int(i)] for i in a)
    part_b = tuple(texts[int(i)] for i in b)
    side_a = tuple(int(i) for i in _members(members_a))
    members = side_a + tuple(int(i) for i in _members(members_b))
    return ClusterView(members=members, texts=part_a + part_b, parts=(part_a, part_b),
                       role=role, repetition=repetition, split=len(side_a))
