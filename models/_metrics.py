"""Clustering quality measures of the paper's §5.2 and Table 1.

NMI and ARI are scikit-learn's (``normalized_mutual_info_score`` with the arithmetic
mean, ``adjusted_rand_score``); goodness and semantic diversity are defined here
because no library has them.

Unassigned rows (label -1, ``UNASSIGNED``: no certified cluster covers them) are scored
as ONE more cluster, not excluded: dropping them would score a run that certifies little
on the few rows it kept, so leaving utterances out can only lower NMI and ARI. The
number of clusters reported (:func:`clustering_scores`) does not count that group.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from ._base import Verdict


def _pair(y_true: Sequence, labels: Sequence) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(y_true, dtype=object).astype(str)
    b = np.asarray(labels)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"y_true has {a.shape[0]} items but labels has {b.shape[0]}")
    return a, b


def nmi(y_true: Sequence, labels: Sequence) -> float:
    """Normalized mutual information between gold labels and a clustering (0..1)."""
    return float(normalized_mutual_info_score(*_pair(y_true, labels)))


def ari(y_true: Sequence, labels: Sequence) -> float:
    """Adjusted Rand index (chance-corrected pair agreement, 1 = identical)."""
    return float(adjusted_rand_score(*_pair(y_true, labels)))


def semantic_diversity(X: np.ndarray, labels: Sequence) -> float:
    """The paper's Table 1 semantic diversity (after Casanueva et al., 2022).

    For each cluster, the mean cosine distance ``1 - cos(x, c)`` of its rows ``x`` to
    the cluster centroid ``c`` (the mean of the rows); then the unweighted mean of
    these per-cluster values over all clusters, so each intent counts once whatever
    its size. Singletons contribute 0. Higher means the sentences of one intent are
    worded more differently from each other. ``labels`` may be gold labels (a
    property of the data set, as in Table 1) or a clustering.
    """
    X = np.asarray(X, dtype=np.float64)
    labels = np.asarray(labels, dtype=object).astype(str)
    if X.ndim != 2 or X.shape[0] != labels.shape[0]:
        raise ValueError(f"X must be (n, d) with n = len(labels) = {labels.shape[0]}, got {X.shape}")
    if X.shape[0] == 0:
        raise ValueError("semantic_diversity needs at least one row")
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    U = X / np.where(norms > 0, norms, 1.0)
    _, codes = np.unique(labels, return_inverse=True)
    per_cluster = []
    for c in range(codes.max() + 1):
        rows = U[codes == c]
        centroid = rows.mean(axis=0)
        length = np.linalg.norm(centroid)
        cos = rows @ (centroid / length) if length > 0 else np.zeros(len(rows))
        per_cluster.append(float(np.mean(1.0 - cos)))
    return float(np.mean(per_cluster))


def goodness(verdicts: Iterable[Verdict | bool | None]) -> float:
    """Share of clusters judged Good: good / total (§5.2). Invalid answers count as Bad."""
    flags = [v.is_good if isinstance(v, Verdict) else v is True for v in verdicts]
    if not flags:
        raise ValueError("goodness needs at least one verdict")
    return sum(flags) / len(flags)


def clustering_scores(y_true: Sequence, labels: Sequence) -> dict:
    """NMI, ARI and the number of clusters (the -1 group not counted), as the CLI and
    benchmarks report them."""
    a, b = _pair(y_true, labels)
    clusters = np.unique(b)
    if clusters.dtype.kind in "iu":
        clusters = clusters[clusters >= 0]
    return {"nmi": nmi(a, b), "ari": ari(a, b), "n_clusters": int(len(clusters))}
