"""Base clusterers by name: the partitions the LLM-in-the-loop algorithm starts from.

* ``kmeans``: FAISS k-means (``faiss.Kmeans``), spherical because rows are unit
  vectors, best of a few seeded k-means++ restarts; the fast choice for large inputs.
* ``agglomerative``: scikit-learn Ward linkage, the paper's best base model (§5);
  quadratic memory, so meant for up to some ten thousand rows.
* ``gmm``: scikit-learn ``GaussianMixture`` with diagonal covariances, fitted on a
  PCA projection when the embedding is wide (a full 384-d diagonal GMM is slow and
  no better).

Large inputs are clustered part by part (:func:`split_rows`): k-means into k ~ n/s
clusters costs about n*k and Ward n^2, so the engine's fine partitions (clusters of 4 to
60 utterances) grew as n^2 with the input; inside parts of a few thousand rows they
grow as n. Up to ``2 * PART_ROWS`` rows there is one part and nothing changes.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

from .._threads import single_threaded

CLUSTERERS = ("kmeans", "agglomerative", "gmm")
#: Rows per part of a large input (:func:`split_rows`). Inputs up to twice this are one
#: part. Chosen so the tuning sets of ~3,000 are one part; the 6,000-row tuning subset
#: is the first one split (``python bench/discover_scale.py`` shows the growth).
PART_ROWS = 2500
_GMM_MAX_DIM = 50


@single_threaded
def cluster(X: np.ndarray, n_clusters: int, method: str = "kmeans",
            random_state: int | np.random.RandomState | None = None) -> np.ndarray:
    """Partition the rows of ``X`` into ``n_clusters`` (clipped to ``[1, n]``).

    Returns ``n`` int64 labels numbered ``0..m-1`` in order of first appearance
    (``m`` can fall below ``n_clusters`` only if a method leaves a cluster empty).
    """
    if method not in CLUSTERERS:
        raise ValueError(f"unknown clustering method {method!r}; choose one of {', '.join(CLUSTERERS)}")
    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-d array, got shape {X.shape}")
    n = X.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinite values")
    k = int(min(max(int(n_clusters), 1), n))
    rng = check_random_state(random_state)
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    if k == n:
        return np.arange(n, dtype=np.int64)
    seed = int(rng.randint(0, 2**31 - 1))
    labels = {"kmeans": kmeans_labels, "agglomerative": _agglomerative, "gmm": _gmm}[method](X, k, seed)
    return _renumber(labels)


def _renumber(labels: np.ndarray) -> np.ndarray:
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inverse].astype(np.int64)


def kmeans_labels(X: np.ndarray, k: int, seed: int, n_redo: int = 3) -> np.ndarray:
    # faiss seeds its centroids uniformly at random; k-means++ seeding (scikit-learn)
    # is worth ~0.01 NMI / 0.03 ARI on BANKING77, so each restart starts from it.
    import faiss
    from sklearn.cluster import kmeans_plusplus

    rng = np.random.RandomState(seed)
    # float64 on purpose: scikit-learn upcasts float32 distances chunk by chunk, ~7x slower.
    X64 = X.astype(np.float64)
    best, best_obj = None, -np.inf
    for _ in range(n_redo):
        init, _ = kmeans_plusplus(X64, k, random_state=rng)
        km = faiss.Kmeans(X.shape[1], k, niter=25, spherical=True, seed=int(rng.randint(2**31 - 1)),
                          verbose=False, min_points_per_centroid=1, max_points_per_centroid=512)
        km.train(X, init_centroids=np.ascontiguousarray(init, dtype=np.float32))
        obj = km.obj[-1] if len(km.obj) else 0.0  # total similarity: higher is better
        if best is None or obj > best_obj:
            best, best_obj = km, obj
    _, assign = best.index.search(X, 1)
    return assign.ravel()


def split_rows(X: np.ndarray, random_state=None, part_rows: int = PART_ROWS) -> list[np.ndarray]:
    """Row indices of the parts of ``X``: one part of every row up to ``2 * part_rows``
    rows (``random_state`` untouched), else a k-means partition into ``ceil(n / part_rows)``
    parts (a seed is drawn from ``random_state``)."""
    n = X.shape[0]
    if n <= 2 * part_rows:
        return [np.arange(n)]
    labels = cluster(X, int(np.ceil(n / part_rows)), "kmeans", random_state=random_state)
    return [np.flatnonzero(labels == c) for c in range(labels.max() + 1)]


def kmeans_in_parts(X: np.ndarray, k: int, parts: list[np.ndarray], random_state=None, *,
                    n_redo: int = 3, refine: int = 0) -> np.ndarray:
    """k-means labels of ``X`` into about ``k`` clusters, computed inside each part.

    The parts share ``k`` by their sizes; labels are distinct across parts (not
    renumbered). With one part this is :func:`kmeans_labels` on every row, seeded by one
    draw from ``random_state``. ``refine`` > 0 then runs that many k-means iterations over
    all rows from the parts' centroids, so clusters are no longer cut at the parts'
    borders (each iteration costs n*k, a few seconds at 21,000 rows; seeding and
    restarts, the expensive part, stay inside the parts).
    """
    rng = check_random_state(random_state)
    n = X.shape[0]
    labels = np.zeros(n, dtype=np.int64)
    offset = 0
    for rows in parts:
        k_part = min(len(rows), max(1, int(round(k * len(rows) / n))))
        if k_part > 1:
            labels[rows] = offset + kmeans_labels(np.ascontiguousarray(X[rows]), k_part,
                                                  int(rng.randint(2**31 - 1)), n_redo=n_redo)
        else:
            labels[rows] = offset
        offset += k_part
    if refine > 0 and len(parts) > 1:
        labels = _refined(X, labels, refine, int(rng.randint(2**31 - 1)))
    return labels


def _refined(X: np.ndarray, labels: np.ndarray, niter: int, seed: int) -> np.ndarray:
    """Spherical k-means over every row of ``X``, started from the centroids of ``labels``."""
    import faiss

    used = np.unique(labels)
    sums = np.zeros((labels.max() + 1, X.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, X)
    init = sums[used]
    init /= np.linalg.norm(init, axis=1, keepdims=True)
    km = faiss.Kmeans(X.shape[1], len(used), niter=niter, spherical=True, seed=seed, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=512)
    km.train(X, init_centroids=np.ascontiguousarray(init, dtype=np.float32))
    _, assign = km.index.search(X, 1)
    return assign.ravel().astype(np.int64)


def _agglomerative(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import AgglomerativeClustering

    return AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(X)


def _gmm(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    Z = X
    if X.shape[1] > _GMM_MAX_DIM:
        Z = PCA(n_components=min(_GMM_MAX_DIM, X.shape[0]), random_state=seed).fit_transform(X)
    gmm = GaussianMixture(n_components=k, covariance_type="diag", reg_covar=1e-4,
                          random_state=seed, max_iter=200)
    return gmm.fit(Z).predict(Z)
