"""Base clusterers by name: the partitions the LLM-in-the-loop algorithm starts from.

* ``kmeans``: FAISS k-means (``faiss.Kmeans``), spherical because rows are unit
  vectors, best of a few seeded k-means++ restarts; the fast choice for large inputs.
* ``agglomerative``: scikit-learn Ward linkage, the paper's best base model (§5);
  quadratic memory, so meant for up to some ten thousand rows.
* ``gmm``: scikit-learn ``GaussianMixture`` with diagonal covariances, fitted on a
  PCA projection when the embedding is wide (a full 384-d diagonal GMM is slow and
  no better).
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

from .._threads import single_threaded

CLUSTERERS = ("kmeans", "agglomerative", "gmm")
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
