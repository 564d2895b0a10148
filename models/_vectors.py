"""Small numpy helpers on embedding rows, shared by the estimators and the catalog.

One definition of "unit length" and one check of a fit's input, so every estimator
rejects the same bad arrays with the same message.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def unit(v, dtype=None) -> np.ndarray:
    """``v`` scaled to unit length along its last axis (a vector or rows); zeros stay zero."""
    v = np.asarray(v, dtype=dtype)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


def check_embeddings(X, texts: Sequence[str] | None = None, *, min_rows: int = 1) -> np.ndarray:
    """Validate a fit's input; return it as a C-contiguous float32 array.

    ``X`` must be 2-d with at least ``min_rows`` rows of finite numbers (a NaN would
    otherwise surface deep inside FAISS), and ``texts``, when given, one per row.
    """
    X = np.ascontiguousarray(np.asarray(X, dtype=np.float32))
    if X.ndim != 2 or X.shape[0] < max(min_rows, 1):
        raise ValueError(f"X must be a 2-d array of embeddings with at least {max(min_rows, 1)} "
                         f"row(s), got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinite values")
    if texts is not None and len(texts) != X.shape[0]:
        raise ValueError(f"texts has {len(texts)} items but X has {X.shape[0]} rows")
    return X
