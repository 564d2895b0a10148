"""Post-correction of the paper's §4.1.2: merge clusters whose intent labels agree.

As Algorithm 1 re-clusters what the judge rejected, the clusters it forms get smaller
and the same intent can come out twice (the paper's Table 9). Embedding distance did
not put them together, but their names do: two clusters merge when their label
embeddings are within cosine distance ``threshold`` of each other. Labels alone are
too coarse ("inquire-card" fits many card questions), so the centroids must also agree.
Merges are transitive (union-find over every qualifying pair, taken in order of label
distance) and each joining pair is logged. Pure numpy: no estimator, no judge.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._vectors import unit


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def merge_by_label(labels: np.ndarray, label_texts: Sequence[str], label_embeddings: np.ndarray,
                   centroids: np.ndarray, threshold: float = 0.15,
                   min_centroid_similarity: float = 0.5) -> tuple[np.ndarray, list[dict]]:
    """Merge clusters with near labels and agreeing centroids; return new labels and a log.

    Row ``c`` of ``label_texts``, ``label_embeddings`` and ``centroids`` describes cluster
    ``c`` of ``labels`` (labels are ``0..m-1``; ``-1`` is noise and stays ``-1``). Pairs
    join in order of label distance; at each join the group with more members absorbs
    the other and keeps its id, so untouched clusters keep theirs. Each log entry is one joining pair: ``into`` (the
    larger group's id), ``from`` (the absorbed group's id), and for the pair of clusters
    that linked them: ``pair``, ``label_distance`` (cosine), ``centroid_similarity``
    (cosine) and ``labels`` (their two label texts).
    """
    labels = np.asarray(labels)
    m = len(label_texts)
    emb = np.asarray(label_embeddings)
    cen = np.asarray(centroids)
    if emb.ndim != 2 or emb.shape[0] != m or cen.ndim != 2 or cen.shape[0] != m:
        raise ValueError(f"need one label text, label embedding and centroid per cluster "
                         f"({m} texts, {emb.shape[0] if emb.ndim == 2 else emb.shape} "
                         f"embeddings, {cen.shape[0] if cen.ndim == 2 else cen.shape} centroids)")
    if labels.size and labels.max() >= m:
        raise ValueError(f"labels go up to {labels.max()} but only {m} clusters are described")
    if not 0.0 <= threshold <= 2.0:
        raise ValueError(f"threshold is a cosine distance in [0, 2], got {threshold}")
    sizes = np.bincount(labels[labels >= 0], minlength=m)
    label_dist = 1.0 - unit(emb, np.float64) @ unit(emb, np.float64).T
    cen_sim = unit(cen, np.float64) @ unit(cen, np.float64).T
    ii, jj = np.triu_indices(m, k=1)
    ok = (label_dist[ii, jj] <= threshold) & (cen_sim[ii, jj] >= min_centroid_similarity)
    pairs = sorted(zip(label_dist[ii[ok], jj[ok]], ii[ok], jj[ok]))
    parent = list(range(m))
    log: list[dict] = []
    for dist, i, j in pairs:
        ri, rj = _find(parent, int(i)), _find(parent, int(j))
        if ri == rj:
            continue
        # The bigger group absorbs the smaller (ties: the lower id), so ids stay stable.
        into, src = (ri, rj) if (sizes[ri], -ri) >= (sizes[rj], -rj) else (rj, ri)
        parent[src] = into
        sizes[into] += sizes[src]
        log.append({"into": int(into), "from": int(src), "label_distance": float(dist),
                    "centroid_similarity": float(cen_sim[i, j]),
                    "pair": (int(i), int(j)),
                    "labels": (str(label_texts[i]), str(label_texts[j]))})
    root = np.array([_find(parent, c) for c in range(m)], dtype=labels.dtype if m else int)
    new_labels = labels.copy()
    valid = labels >= 0
    new_labels[valid] = root[labels[valid]]
    return new_labels, log
