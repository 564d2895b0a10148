"""What the review page shows: the intents as ``intent-updates`` says they are now, their
vectors from ``dialin-catalog``, their remembered utterances from ``dialin-memory`` and
the decisions already made on ``intent-decisions``, kept in one process's memory.

Kafka stays the source of truth: this view is rebuilt from the four compacted topics at
every start (each record applied through :meth:`ReviewState.apply_update` and its
siblings, which never raise on a bad record: the reader skips and logs it), so a restarted
``dialin review`` shows what the last one did. An older version of an intent never
overwrites a newer one (the topics are read in partition order, and a redelivered
publish may repeat an older version).

A decision is *pending* while the intent is still at the version the decision expected:
the leader applies it by publishing the next version, and the page shows the new state
as soon as that update is read. A pending decision blocks another on the same intent for
:data:`PENDING_SECONDS` at most (the leader may have found it impossible to apply, for
instance a split of utterances it no longer remembers). Growth is utterances gained in the last hour, from the
versions this process has seen (see :func:`growth_per_hour`). The nearest active intents
of a candidate are ranked by the cosine of the catalog centroids. Every example shown
passes the project's PII redactor (:func:`dialin.streams.factory.build_redactor`), also
those the publisher already redacted (redacting twice changes nothing).

Libraries: numpy, pydantic (the decision record), :class:`dialin.models.IntentCatalog`
(versions, tombstones and embedding spaces of catalog records).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import numpy as np

from dialin.models import IntentCatalog

#: An intent state as the lifecycle names it; a legacy ``status`` maps onto it.
LEGACY_STATES = {"created": "active", "updated": "active", "merged": "merged",
                 "retired": "retired"}
#: Utterances gained over this window is the "growth" the page sorts by.
GROWTH_WINDOW_SECONDS = 3600.0
#: Examples of one intent the page shows (remembered ones first, they can be split off).
MAX_EXAMPLES = 20
#: Nearest active intents shown per intent.
N_NEAREST = 3
#: A decision the leader has not applied after this long no longer blocks its intent.
PENDING_SECONDS = 600.0


def parse_time(value: object) -> float | None:
    """Seconds since the epoch of an ISO-8601 time (``Z`` or an offset), None if unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def growth_per_hour(versions: list[tuple[float, int]], created_at: float | None,
                    now: float, window: float = GROWTH_WINDOW_SECONDS) -> float:
    """Utterances an intent gained in the last ``window`` seconds, scaled to an hour.

    ``versions`` are the (updated_at, size) pairs seen, oldest first. The size now minus
    the size of the newest version at least ``window`` old; an intent created within the
    window gained all its size; when older versions were compacted away, its average rate
    since it was created.
    """
    if not versions:
        return 0.0
    size_now = versions[-1][1]
    before = [size for at, size in versions if at <= now - window]
    if before:
        gained = size_now - before[-1]
    elif created_at is None or created_at > now - window:
        gained = size_now
    else:
        gained = size_now * window / max(now - created_at, window)
    return float(gained) * 3600.0 / window


@dataclass(frozen=True)
class Example:
    """One example utterance: ``utterance_id`` is set when the page can split it off."""

    text: str
    utterance_id: str | None = None


@dataclass(frozen=True)
class Neighbour:
    """An active intent near another, with the cosine of their centroids."""

    intent_id: str
    label: str
    similarity: float


@dataclass(frozen=True)
class IntentView:
    """One intent as the page shows it."""

    intent_id: str
    label: str
    state: str
    version: int
    size: int
    growth: float
    role: str | None
    examples: list[Example]
    judge_backend: str
    verdict: str
    confidence: float | None
    nearest: list[Neighbour]
    pending: dict | None
    merged_into: str | None
    created_at: str
    updated_at: str

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class _Remembered:
    intent_id: str
    text: str
    accepted_at: float


@dataclass
class ReviewState:
    """The page's view of the topics. Thread-safe: the readers apply records while the
    server answers requests. ``redact`` maps a text to what may be shown (identity when
    PII redaction is off)."""

    redact: Callable[[str], str] = field(default=lambda text: text)
    updates: dict[str, dict] = field(default_factory=dict)
    decisions: dict[str, dict] = field(default_factory=dict)
    _versions: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    _memory: dict[str, _Remembered] = field(default_factory=dict)
    _catalog: IntentCatalog | None = None
    _redacted: dict[str, str] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # --- applying records ---------------------------------------------------------
    def apply_update(self, key: bytes | None, value: bytes | None) -> None:
        """One ``intent-updates`` record (a tombstone forgets the intent)."""
        if value is None:
            self._keep(self.updates, key, None, dict)
            return
        with self._lock:
            rec = _object(value)
            intent_id, version = str(rec["intent_id"]), int(rec["version"])
            old = self.updates.get(intent_id)
            if old is not None and int(old["version"]) > version:
                return
            self.updates[intent_id] = rec
            at = parse_time(rec.get("updated_at")) or 0.0
            seen = self._versions.setdefault(intent_id, [])
            seen.append((at, int(rec.get("size", 0))))
            seen.sort()

    def apply_catalog(self, key: bytes | None, value: bytes | None) -> None:
        """One ``dialin-catalog`` record: the intent's centroid for the nearest intents."""
        with self._lock:
            if value is None:
                if key is not None and self._catalog is not None:
                    self._catalog.apply_record(None, key.decode("utf-8", "replace"))
                return
            rec = _object(value)
            if self._catalog is None:
                self._catalog = IntentCatalog(embedder=str(rec["embedder"]))
            self._catalog.apply_record(rec)

    def apply_memory(self, key: bytes | None, value: bytes | None) -> None:
        """One ``dialin-memory`` record: an assigned utterance with its intent."""
        self._keep(self._memory, key, value, lambda rec: (str(rec["utterance_id"]), _Remembered(
            str(rec["intent_id"]), str(rec["text"]), float(rec.get("accepted_at", 0.0)))))

    def apply_decision(self, key: bytes | None, value: bytes | None) -> None:
        """One ``intent-decisions`` record (also called for a decision this process made)."""
        self._keep(self.decisions, key, value, lambda rec: (str(rec["decision_id"]), rec))

    def _keep(self, store: dict, key: bytes | None, value: bytes | None,
              entry: Callable[[dict], tuple[str, object]]) -> None:
        """A keyed record into ``store``; a tombstone removes its key."""
        with self._lock:
            if value is None:
                if key is not None:
                    store.pop(key.decode("utf-8", "replace"), None)
                return
            name, item = entry(_object(value))
            store[name] = item

    # --- reading ------------------------------------------------------------------
    def state_of(self, intent_id: str) -> str | None:
        """The lifecycle state of a known intent, None for an unknown one."""
        with self._lock:
            rec = self.updates.get(intent_id)
        return None if rec is None else _state(rec)

    def version_of(self, intent_id: str) -> int | None:
        with self._lock:
            rec = self.updates.get(intent_id)
        return None if rec is None else int(rec["version"])

    def members(self, intent_id: str) -> set[str]:
        """Ids of the remembered utterances of an intent (the ones a split can move)."""
        with self._lock:
            return {uid for uid, m in self._memory.items() if m.intent_id == intent_id}

    def pending(self, intent_id: str, now: float | None = None) -> dict | None:
        """The latest decision on ``intent_id`` that its current version does not reflect,
        made less than :data:`PENDING_SECONDS` ago (one the leader could not apply stops
        blocking the intent then)."""
        now = datetime.now(timezone.utc).timestamp() if now is None else now
        with self._lock:
            version = self.version_of(intent_id)
            waiting = [d for d in self.decisions.values()
                       if d.get("intent_id") == intent_id and d.get("expected_version") == version
                       and (parse_time(d.get("decided_at")) or 0.0) > now - PENDING_SECONDS]
        return max(waiting, key=lambda d: str(d.get("decided_at", ""))) if waiting else None

    def views(self, now: float | None = None) -> list[IntentView]:
        """Every known intent, candidates first, then by growth and size (largest first)."""
        now = datetime.now(timezone.utc).timestamp() if now is None else now
        with self._lock:
            records = list(self.updates.values())
            active = [r for r in records if _state(r) == "active"]
            vectors = self._centroids([r["intent_id"] for r in records])
            out = [self._view(r, active, vectors, now) for r in records]
        out.sort(key=lambda v: (v.state != "candidate", v.state != "active", -v.growth, -v.size,
                                v.intent_id))
        return out

    def _view(self, rec: dict, active: list[dict], vectors: dict[str, np.ndarray],
              now: float) -> IntentView:
        intent_id = str(rec["intent_id"])
        judge = rec.get("judge") or {}
        state = _state(rec)
        created = parse_time(rec.get("created_at"))
        return IntentView(
            intent_id=intent_id, label=str(rec.get("label", "")), state=state,
            version=int(rec["version"]), size=int(rec.get("size", 0)),
            growth=round(growth_per_hour(self._versions.get(intent_id, []), created, now), 1),
            role=rec.get("role"), examples=self._examples(intent_id, rec),
            judge_backend=str(judge.get("backend", "")),
            verdict=str(judge.get("verdict") or "Good"), confidence=judge.get("confidence"),
            nearest=self._nearest(intent_id, active, vectors) if state != "merged" else [],
            pending=self.pending(intent_id, now), merged_into=rec.get("merged_into"),
            created_at=str(rec.get("created_at", "")), updated_at=str(rec.get("updated_at", "")))

    def _examples(self, intent_id: str, rec: dict) -> list[Example]:
        remembered = sorted(((m.accepted_at, uid, m.text) for uid, m in self._memory.items()
                             if m.intent_id == intent_id), reverse=True)[:MAX_EXAMPLES]
        shown = [Example(self._safe(text), uid) for _, uid, text in remembered]
        texts = {e.text for e in shown}
        for text in rec.get("examples") or []:
            safe = self._safe(str(text))
            if len(shown) < MAX_EXAMPLES and safe not in texts:
                shown.append(Example(safe))
                texts.add(safe)
        return shown

    def _safe(self, text: str) -> str:
        if text not in self._redacted:
            self._redacted[text] = self.redact(text)
        return self._redacted[text]

    def _centroids(self, ids: list[str]) -> dict[str, np.ndarray]:
        if self._catalog is None:
            return {}
        known = self._catalog.intents_
        return {i: known[i].centroid for i in ids if i in known}

    def _nearest(self, intent_id: str, active: list[dict],
                 vectors: dict[str, np.ndarray]) -> list[Neighbour]:
        mine = vectors.get(intent_id)
        others = [r for r in active if r["intent_id"] != intent_id and r["intent_id"] in vectors]
        if mine is None or not others:
            return []
        sims = np.stack([vectors[r["intent_id"]] for r in others]) @ mine
        order = np.argsort(-sims)[:N_NEAREST]
        return [Neighbour(str(others[i]["intent_id"]), str(others[i].get("label", "")),
                          round(float(sims[i]), 3)) for i in order]


def _state(rec: dict) -> str:
    state = rec.get("state")
    if isinstance(state, str) and state:
        return state
    return LEGACY_STATES.get(str(rec.get("status")), "active")


def _object(value: bytes) -> dict:
    data = json.loads(value)
    if not isinstance(data, dict):
        raise ValueError(f"not a JSON object but {type(data).__name__}")
    return data
