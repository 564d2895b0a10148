"""Label-free estimates of how many intents a set of embeddings holds (issue #14).

The budget strategy with the heuristic judge ends with about one cluster per ~40
utterances whatever the data; these estimators look at the data's own geometry for the
number of groups, so that a fit can be *anchored* near it (``BudgetITLClustering``'s
``k_hint``), never replaced by it. Each returns one integer:

* ``eigengap``: the largest gap among the smallest eigenvalues of the normalised
  Laplacian of the symmetric 10-nearest-neighbour graph (SciPy ``eigsh``);
* ``silhouette`` / ``calinski``: the k of a k-means curve over a geometric grid of k
  with the best cosine silhouette / Calinski-Harabasz score (scikit-learn metrics);
* ``stability``: the largest k of the grid whose k-means partitions of two random
  halves agree (ARI of the labels they give every row) at least ``0.8`` (after Ben-Hur
  et al. 2002, "A stability based method for discovering structure");
* ``components``: connected components (of at least ``3`` rows) of the mutual
  10-nearest-neighbour graph, keeping edges whose cosine similarity is above a
  threshold read off the data (the median similarity of each row's nearest neighbour);
* ``jump``: clusters of average-linkage agglomeration (cosine) cut at the height of the
  dendrogram's largest relative jump (SciPy ``linkage``);
* ``cosine-cut``: clusters of the same agglomeration cut at a fixed cosine distance:
  one minus (mean + one standard deviation) of the similarity of random pairs of rows,
  a figure of the embedding space that does not change with the number of rows.

The k-means curves and the agglomeration run on a sample of 3,000 rows at most, so each
estimator takes seconds on 10,000 rows.

How each tracks the true number on data of varied density is measured by
``bench/k_estimate.py`` (docs/benchmarks.md, "How many intents"). Libraries: NumPy,
SciPy (sparse eigensolver, connected components, hierarchical clustering),
scikit-learn (metrics), FAISS (through the engine's k-means and neighbour search).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from sklearn.metrics import adjusted_rand_score, calinski_harabasz_score, silhouette_score
from sklearn.utils import check_random_state

from .._threads import single_threaded
from .._vectors import nearest_rows, unit
from ._clusterers import cluster

#: The estimators :func:`estimate_n_intents` knows, in the order the study reports them.
K_ESTIMATORS = ("eigengap", "silhouette", "calinski", "stability", "components", "jump",
              "cosine-cut")
_NEIGHBOURS = 10
_STABLE_ARI = 0.8
_MIN_COMPONENT = 3
_SAMPLE = 3000
_GRID_POINTS = 14
_PAIRS = 20000


@single_threaded
def estimate_n_intents(X: np.ndarray, method: str = "eigengap", *, distance: float | None = None,
                       random_state=None) -> int:
    """The number of groups in the rows of ``X`` (unit-length embeddings) by ``method``;
    ``distance`` fixes the cosine distance of ``cosine-cut`` (None: read off the data)."""
    if method not in K_ESTIMATORS:
        raise ValueError(f"unknown estimator {method!r}; choose one of {', '.join(K_ESTIMATORS)}")
    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] < 4:
        raise ValueError(f"X must be an (n, d) array with n >= 4, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinite values")
    rng = check_random_state(random_state)
    if distance is not None and not 0.0 < distance < 2.0:
        raise ValueError(f"distance must be None or in (0, 2), got {distance}")
    if method == "cosine-cut":
        return _cosine_cut(unit(X), rng, distance)
    return int({"eigengap": _eigengap, "silhouette": _silhouette, "calinski": _calinski,
                "stability": _stability, "components": _components,
                "jump": _jump}[method](unit(X), rng))


def _grid(n: int) -> np.ndarray:
    """k from 2 to n / 3 (at most 400), spaced geometrically."""
    hi = max(3, min(400, n // 3))
    return np.unique(np.round(np.geomspace(2, hi, _GRID_POINTS)).astype(int))


def _knn_graph(X: np.ndarray, k: int = _NEIGHBOURS, mutual: bool = False) -> sparse.csr_matrix:
    n = X.shape[0]
    nn = nearest_rows(X, min(k, n - 1))
    rows = np.repeat(np.arange(n), nn.shape[1])
    A = sparse.csr_matrix((np.ones(rows.size), (rows, nn.ravel())), shape=(n, n))
    return A.minimum(A.T) if mutual else A.maximum(A.T)


def _eigengap(X: np.ndarray, rng) -> int:
    from scipy.sparse.linalg import eigsh

    n = X.shape[0]
    A = _knn_graph(X)
    d = np.asarray(A.sum(1)).ravel()
    inv = sparse.diags(1.0 / np.sqrt(np.maximum(d, 1e-12)))
    S = inv @ A @ inv
    m = int(min(n - 2, max(10, min(300, n // 3))))
    if n <= 1500:
        vals = np.linalg.eigvalsh(S.toarray())[::-1][:m]
    else:
        v0 = rng.uniform(-1, 1, n)
        vals = np.sort(eigsh(S, k=m, which="LA", v0=v0, return_eigenvectors=False))[::-1]
    lap = 1.0 - vals  # the smallest Laplacian eigenvalues, ascending
    gaps = np.diff(lap)  # gaps[i] follows the (i+1)-th eigenvalue
    return int(np.argmax(gaps[1:]) + 2)


def _kmeans_curve(X: np.ndarray, rng):
    """``(k, labels)`` of k-means over the grid, on a sample of 3,000 rows at most."""
    Xs = X[_sample(X.shape[0], rng)]
    for k in _grid(Xs.shape[0]):
        yield int(k), Xs, cluster(Xs, int(k), "kmeans", random_state=rng)


def _sample(n: int, rng) -> np.ndarray:
    return np.sort(rng.choice(n, _SAMPLE, replace=False)) if n > _SAMPLE else np.arange(n)


def _silhouette(X: np.ndarray, rng) -> int:
    return max((silhouette_score(Xs, labels, metric="cosine"), k)
               for k, Xs, labels in _kmeans_curve(X, rng))[1]


def _calinski(X: np.ndarray, rng) -> int:
    return max((calinski_harabasz_score(Xs, labels), k) for k, Xs, labels in _kmeans_curve(X, rng))[1]


def _stability(X: np.ndarray, rng) -> int:
    X = X[_sample(X.shape[0], rng)]
    n = X.shape[0]
    chosen = 2
    for k in _grid(n):
        halves = rng.permutation(n)
        a, b = halves[: n // 2], halves[n // 2:]
        if k >= len(b):
            break
        labels = [_nearest_centroid(X, X[h], cluster(X[h], int(k), "kmeans", random_state=rng))
                  for h in (a, b)]
        if adjusted_rand_score(*labels) >= _STABLE_ARI:
            chosen = int(k)
    return chosen


def _nearest_centroid(X: np.ndarray, Xh: np.ndarray, labels: np.ndarray) -> np.ndarray:
    C = unit(np.array([Xh[labels == c].sum(0) for c in range(labels.max() + 1)]))
    return np.argmax(X @ C.T, axis=1)


def _components(X: np.ndarray, rng) -> int:
    n = X.shape[0]
    A = _knn_graph(X, mutual=True).tocoo()
    sims = np.einsum("ij,ij->i", X[A.row], X[A.col])
    nn1 = nearest_rows(X, 1)[:, 0]
    threshold = float(np.median(np.einsum("ij,ij->i", X, X[nn1])))
    keep = sims >= threshold
    G = sparse.csr_matrix((np.ones(keep.sum()), (A.row[keep], A.col[keep])), shape=(n, n))
    _, labels = connected_components(G, directed=False)
    sizes = np.bincount(labels)
    return max(1, int((sizes >= _MIN_COMPONENT).sum()))


def _jump(X: np.ndarray, rng) -> int:
    """Average-linkage clusters cut at the dendrogram's largest relative jump in height."""
    Z = _average_linkage(X, rng)
    heights = Z[:, 2]
    top = len(heights) - 1  # the last merge joins everything
    lo = top // 2  # only the upper half of the merges is looked at
    jumps = heights[lo + 1: top + 1] / np.maximum(heights[lo: top], 1e-9)
    return max(1, int(Z.shape[0] + 1 - (lo + int(np.argmax(jumps)) + 1)))


def _cosine_cut(X: np.ndarray, rng, distance: float | None) -> int:
    """Average-linkage clusters (cosine) cut at ``distance``; by default one minus the mean
    plus one standard deviation of the similarity of random pairs of rows."""
    from scipy.cluster.hierarchy import fcluster

    if distance is None:
        n = X.shape[0]
        i, j = rng.randint(0, n, _PAIRS), rng.randint(0, n, _PAIRS)
        sims = np.einsum("ij,ij->i", X[i[i != j]], X[j[i != j]])
        distance = 1.0 - float(sims.mean() + sims.std())
    Z = _average_linkage(X, rng)
    return int(len(np.unique(fcluster(Z, distance, criterion="distance"))))


def _average_linkage(X: np.ndarray, rng) -> np.ndarray:
    from scipy.cluster.hierarchy import linkage

    rows = _sample(X.shape[0], rng)
    return linkage(X[rows].astype(np.float64), method="average", metric="cosine")
