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
                      field_validator, model_serializer)

MAX_TEXT_CHARS = 2000
#: Inbound payloads larger than this are rejected before JSON parsing (a 1 MB string
#: has no business in a 2,000-character utterance; parsing it would only cost time).
MAX_PAYLOAD_BYTES = 64 * 1024

Role = Literal["customer", "agent"]
Status = Literal["created", "updated", "merged", "retired"]


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
Cause = Literal["matched", "discovered", "consolidation", "merge", "split"]
REASSIGNMENT_CAUSES = ("consolidation", "merge", "split")


class Assignment(BaseModel):
    """Topic ``intent-assignments`` (compacted), key = utterance_id.

    ``version`` counts the decisions about this utterance: a redelivery repeats the
    same version, a reassignment raises it and carries its ``cause``. ``score`` is the
    mean cosine to the intent's nearest exemplars (None when none was measured).
    """

    utterance_id: str
    call_id: str
    intent_id: str
    label: str
    role: str | None
    score: float | None
    version: int = 1
    cause: Cause = "matched"


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
    """Topic ``intent-updates`` (compacted), key = intent_id. No centroid on this topic."""

    intent_id: str
    label: str
    role: str | None
    version: int
    status: Status
    merged_into: str | None = None
    split_from: str | None = None
    size: int
    examples: list[str] = Field(default_factory=list, max_length=10)
    created_at: str
    updated_at: str
    judge: JudgeInfo = Field(default_factory=JudgeInfo)


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
