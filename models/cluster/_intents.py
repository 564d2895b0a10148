"""Turn a fitted labelling into named intents: the last step every strategy shares.

The paper's Algorithm 1 ends with ``L <- [LLM_name(c_1), ..., LLM_name(c_n)]``. Every
strategy (Algorithm 1, the budgeted default, the role-aware wrapper) ends the same way,
so the step lives here once: one :class:`~dialin.models.Intent` per cluster, its
examples the members nearest the centroid (what an analyst should read first), its
label from the namer in ONE batched call so an LLM backend can send all clusters
concurrently.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from .._base import Intent, Namer, Verdict
from ._sampling import make_view

#: The label of an utterance no certified (Good) cluster covers: it is in no intent.
UNASSIGNED = -1


class NothingCertifiedWarning(UserWarning):
    """The judge called no cluster Good: every utterance is left :data:`UNASSIGNED`.

    A strict or misconfigured judge (an LLM that answers Bad to everything) must not
    turn the whole input into one uncertified "intent"; callers see an empty
    ``intents_`` and ``labels_`` all -1, and this warning says why.
    """


def placeholder_texts(n: int) -> list[str]:
    """Distinct stand-in texts for fits without texts.

    Judges key their cache on what they are shown; identical empty strings would make
    every cluster the same question, so each row gets its own name.
    """
    return [f"utterance {i}" for i in range(n)]


def nearest_to_centroid(members: np.ndarray, X: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` members closest (cosine) to their mean, closest first."""
    rows = X[members]
    centre = rows.mean(axis=0)
    norm = np.linalg.norm(centre)
    if norm > 0:
        centre = centre / norm
    sims = rows @ centre
    return members[np.argsort(-sims, kind="stable")[:k]]


def _majority(values: Sequence[str | None]) -> str | None:
    known = [v for v in values if v is not None]
    if not known:
        return None
    return Counter(known).most_common(1)[0][0]


def build_intents(labels: np.ndarray, texts: Sequence[str] | None, X: np.ndarray,
                  namer: Namer | None = None, roles: Sequence[str | None] | None = None,
                  verdicts: Mapping[int, Verdict] | None = None, n_examples: int = 10,
                  sample_size: int = 20, rng: np.random.Generator | None = None) -> list[Intent]:
    """One :class:`Intent` per cluster label ``>= 0`` (:data:`UNASSIGNED` rows are skipped).

    ``intent_id`` is the cluster label itself, so ``labels_`` and ``intents_`` agree.
    The namer (prepared here on the data being named) is called once for all clusters;
    without a namer each intent is called ``cluster-<id>``. ``roles`` (one per row,
    None for unknown) gives each intent the majority role of its members; ``verdicts``
    attaches the judge's last word on each cluster when the strategy has one.
    """
    labels = np.asarray(labels)
    X = np.asarray(X)
    if labels.shape[0] != X.shape[0]:
        raise ValueError(f"labels has {labels.shape[0]} rows but X has {X.shape[0]}")
    if texts is not None and len(texts) != len(labels):
        raise ValueError(f"texts has {len(texts)} items but labels has {len(labels)}")
    shown = placeholder_texts(len(labels)) if texts is None else texts
    ids = [int(c) for c in np.unique(labels) if c >= 0]
    members = {c: np.flatnonzero(labels == c) for c in ids}
    role_of = {c: _majority([roles[i] for i in members[c]]) if roles is not None else None
               for c in ids}
    if namer is None or not ids:
        names = [f"cluster-{c}" for c in ids]
    else:
        namer.prepare(X, shown)
        views = [make_view(members[c], shown, X, size=sample_size, method="nearest", rng=rng,
                           role=role_of[c]) for c in ids]
        names = list(namer.name(views))
        if len(names) != len(ids):
            raise ValueError(f"namer returned {len(names)} labels for {len(ids)} clusters")
    intents = []
    for c, name in zip(ids, names):
        examples = () if texts is None else tuple(
            texts[i] for i in nearest_to_centroid(members[c], X, n_examples))
        intents.append(Intent(intent_id=c, label=name,
                              members=tuple(int(i) for i in members[c]), examples=examples,
                              role=role_of[c],
                              verdict=None if verdicts is None else verdicts.get(c)))
    return intents
