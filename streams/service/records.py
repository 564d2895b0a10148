"""The events on the service's topics, as pydantic models, and the edge validator.

Inbound values are consumed as raw bytes and validated here, never by a faust
codec: a value decode error raised inside faust can kill the agent
(``on_value_decode_error`` in ``faust/channels.py``) and faust has no dead-letter
queue of its own (faust-streaming#126). :func:`validate_event` therefore never
raises: it returns an :class:`Utterance` or a :class:`Rejection` with a one-line
reason, and the caller dead-letters the rejection with the raw payload.

Library: pydantic v2 (strict types, so ``"turn": "3"`` is an error, not a cast).
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timezone
from typing import Literal

import numpy as np
from pydantic import (BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError,
                      field_validator, model_serializer, model_validator)

MAX_TEXT_CHARS = 2000
#: Inbound payloads larger than this are rejected before JSON parsing (a 1 MB string
#: has no business in a 2,000-character utterance; parsing it would only cost time).
MAX_PAYLOAD_BYTES = 64 * 1024

Role = Literal["customer", "agent"]
#: The status of schema 1 of ``intent-updates``, still written for subscribers that read
#: it: ``created`` | ``updated`` | ``merged`` | ``retired`` (see :data:`STATUS_OF_EVENT`).
Status = Literal["created", "updated", "merged", "retired"]

#: Where an intent is in its lifecycle (docs/schema.md). ``candidate``: found by discovery,
#: matched and assigned, not yet approved by the activation rule or a person; ``active``:
#: approved; ``rejected``, ``retired``, ``merged``: no longer matched (ids never come back
#: with another meaning).
IntentState = Literal["candidate", "active", "rejected", "retired", "merged"]
#: What happened to an intent; ``created`` is always its first event (state ``candidate``).
IntentEvent = Literal["created", "activated", "updated", "renamed", "merged", "split",
                      "rejected", "retired"]
#: The schema 1 ``status`` each event is published with, so a subscriber of schema 1
#: keeps working: a rejected intent reads as retired, an activation or rename as updated.
STATUS_OF_EVENT: dict[str, str] = {
    "created": "created", "activated": "updated", "updated": "updated", "renamed": "updated",
    "split": "updated", "merged": "merged", "rejected": "retired", "retired": "retired"}
#: Version of the ``intent-updates`` / ``intent-events`` record schema (1: before the
#: lifecycle; 2: ``event``, ``state``, ``actor``, ``renamed_from``).
UPDATE_SCHEMA_VERSION = 2
#: Version of the ``intent-decisions`` record schema.
DECISION_SCHEMA_VERSION = 1
#: Longest intent label a person may give (a rename, a split part).
MAX_LABEL_CHARS = 80


def utc_now() -> str:
    """ISO-8601 UTC timestamp with a ``Z``, as every outbound event carries."""
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def kafka_utterance_id(topic: str, partition: int, offset: int) -> str:
    """The id of an inbound event without one: its record's identity in Kafka.

    Stable across redelivery (a redelivered record keeps its offset, so its outputs
    overwrite instead of adding up) and distinct for every event: a caller who says
    "yes" twice in a call without turn numbers is two utterances, not a duplicate.
    """
    return f"{topic}/{partition}/{offset}"


def default_utterance_id(call_id: str, turn: int | None, text: str) -> str:
    """Id of an utterance from content, for events that come with no Kafka position (files,
    in-process callers): the same (call_id, turn, text) always gets the same id."""
    digest = hashlib.sha256(f"{call_id}\x1f{turn}\x1f{text}".encode()).hexdigest()
    return f"u-{digest[:24]}"


class Utterance(BaseModel):
    """A valid inbound event (topic ``utterances``, key = call_id)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    call_id: StrictStr = Field(min_length=1, max_length=256)
    text: StrictStr
    utterance_id: StrictStr | None = Field(None, min_length=1, max_length=256)
    turn: StrictInt | None = None
    role: Role | None = None
    ts: datetime | None = None
    lang: StrictStr | None = Field(None, max_length=32)

    @field_validator("text")
    @classmethod
    def _strip_text(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("text is empty after strip")
        if len(value) > MAX_TEXT_CHARS:
            raise ValueError(f"text has {len(value)} chars after strip, more than {MAX_TEXT_CHARS}")
        return value

    @property
    def uid(self) -> str:
        """The utterance id: given, set from the Kafka position by :func:`validate_event`,
        else derived from the content."""
        return self.utterance_id or default_utterance_id(self.call_id, self.turn, self.text)


class Rejection(BaseModel):
    """Why an inbound payload was not accepted; the caller sends it to the DLQ."""

    model_config = ConfigDict(frozen=True)

    reason: str


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "payload"
    return f"{where}: {err.get('msg', 'invalid')}"


def validate_event(raw: bytes | None,
                   position: tuple[str, int, int] | None = None) -> Utterance | Rejection:
    """Parse and validate one inbound value. Never raises.

    ``position`` is the record's (topic, partition, offset): an event without an
    ``utterance_id`` gets :func:`kafka_utterance_id` of it.
    """
    result = _validate(raw)
    if isinstance(result, Utterance) and result.utterance_id is None and position is not None:
        return result.model_copy(update={"utterance_id": kafka_utterance_id(*position)})
    return result


def _validate(raw: bytes | None) -> Utterance | Rejection:
    if raw is None:
        return Rejection(reason="empty payload")
    if not isinstance(raw, (bytes, bytearray)):
        raw = str(raw).encode("utf-8", "surrogatepass")
    if len(raw) > MAX_PAYLOAD_BYTES:
        return Rejection(reason=f"payload has {len(raw)} bytes, more than {MAX_PAYLOAD_BYTES}")
    try:
        decoded = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(reason=f"invalid UTF-8 at byte {exc.start}")
    try:
        data = json.loads(decoded)
    except (ValueError, RecursionError) as exc:
        return Rejection(reason=f"not JSON: {str(exc)[:120]}")
    if not isinstance(data, dict):
        return Rejection(reason=f"not a JSON object but {type(data).__name__}")
    try:
        return Utterance.model_validate(data)
    except ValidationError as exc:
        return Rejection(reason=_first_error(exc))
    except Exception as exc:  # noqa: BLE001 - the edge must never raise
        return Rejection(reason=f"invalid: {type(exc).__name__}")


# --- outbound events -------------------------------------------------------------------


#: Why an assignment was written. The first one of an utterance says how it was decided
#: (``matched``: by the open-set rule on arrival; ``discovered``: by a discovery run from
#: the buffer); a later one (``version`` > 1) says why it changed (``consolidation``: a
#: re-fit moved it; ``merge``: its intent was merged into another; ``split``: it went to
#: an intent split from its old one). See docs/guarantees.md, "Reassignments".
Cause = Literal["matched", "discovered", "consolidation", "merge", "split", "rejected"]
REASSIGNMENT_CAUSES = ("consolidation", "merge", "split", "rejected")


class Assignment(BaseModel):
    """Topic ``intent-assignments`` (compacted), key = utterance_id.

    ``version`` counts the decisions about this utterance: a redelivery repeats the
    same version, a reassignment raises it and carries its ``cause``. ``score`` is the
    mean cosine to the intent's nearest exemplars (None when none was measured).
    ``intent_state`` is the intent's lifecycle state when the assignment was written
    (``candidate``: not yet approved). A *retraction* (its candidate was rejected, the
    utterance went back to the buffer) has ``intent_id`` and ``label`` None and cause
    ``rejected``.
    """

    utterance_id: str
    call_id: str
    intent_id: str | None
    label: str | None
    role: str | None
    score: float | None
    version: int = 1
    cause: Cause = "matched"
    intent_state: IntentState | None = None


class JudgeInfo(BaseModel):
    """Who certified an intent. ``fallback`` says why the offline judge did instead of the
    LLM (an LLM spend cap was reached: ``call_cap`` or ``token_cap``); it is written only
    when set, so an update the LLM judge certified reads as it always did."""

    backend: str = ""
    confidence: float | None = None
    fallback: str | None = None

    @model_serializer(mode="wrap")
    def _without_empty_fallback(self, handler) -> dict:
        out = handler(self)
        if out.get("fallback") is None:
            out.pop("fallback", None)
        return out


class IntentUpdate(BaseModel):
    """Topic ``intent-updates`` (compacted, the current state), key = intent_id; every one
    is also appended to ``intent-events`` (the full history). No centroid on these topics.

    ``version`` is the intent's own version, +1 per event (a decision sends it back as
    ``expected_version``). ``event`` says what happened, ``state`` where the intent is now,
    ``actor`` who decided (``engine``, ``rule:<name>``, ``reviewer:<token name>``), and the
    parents: ``merged_into``, ``split_from``, ``renamed_from`` (the label before a rename).
    ``status`` is schema 1's field, kept for its subscribers (:data:`STATUS_OF_EVENT`).
    """

    schema_version: int = UPDATE_SCHEMA_VERSION
    intent_id: str
    label: str
    role: str | None
    version: int
    event: IntentEvent = "created"
    state: IntentState = "candidate"
    status: Status
    actor: str = "engine"
    merged_into: str | None = None
    split_from: str | None = None
    renamed_from: str | None = None
    size: int
    examples: list[str] = Field(default_factory=list, max_length=10)
    created_at: str
    updated_at: str
    judge: JudgeInfo = Field(default_factory=JudgeInfo)


DecisionAction = Literal["approve", "rename", "merge", "split", "reject", "retire"]


class Decision(BaseModel):
    """Topic ``intent-decisions`` (compacted), key = decision_id: what a person decided
    about one intent. The leader applies each once, in order, when ``expected_version`` is
    the intent's current version (else it is stale: logged, counted, nothing changed).

    ``label``: the new name (rename; optional for split: the part that goes apart);
    ``into``: the merge target; ``utterance_ids``: the examples that go apart (split).
    Validation here is the contract both sides use: an invalid decision never reaches
    the topic from the page, and the leader skips one that does.
    """

    model_config = ConfigDict(extra="ignore")

    schema_version: int = DECISION_SCHEMA_VERSION
    decision_id: StrictStr = Field(min_length=1, max_length=256)
    action: DecisionAction
    intent_id: StrictStr = Field(min_length=1, max_length=256)
    expected_version: StrictInt = Field(ge=1)
    label: StrictStr | None = None
    into: StrictStr | None = None
    utterance_ids: list[StrictStr] | None = None
    actor: StrictStr = Field(min_length=1, max_length=256)
    decided_at: StrictStr

    @field_validator("label")
    @classmethod
    def _clean_label(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = " ".join(value.split())
        if not value:
            raise ValueError("label is empty")
        if len(value) > MAX_LABEL_CHARS:
            raise ValueError(f"label has {len(value)} chars, more than {MAX_LABEL_CHARS}")
        if any(c in value for c in "<>&"):
            raise ValueError("label contains markup characters (<, > or &)")
        return value

    @model_validator(mode="after")
    def _fields_of_action(self) -> Decision:
        if self.action == "rename" and self.label is None:
            raise ValueError("rename needs a label")
        if self.action == "merge":
            if not self.into:
                raise ValueError("merge needs into")
            if self.into == self.intent_id:
                raise ValueError("merge into itself")
        if self.action == "split" and not self.utterance_ids:
            raise ValueError("split needs utterance_ids")
        return self


class DeadLetter(BaseModel):
    """Topic ``utterances-dlq``: the reason and the raw payload (base64 when not UTF-8)."""

    reason: str
    payload: str | None
    payload_encoding: Literal["utf-8", "base64", "none"]
    key: str | None = None
    utterance_id: str | None = None
    source_topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    at: str = Field(default_factory=utc_now)

    @classmethod
    def of(cls, reason: str, raw: bytes | None, **where) -> DeadLetter:
        """Keep the payload byte-exact: text when it decodes, base64 otherwise."""
        if raw is None:
            return cls(reason=reason, payload=None, payload_encoding="none", **where)
        try:
            return cls(reason=reason, payload=bytes(raw).decode("utf-8"), payload_encoding="utf-8",
                       **where)
        except UnicodeDecodeError:
            return cls(reason=reason, payload=base64.b64encode(bytes(raw)).decode("ascii"),
                       payload_encoding="base64", **where)


class BufferEntry(BaseModel):
    """Topic ``dialin-buffer`` (internal, compacted), key = utterance_id.

    The embedding travels with the entry (base64 float32) so discovery never
    re-embeds, and so the buffer is complete without any worker's memory.
    """

    utterance_id: str
    call_id: str
    text: str
    role: str | None
    turn: int | None = None
    lang: str | None = None
    ts: str | None = None
    embedding: str
    accepted_at: float
    #: Where the inbound event sits on the input topic: a reassignment waits until the
    #: consumer group has committed past it (a redelivery could overwrite it before).
    source_partition: int | None = None
    source_offset: int | None = None
    #: The last assignment version published for this utterance: 0 when it never had one,
    #: the retraction's when a rejected candidate sent it back. Its next assignment is
    #: this + 1, so a subscriber keeping the highest version never keeps the retraction.
    version: int = 0

    @staticmethod
    def pack(vector: np.ndarray) -> str:
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")

    def vector(self) -> np.ndarray:
        return np.frombuffer(base64.b64decode(self.embedding), dtype="<f4").astype(np.float32)


class MemoryEntry(BufferEntry):
    """Topic ``dialin-memory`` (internal, compacted), key = utterance_id: an assigned
    utterance the service remembers, with its current intent and assignment version.

    Consolidation re-fits these with the buffer, so intents the first small runs made
    can be split or merged later; the leader keeps at most ``memory_cap`` of them.
    """

    intent_id: str
    version: int = 1


def dumps(model: BaseModel) -> bytes:
    """Compact JSON bytes of an outbound event (non-ASCII kept readable)."""
    return model.model_dump_json().encode("utf-8")
