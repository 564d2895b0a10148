"""The intent catalog: what the service knows, matched open-set, grown by discovery.

Each intent keeps, beside its centroid, a bounded sample of its members' embeddings
(its *exemplars*, see :class:`~dialin.models.OpenSetMatcher`) and the score its own
members reach against them; :meth:`IntentCatalog.match` assigns a row to an intent
only when it belongs there by that rule, and returns None otherwise (possible
novelty for the buffer). An intent without exemplars (an entry written before they
existed) is matched by its centroid at the catalog's ``match_threshold``.

Ids are stable: the service's discovery decides which intent a re-fitted cluster
continues (:func:`~dialin.models.reconcile`) and writes entries with :meth:`put`;
an older version of an entry never overwrites a newer one.

The catalog is tied to one embedding space: it stores the embedder's name and
refuses to load or match under another (a centroid from MiniLM means nothing in an
LSA space). It saves as JSON + ``.npy`` (no pickles). Engine code: no Kafka here;
the service persists entries with :meth:`CatalogIntent.to_record`. Memory: each
intent holds ``exemplars x dim`` float32 (64 x 384: 96 KiB; about 94 MiB per 1,000
intents), in every worker.

Libraries: FAISS (through the matcher), numpy.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ._open_set import OpenSetMatcher
from ._vectors import unit

ACTIVE = ("created", "updated")
#: Lifecycle states whose intents are matched and assigned (a candidate is assigned too;
#: its assignments say so). ``rejected``, ``retired`` and ``merged`` intents are not.
MATCHED_STATES = ("candidate", "active")
MAX_EXAMPLES = 10
#: Decision ids an entry remembers (the most recent), so a decision is applied once.
MAX_DECISIONS = 50


def _state_of(status: str) -> str:
    """The lifecycle state of a record written before states existed."""
    return {"merged": "merged", "retired": "retired"}.get(status, "active")


class EmbeddingSpaceError(ValueError):
    """A catalog used with an embedder other than the one that built it."""


def _pack(a: np.ndarray) -> str:
    return base64.b64encode(np.asarray(a, "<f4").tobytes()).decode()


def _unpack(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), "<f4").astype(np.float32)


@dataclass
class CatalogIntent:
    """One intent as the catalog keeps it (the published update is this minus the centroid)."""

    intent_id: str
    label: str
    role: str | None
    centroid: np.ndarray = field(repr=False)
    size: int
    examples: tuple[str, ...] = ()
    version: int = 1
    status: str = "created"
    merged_into: str | None = None
    created_at: str = ""
    updated_at: str = ""
    judge_backend: str = ""
    judge_confidence: float | None = None
    split_from: str | None = None
    #: Why the offline judge certified it instead of the LLM (an LLM spend cap: "call_cap"
    #: or "token_cap"); None: the judge did. Stored in the record only when set.
    judge_fallback: str | None = None
    #: Member embeddings the open-set rule compares with (rows), and the score a row
    #: must reach against them; None for an entry that has none (matched by centroid).
    exemplars: np.ndarray | None = field(default=None, repr=False)
    threshold: float | None = None
    #: Lifecycle (see ``dialin.streams`` docs/schema.md): the state, the last event, who
    #: decided it, the label before a rename. An entry made outside discovery (an import,
    #: a record from before states) is ``active``; discovery makes ``candidate`` entries.
    state: str = "active"
    event: str = "created"
    actor: str = "engine"
    renamed_from: str | None = None
    #: A person decided about it (approve, rename, merge, split): the machine keeps it
    #: whole, as it keeps an imported intent, and keeps its label.
    pinned: bool = False
    #: Ids of the decisions applied to it (the most recent :data:`MAX_DECISIONS`).
    decisions: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        """Matched and assigned: a live status and a candidate or active state."""
        return self.status in ACTIVE and self.state in MATCHED_STATES

    def to_record(self, embedder: str, centroid: bool = True) -> dict:
        """A JSON-able dict; the centroid as base64 little-endian float32."""
        out = {
            "intent_id": self.intent_id, "label": self.label, "role": self.role,
            "version": self.version, "status": self.status, "merged_into": self.merged_into,
            "split_from": self.split_from,
            "size": self.size, "examples": list(self.examples),
            "created_at": self.created_at, "updated_at": self.updated_at,
            "judge": {"backend": self.judge_backend, "confidence": self.judge_confidence},
            "embedder": embedder, "state": self.state, "event": self.event, "actor": self.actor,
            "renamed_from": self.renamed_from, "pinned": self.pinned,
            "decisions": list(self.decisions),
        }
        if self.judge_fallback is not None:
            out["judge"]["fallback"] = self.judge_fallback
        if centroid:
            out["centroid"] = _pack(self.centroid)
            if self.exemplars is not None:
                out["exemplars"] = _pack(self.exemplars)
                out["threshold"] = self.threshold
        return out

    @classmethod
    def from_record(cls, rec: dict) -> CatalogIntent:
        judge = rec.get("judge") or {}
        centroid = _unpack(rec["centroid"])
        exemplars = None
        if rec.get("exemplars"):
            exemplars = _unpack(rec["exemplars"]).reshape(-1, centroid.shape[0])
        return cls(
            intent_id=rec["intent_id"], label=rec["label"], role=rec.get("role"),
            centroid=centroid, exemplars=exemplars, split_from=rec.get("split_from"),
            threshold=rec.get("threshold"),
            size=int(rec["size"]), examples=tuple(rec.get("examples", ())),
            version=int(rec.get("version", 1)), status=rec.get("status", "created"),
            merged_into=rec.get("merged_into"), created_at=rec.get("created_at", ""),
            updated_at=rec.get("updated_at", ""), judge_backend=judge.get("backend", ""),
            judge_confidence=judge.get("confidence"), judge_fallback=judge.get("fallback"),
            state=rec.get("state") or _state_of(rec.get("status", "created")),
            event=rec.get("event") or rec.get("status", "created"),
            actor=rec.get("actor") or "engine", renamed_from=rec.get("renamed_from"),
            pinned=bool(rec.get("pinned", False)),
            decisions=tuple(rec.get("decisions") or ())[-MAX_DECISIONS:],
        )


class IntentCatalog:
    """Intents with stable ids, and the open-set rule that matches rows to them.

    Parameters
    ----------
    embedder : str
        Name of the embedding space every centroid and exemplar lives in.
    match_threshold : float
        Cosine to the centroid at or above which a row matches an intent that has no
        exemplars (entries from before exemplars existed); intents with exemplars
        use their own threshold.
    n_neighbors, vote_share, n_score : int, float, int
        The open-set rule of :class:`~dialin.models.OpenSetMatcher`.
    """

    def __init__(self, embedder: str, match_threshold: float = 0.6, n_neighbors: int = 10,
                 vote_share: float = 0.7, n_score: int = 5) -> None:
        self.embedder = embedder
        self.match_threshold = match_threshold
        self.n_neighbors = n_neighbors
        self.vote_share = vote_share
        self.n_score = n_score
        self.intents_: dict[str, CatalogIntent] = {}
        self._lock = threading.RLock()
        self._matchers: dict[str, OpenSetMatcher] | None = None

    # --- entries ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.intents_)

    def __contains__(self, intent_id: str) -> bool:
        return intent_id in self.intents_

    def get(self, intent_id: str) -> CatalogIntent | None:
        return self.intents_.get(intent_id)

    def active(self, role: str | None = None) -> list[CatalogIntent]:
        """Active intents, of one role when given."""
        with self._lock:
            return [i for i in self.intents_.values()
                    if i.active and (role is None or i.role == role)]

    def in_state(self, state: str) -> list[CatalogIntent]:
        """The entries in one lifecycle state (``candidate``, ``rejected``, ...)."""
        with self._lock:
            return [i for i in self.intents_.values() if i.state == state]

    def match_rejected(self, X: np.ndarray) -> list[str | None]:
        """The rejected intent each row belongs to by the open-set rule (None: none).

        A rejected intent keeps its exemplars as a *blocked region*: discovery does not
        propose the same grouping there again (finer clusters inside it are proposed).
        """
        rejected = [i for i in self.in_state("rejected")]
        if not rejected or not len(X):
            return [None] * len(X)
        ids, _ = self._matcher_of(rejected).match(np.ascontiguousarray(X, dtype=np.float32))
        return list(ids)

    def check_embedder(self, embedder: str, source: str = "the embeddings to match") -> None:
        """Refuse ``source`` (built with ``embedder``) unless it is this catalog's space."""
        if embedder != self.embedder:
            raise EmbeddingSpaceError(
                f"{source}: built with embedder {embedder!r}, but this catalog uses "
                f"{self.embedder!r}; use the same embedder or start a new catalog")

    def put(self, intent: CatalogIntent) -> None:
        """Add or replace an entry (an older version never overwrites a newer one)."""
        with self._lock:
            old = self.intents_.get(intent.intent_id)
            if old is not None and old.version > intent.version:
                return
            self.intents_[intent.intent_id] = replace(intent, centroid=unit(intent.centroid, np.float32))
            self._matchers = None

    def apply_record(self, rec: dict | None, intent_id: str | None = None) -> None:
        """Apply one durable record (``None`` is a tombstone for ``intent_id``)."""
        if rec is None:
            with self._lock:
                if intent_id is not None and self.intents_.pop(intent_id, None) is not None:
                    self._matchers = None
            return
        self.check_embedder(rec.get("embedder", self.embedder), f"intent {rec.get('intent_id')}")
        self.put(CatalogIntent.from_record(rec))

    # --- matching --------------------------------------------------------------
    def _matcher_of(self, items: list[CatalogIntent]) -> OpenSetMatcher:
        rows, labels, thresholds = [], [], {}
        for intent in items:
            if intent.exemplars is not None and len(intent.exemplars):
                rows.append(intent.exemplars)
                labels += [intent.intent_id] * len(intent.exemplars)
                if intent.threshold is not None:
                    thresholds[intent.intent_id] = intent.threshold
            else:
                rows.append(intent.centroid[None, :])
                labels.append(intent.intent_id)
                thresholds[intent.intent_id] = self.match_threshold
        return OpenSetMatcher.from_exemplars(
            np.vstack(rows), labels, thresholds, n_neighbors=self.n_neighbors,
            vote_share=self.vote_share, n_score=self.n_score, min_score=self.match_threshold)

    def _by_role(self) -> dict[str, OpenSetMatcher]:
        with self._lock:
            if self._matchers is None:
                groups: dict[str, list[CatalogIntent]] = {}
                for intent in self.intents_.values():
                    if intent.active:
                        groups.setdefault(str(intent.role), []).append(intent)
                        groups.setdefault("*", []).append(intent)
                self._matchers = {role: self._matcher_of(items) for role, items in groups.items()}
            return self._matchers

    def match(self, X: np.ndarray, roles: Sequence[str | None] | None = None
              ) -> tuple[list[str | None], np.ndarray]:
        """The active intent of the same role each row belongs to (None: possible
        novelty), and its score against that intent's exemplars (NaN: nothing to compare).

        Role ``None`` compares with every role. Thread-safe: the service calls it from
        a worker thread.
        """
        X = np.ascontiguousarray(X, dtype=np.float32)
        n = X.shape[0]
        roles = [None] * n if roles is None else list(roles)
        if len(roles) != n:
            raise ValueError(f"roles has {len(roles)} items but X has {n} rows")
        ids: list[str | None] = [None] * n
        scores = np.full(n, np.nan, dtype=np.float32)
        matchers = self._by_role()
        for role in set(roles):
            key = "*" if role is None else str(role)
            if key not in matchers:
                continue
            rows = np.array([i for i, r in enumerate(roles) if r == role])
            matcher = matchers[key]
            if matcher.exemplars_.shape[1] != X.shape[1]:
                raise EmbeddingSpaceError(
                    f"embeddings have {X.shape[1]} dims, the catalog {matcher.exemplars_.shape[1]}")
            got, s = matcher.match(X[rows])
            for row, iid, score in zip(rows, got, s):
                ids[row], scores[row] = iid, score
        return ids, scores

    def infer_roles(self, X: np.ndarray, default: str = "customer") -> list[str]:
        """Role of rows that arrive without one: the role of the nearest centroid.

        A nearest-centroid classifier over the catalog's intents (which carry the
        role of their members); with no intents, or only one role known, ``default``.
        """
        items = self.active()
        known = {i.role for i in items if i.role is not None}
        if len(known) < 2:
            return [default] * len(X)
        C = np.vstack([i.centroid for i in items]).astype(np.float32)
        nearest = (unit(np.asarray(X, np.float32)) @ C.T).argmax(axis=1)
        return [items[j].role or default for j in nearest]

    # --- persistence -----------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``catalog.json`` (entries, embedder) and ``centroids.npy`` into a folder."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with self._lock:
            items = sorted(self.intents_.values(), key=lambda i: i.intent_id)
            meta = {"format": 2, "embedder": self.embedder,
                    "match_threshold": self.match_threshold,
                    "intents": [dict(i.to_record(self.embedder, centroid=False),
                                     threshold=i.threshold) for i in items]}
            dim = items[0].centroid.shape[0] if items else 0
            C = np.vstack([i.centroid for i in items]) if items else np.zeros((0, dim), np.float32)
            E = {i.intent_id: i.exemplars for i in items if i.exemplars is not None}
        np.save(path / "centroids.npy", C.astype(np.float32))
        np.savez(path / "exemplars.npz", **{k: v.astype(np.float32) for k, v in E.items()})
        (path / "catalog.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), "utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path, embedder: str | None = None) -> IntentCatalog:
        """Read a saved catalog; with ``embedder`` given, refuse another embedding space."""
        path = Path(path)
        meta = json.loads((path / "catalog.json").read_text("utf-8"))
        C = np.load(path / "centroids.npy")
        E = {}
        if (path / "exemplars.npz").is_file():
            with np.load(path / "exemplars.npz", allow_pickle=False) as stored:
                E = {k: stored[k] for k in stored.files}
        catalog = cls(embedder=meta["embedder"], match_threshold=meta.get("match_threshold", 0.6))
        if embedder is not None:
            catalog.check_embedder(embedder)
        for rec, row in zip(meta["intents"], C):
            rec = dict(rec, centroid=_pack(row))
            if rec["intent_id"] in E:
                rec["exemplars"] = _pack(E[rec["intent_id"]])
            catalog.put(CatalogIntent.from_record(rec))
        return catalog
