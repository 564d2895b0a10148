"""Open-set assignment and catalog reconciliation: the streaming side of the engine.

Two questions the service asks between and after discovery runs, answered here
without Kafka so the benchmark, the tests and the worker share one implementation:

* **Does this utterance belong to a known intent?** (:class:`OpenSetMatcher`). A
  global cosine to the nearest centroid says only which intent is *nearest*: with
  MiniLM every utterance of one domain is within 0.6 of a broad intent, so a handful
  of early intents absorbed all later traffic and nothing new was ever found. The
  matcher keeps a bounded sample of member embeddings per intent (its *exemplars*)
  and assigns a row only when most of its ``n_neighbors`` nearest exemplars belong
  to one intent *and* its similarity to that intent's exemplars is as high as the
  intent's own members have to each other (a per-intent threshold: the
  ``quantile`` of the leave-one-out score of each exemplar). Everything else is
  possible novelty and waits in the buffer.
* **Which known intent does a re-fitted cluster continue?** (:func:`reconcile`).
  A consolidation re-clusters what the service remembers together with the buffer;
  ids must survive it. A new cluster continues the known intent whose members it
  mostly holds; a known intent whose members went mostly to a cluster continuing
  another is merged into it; a cluster continuing nothing is a new intent, split
  from the intent most of its members came from. Whether two groups are one intent
  was decided by the fit (its judge, with its budget); this step only keeps ids.

Libraries: FAISS (exact inner-product kNN), numpy, scikit-learn (``BaseEstimator``).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import faiss
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._vectors import check_embeddings, unit


def exemplar_score(X: np.ndarray, exemplars: np.ndarray, n_score: int) -> np.ndarray:
    """The open-set score of each row for one class: its mean cosine to the class's
    ``m`` nearest exemplars, ``m = min(n_score, len(exemplars) - 1)`` (at least 1).

    One definition for every score the service publishes: the matcher's on arrival
    (where it equals this whenever the vote passes: the class's ``m`` nearest exemplars
    are then among the row's neighbours), a re-match and a consolidation's moves. The
    ``- 1`` is the leave-one-out of the class's own threshold, so a row and the
    members it is compared with are scored alike. Rows and exemplars are unit vectors.
    """
    X = np.atleast_2d(np.asarray(X, dtype=np.float32))
    E = np.asarray(exemplars, dtype=np.float32)
    if not len(E):
        return np.full(len(X), np.nan, dtype=np.float32)
    m = _score_width(n_score, len(E))
    sims = X @ E.T
    return -np.sort(-sims, axis=1)[:, :m].mean(axis=1).astype(np.float32)


def _score_width(n_score: int, n_exemplars: int) -> int:
    """How many of a class's nearest exemplars its score averages."""
    return max(1, min(n_score, n_exemplars - 1))


class OpenSetMatcher(BaseEstimator):
    """Assign rows to known classes by a kNN vote over exemplars, or to none.

    Parameters
    ----------
    n_neighbors : int
        Exemplars consulted per row (exact inner-product search on unit vectors).
    vote_share : float
        Share of the consulted exemplars that must belong to one class; for a class
        with fewer exemplars than ``n_neighbors``, the share of its exemplar count.
    n_score : int
        The row's score for the winning class is its mean cosine to its ``n_score``
        nearest exemplars of that class.
    quantile : float
        Per-class threshold: this quantile of the same score computed for each of
        the class's exemplars against the others (leave-one-out). 0.05 accepts a row
        about as typical as the 95% most typical known members.
    min_score : float
        No row scoring below this is assigned, whatever its class's threshold (a floor
        for classes whose members spread widely).
    max_exemplars : int
        Exemplars kept per class (a seeded random sample of its rows). Memory is
        ``max_exemplars * dim * 4`` bytes per class.
    random_state : int, RandomState or None
        Seed of the exemplar sample.

    Attributes
    ----------
    exemplars_ : ndarray of shape (n_exemplars, dim)
    exemplar_labels_ : ndarray of shape (n_exemplars,), dtype object
    thresholds_ : dict
        Class -> minimum score to assign a row to it.
    classes_ : list
    """

    def __init__(self, n_neighbors: int = 10, vote_share: float = 0.7, n_score: int = 5,
                 quantile: float = 0.05, min_score: float = 0.0, max_exemplars: int = 64,
                 random_state=0) -> None:
        self.n_neighbors = n_neighbors
        self.vote_share = vote_share
        self.n_score = n_score
        self.quantile = quantile
        self.min_score = min_score
        self.max_exemplars = max_exemplars
        self.random_state = random_state

    # --- fit ------------------------------------------------------------------------
    def fit(self, X, y) -> OpenSetMatcher:
        """Sample exemplars per class of ``y`` and compute each class's threshold."""
        X = unit(check_embeddings(X), np.float32)
        y = np.asarray(list(y), dtype=object)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"y has {y.shape[0]} items but X has {X.shape[0]} rows")
        if not (0 < self.vote_share <= 1 and 0 <= self.quantile <= 1):
            raise ValueError("vote_share must be in (0, 1] and quantile in [0, 1]")
        rng = check_random_state(self.random_state)
        keep = []
        for label in sorted(set(y.tolist()), key=str):
            rows = np.flatnonzero(y == label)
            if len(rows) > self.max_exemplars:
                rows = np.sort(rng.choice(rows, self.max_exemplars, replace=False))
            keep.append(rows)
        rows = np.concatenate(keep) if keep else np.zeros(0, int)
        self._set_exemplars(X[rows], y[rows], None)
        return self

    @classmethod
    def from_exemplars(cls, exemplars: np.ndarray, labels: Sequence[Hashable],
                       thresholds: dict | None = None, **params) -> OpenSetMatcher:
        """A fitted matcher over exemplars kept elsewhere (the catalog stores them per intent).

        ``thresholds`` missing for a class are computed from its exemplars, as ``fit`` does.
        """
        matcher = cls(**params)
        X = unit(np.asarray(exemplars, dtype=np.float32).reshape(len(labels), -1), np.float32)
        matcher._set_exemplars(X, np.asarray(list(labels), dtype=object), thresholds)
        return matcher

    def _set_exemplars(self, E: np.ndarray, labels: np.ndarray, thresholds: dict | None) -> None:
        self.exemplars_ = np.ascontiguousarray(E, dtype=np.float32)
        self.exemplar_labels_ = labels
        self.classes_ = sorted(set(labels.tolist()), key=str)
        given = dict(thresholds or {})
        self.thresholds_ = {c: float(given[c]) if c in given else self._threshold(c)
                            for c in self.classes_}
        self.index_ = faiss.IndexFlatIP(E.shape[1] if E.ndim == 2 and E.shape[1] else 1)
        if len(E):
            self.index_.add(self.exemplars_)

    def _threshold(self, label) -> float:
        """The ``quantile`` of each exemplar's score against the other exemplars of its class."""
        E = self.exemplars_[self.exemplar_labels_ == label]
        if len(E) < 2:
            return 1.0  # one exemplar: nothing says how far its members spread; exact only
        sims = E @ E.T
        np.fill_diagonal(sims, -np.inf)
        m = _score_width(self.n_score, len(E))
        top = -np.sort(-sims, axis=1)[:, :m]
        return float(np.quantile(top.mean(axis=1), self.quantile))

    # --- predict --------------------------------------------------------------------
    def match(self, X) -> tuple[list, np.ndarray]:
        """For each row: the class it belongs to (None when none) and its score.

        The score is reported for the most-voted class even when the row is not
        assigned (NaN when no exemplar exists), so callers can log near misses.
        """
        check_is_fitted(self, "exemplars_")
        X = unit(np.ascontiguousarray(X, dtype=np.float32), np.float32)
        n = X.shape[0]
        out: list = [None] * n
        scores = np.full(n, np.nan, dtype=np.float32)
        if n == 0 or len(self.exemplars_) == 0:
            return out, scores
        k = min(self.n_neighbors, len(self.exemplars_))
        D, I = self.index_.search(X, k)
        counts = Counter(self.exemplar_labels_.tolist())
        for r in range(n):
            labels = [self.exemplar_labels_[i] for i in I[r] if i >= 0]
            if not labels:
                continue
            top, votes = Counter(labels).most_common(1)[0]
            sims = [float(d) for d, lab in zip(D[r], labels) if lab == top]
            m = _score_width(self.n_score, counts[top])  # as exemplar_score's
            scores[r] = float(np.mean(sims[:m]))
            needed = math.ceil(self.vote_share * min(k, counts[top]))
            if votes >= needed and scores[r] >= max(self.thresholds_[top], self.min_score):
                out[r] = top
        return out, scores

    def predict(self, X) -> np.ndarray:
        """Classes as an object array, None where a row belongs to no class."""
        return np.asarray(self.match(X)[0], dtype=object)


# --- reconciliation ----------------------------------------------------------------------


@dataclass
class Reconciliation:
    """How one consolidation's clusters map onto the intents known before it.

    ``intent_of`` maps each new cluster label to the intent id it is published as;
    ``created`` are the ids that did not exist (with ``split_from`` where most of
    their remembered members came from one known intent); ``merged`` maps a known
    id to the id that absorbed it; ``continued`` are the known ids that live on.
    """

    intent_of: dict[int, str] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    split_from: dict[str, str] = field(default_factory=dict)
    merged: dict[str, str] = field(default_factory=dict)
    continued: list[str] = field(default_factory=list)


def new_intent_id(role: str | None, member_ids: Sequence[str]) -> str:
    """A fresh intent id from the cluster's members: a repeated run makes the same id."""
    digest = hashlib.sha1(f"{role}|".encode() + "\x1f".join(sorted(member_ids)).encode())
    return f"intent-{digest.hexdigest()[:12]}"


def claims(old_ids: Sequence[str | None], new_labels: Sequence[int]) -> dict[int, list[str]]:
    """Per cluster, the known intents that point at it, heir first (:func:`reconcile`'s
    first two rules): an intent points at the cluster holding most of its rows (ties: the
    lower label); the heir has the largest overlap, then more rows in the fit, then the
    smaller id. Two or more claimants are a merge, unless someone stops it."""
    labels = np.asarray(new_labels).tolist()
    overlap: dict[str, Counter] = {}
    sizes = Counter(i for i in old_ids if i is not None)
    for old, new in zip(old_ids, labels):
        if old is not None and new >= 0:
            overlap.setdefault(old, Counter())[new] += 1
    out: dict[int, list[str]] = {}
    for old, c in overlap.items():
        out.setdefault(min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0], []).append(old)
    for cluster, claim in out.items():
        claim.sort(key=lambda old: (-overlap[old][cluster], -sizes[old], old))
    return out


def came_from(old_ids: Sequence[str | None], parent: str | None) -> bool:
    """A cluster whose rows were members of ``old_ids`` (None: buffered) split off
    ``parent`` when at least half of them were its members (:func:`reconcile`'s rule for
    ``split_from``; the service asks it again of the rows a new intent really takes)."""
    return parent is not None and 0 < len(old_ids) <= 2 * sum(o == parent for o in old_ids)


def reconcile(old_ids: Sequence[str | None], new_labels: Sequence[int],
              row_ids: Sequence[str], role: str | None = None) -> Reconciliation:
    """Map a re-fit's clusters onto the intents its rows belonged to before it.

    ``old_ids[i]`` is row i's intent before the fit (None: it was buffered),
    ``new_labels[i]`` its cluster now (< 0: no certified cluster covers it),
    ``row_ids`` the utterance ids (they seed the ids of created intents).

    Rules, in order: every known intent with members in a certified cluster points
    at the cluster holding most of them (ties: the lower label). A cluster pointed
    at continues the pointing intent with the largest overlap (ties: the one with
    more rows in the fit, then the smaller id); the other pointing intents are
    merged into it. A cluster nobody points at is a new intent; it records
    ``split_from`` when at least half its rows were members of one known intent.
    Known intents without a row in a certified cluster are left alone.
    """
    old_ids = list(old_ids)
    labels = np.asarray(new_labels)
    claimed = claims(old_ids, labels)
    out = Reconciliation()
    for cluster in sorted(int(c) for c in set(labels.tolist()) if c >= 0):
        claim = claimed.get(cluster, [])
        if claim:
            heir = claim[0]
            out.intent_of[cluster] = heir
            out.continued.append(heir)
            for other in claim[1:]:
                out.merged[other] = heir
            continue
        rows = np.flatnonzero(labels == cluster)
        iid = new_intent_id(role, [row_ids[r] for r in rows])
        out.intent_of[cluster] = iid
        out.created.append(iid)
        came = Counter(old_ids[r] for r in rows if old_ids[r] is not None)
        if came:
            parent = came.most_common(1)[0][0]
            if came_from([old_ids[r] for r in rows], parent):
                out.split_from[iid] = parent
    return out
