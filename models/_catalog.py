"""The intent catalog: what the service knows, matched with FAISS, grown by discovery.

A discovered cluster only becomes a *new* intent when nothing in the catalog already
covers it: :meth:`IntentCatalog.upsert_from_cluster` compares its centroid (cosine)
and its label with the existing intents of the same role, so a known intent is
updated, two known intents bridged by one cluster are merged, and ids stay stable
across discovery runs. Matching is one exact inner-product search per role
(``faiss.IndexFlatIP`` on unit centroids, rebuilt from the entries whenever they
change: catalogs hold hundreds of intents, not millions).

The catalog is tied to one embedding space: it stores the embedder's name and
refuses to load or match under another (a centroid from MiniLM means nothing in an
LSA space). It saves as JSON + ``.npy`` (no pickles). Engine code: no Kafka here;
the service persists entries with :meth:`CatalogIntent.to_record`.

Libraries: FAISS, numpy.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import faiss
import numpy as np

from ._vectors import unit

ACTIVE = ("created", "updated")
MAX_EXAMPLES = 10


class EmbeddingSpaceError(ValueError):
    """A catalog used with an embedder other than the one that built it."""


def normalize_label(label: str) -> str:
    """Labels equal up to case, spaces, hyphens and underscores name the same intent."""
    return re.sub(r"[\s_\-]+", " ", label.casefold()).strip()


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

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def to_record(self, embedder: str, centroid: bool = True) -> dict:
        """A JSON-able dict; the centroid as base64 little-endian float32."""
        out = {
            "intent_id": self.intent_id, "label": self.label, "role": self.role,
            "version": self.version, "status": self.status, "merged_into": self.merged_into,
            "size": self.size, "examples": list(self.examples),
            "created_at": self.created_at, "updated_at": self.updated_at,
            "judge": {"backend": self.judge_backend, "confidence": self.judge_confidence},
            "embedder": embedder,
        }
        if centroid:
            out["centroid"] = base64.b64encode(np.asarray(self.centroid, "<f4").tobytes()).decode()
        return out

    @classmethod
    def from_record(cls, rec: dict) -> CatalogIntent:
        judge = rec.get("judge") or {}
        return cls(
            intent_id=rec["intent_id"], label=rec["label"], role=rec.get("role"),
            centroid=np.frombuffer(base64.b64decode(rec["centroid"]), "<f4").astype(np.float32),
            size=int(rec["size"]), examples=tuple(rec.get("examples", ())),
            version=int(rec.get("version", 1)), status=rec.get("status", "created"),
            merged_into=rec.get("merged_into"), created_at=rec.get("created_at", ""),
            updated_at=rec.get("updated_at", ""), judge_backend=judge.get("backend", ""),
            judge_confidence=judge.get("confidence"),
        )


class IntentCatalog:
    """Intents with stable ids, one FAISS index per role, and the upsert rules.

    Parameters
    ----------
    embedder : str
        Name of the embedding space every centroid lives in.
    update_threshold : float
        Cosine similarity between a new cluster's centroid and a known intent's at or
        above which the cluster is that intent (updated, not created).
    """

    def __init__(self, embedder: str, update_threshold: float = 0.8) -> None:
        self.embedder = embedder
        self.update_threshold = update_threshold
        self.intents_: dict[str, CatalogIntent] = {}
        self._lock = threading.RLock()
        self._indexes: dict[str | None, tuple[faiss.Index, list[str]]] | None = None

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
            self._indexes = None

    def apply_record(self, rec: dict | None, intent_id: str | None = None) -> None:
        """Apply one durable record (``None`` is a tombstone for ``intent_id``)."""
        if rec is None:
            with self._lock:
                if intent_id is not None and self.intents_.pop(intent_id, None) is not None:
                    self._indexes = None
            return
        self.check_embedder(rec.get("embedder", self.embedder), f"intent {rec.get('intent_id')}")
        self.put(CatalogIntent.from_record(rec))

    # --- matching --------------------------------------------------------------
    def _index(self) -> dict[str | None, tuple[faiss.Index, list[str]]]:
        with self._lock:
            if self._indexes is None:
                by_role: dict[str | None, list[CatalogIntent]] = {}
                for intent in self.intents_.values():
                    if intent.active:
                        by_role.setdefault(intent.role, []).append(intent)
                        by_role.setdefault("*", []).append(intent)
                indexes = {}
                for role, items in by_role.items():
                    C = np.vstack([i.centroid for i in items]).astype(np.float32)
                    index = faiss.IndexFlatIP(C.shape[1])
                    index.add(C)
                    indexes[role] = (index, [i.intent_id for i in items])
                self._indexes = indexes
            return self._indexes

    def match(self, X: np.ndarray, roles: Sequence[str | None] | None = None
              ) -> tuple[list[str | None], np.ndarray]:
        """Nearest active intent of the same role for each row, and its cosine score.

        A row whose role has no intent gets ``(None, -1.0)``. Role ``None`` searches
        every role. Thread-safe: the service calls it from a worker thread.
        """
        X = np.ascontiguousarray(X, dtype=np.float32)
        n = X.shape[0]
        roles = [None] * n if roles is None else list(roles)
        if len(roles) != n:
            raise ValueError(f"roles has {len(roles)} items but X has {n} rows")
        ids: list[str | None] = [None] * n
        scores = np.full(n, -1.0, dtype=np.float32)
        indexes = self._index()
        for role in set(roles):
            key = "*" if role is None else role
            if key not in indexes:
                continue
            rows = np.array([i for i, r in enumerate(roles) if r == role])
            index, names = indexes[key]
            if index.d != X.shape[1]:
                raise EmbeddingSpaceError(f"embeddings have {X.shape[1]} dims, the catalog {index.d}")
            D, I = index.search(X[rows], 1)
            for row, d, i in zip(rows, D[:, 0], I[:, 0]):
                if i >= 0:
                    ids[row], scores[row] = names[i], float(d)
        return ids, scores

    def infer_roles(self, X: np.ndarray, default: str = "customer") -> list[str]:
        """Role of rows that arrive without one: the role of the nearest intent.

        A nearest-centroid classifier over the catalog's intents (which carry the
        role of their members); with no intents, or only one role known, ``default``.
        """
        known = {i.role for i in self.active() if i.role is not None}
        if len(known) < 2:
            return [default] * len(X)
        ids, _ = self.match(X, None)
        return [self.intents_[i].role or default if i is not None else default for i in ids]

    # --- growth ----------------------------------------------------------------
    def upsert_from_cluster(self, centroid: np.ndarray, label: str, role: str | None, size: int,
                            examples: Iterable[str] = (), judge_backend: str = "",
                            judge_confidence: float | None = None, now: str = ""
                            ) -> list[CatalogIntent]:
        """Fold one good cluster into the catalog; return the changed entries.

        No active intent of the role within ``update_threshold`` (cosine) and none
        with the same label: ``created`` with a fresh stable id. Exactly one: that
        intent is ``updated`` (size-weighted centroid, new examples first, version+1,
        label kept so ids and names stay stable). Several: the most similar is
        updated and absorbs the others, each published as ``merged`` into it. The
        first entry returned is always the intent the cluster's members belong to.
        """
        c = unit(centroid, np.float32)
        examples = tuple(examples)
        with self._lock:
            pool = self.active(role)
            sims = {i.intent_id: float(i.centroid @ c) for i in pool if i.centroid.shape == c.shape}
            same = [i for i in pool
                    if sims.get(i.intent_id, -1) >= self.update_threshold
                    or normalize_label(i.label) == normalize_label(label)]
            if not same:
                digest = hashlib.sha1(c.tobytes() + f"{role}|{label}|{size}".encode()).hexdigest()
                intent = CatalogIntent(
                    intent_id=f"intent-{digest[:12]}", label=label, role=role, centroid=c,
                    size=int(size), examples=examples[:MAX_EXAMPLES], created_at=now,
                    updated_at=now, judge_backend=judge_backend, judge_confidence=judge_confidence)
                self.put(intent)
                return [intent]
            same.sort(key=lambda i: (-sims.get(i.intent_id, -1), -i.size, i.intent_id))
            target, absorbed = same[0], same[1:]
            total = target.size + int(size) + sum(i.size for i in absorbed)
            mix = target.centroid * target.size + c * int(size)
            merged_examples = list(examples) + list(target.examples)
            changed = []
            for other in absorbed:
                mix = mix + other.centroid * other.size
                merged_examples += list(other.examples)
                gone = replace(other, status="merged", merged_into=target.intent_id,
                               version=other.version + 1, updated_at=now)
                self.put(gone)
                changed.append(gone)
            target = replace(target, centroid=unit(mix, np.float32), size=total, status="updated",
                             version=target.version + 1, updated_at=now,
                             examples=tuple(dict.fromkeys(merged_examples))[:MAX_EXAMPLES],
                             judge_backend=judge_backend or target.judge_backend,
                             judge_confidence=judge_confidence if judge_confidence is not None
                             else target.judge_confidence)
            self.put(target)
            return [target, *changed]

    # --- persistence -----------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``catalog.json`` (entries, embedder) and ``centroids.npy`` into a folder."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with self._lock:
            items = sorted(self.intents_.values(), key=lambda i: i.intent_id)
            meta = {"format": 1, "embedder": self.embedder,
                    "update_threshold": self.update_threshold,
                    "intents": [i.to_record(self.embedder, centroid=False) for i in items]}
            dim = items[0].centroid.shape[0] if items else 0
            C = np.vstack([i.centroid for i in items]) if items else np.zeros((0, dim), np.float32)
        np.save(path / "centroids.npy", C.astype(np.float32))
        (path / "catalog.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), "utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path, embedder: str | None = None) -> IntentCatalog:
        """Read a saved catalog; with ``embedder`` given, refuse another embedding space."""
        path = Path(path)
        meta = json.loads((path / "catalog.json").read_text("utf-8"))
        C = np.load(path / "centroids.npy")
        catalog = cls(embedder=meta["embedder"], update_threshold=meta.get("update_threshold", 0.8))
        if embedder is not None:
            catalog.check_embedder(embedder)
        for rec, row in zip(meta["intents"], C):
            rec = dict(rec, centroid=base64.b64encode(np.asarray(row, "<f4").tobytes()).decode())
            catalog.put(CatalogIntent.from_record(rec))
        return catalog
