"""A reviewer's action, checked against what the page knows, becomes one
:class:`~dialin.streams.service.records.Decision` or one clear refusal.

Every refusal is a :class:`ActionRefused` with the HTTP status it answers with, raised
before anything is produced: 400 for a body that is not an action, 404 for an intent
that is not known, 409 for an intent that moved on (a stale ``expected_version``, a
decision already waiting on that version, or a state the action does not apply to) and
422 for a value the action cannot take (merge into itself, a split that moves nothing or
everything, and a label the :class:`Decision` record refuses: empty, too long, markup).

What each action applies to:

- ``approve``, ``reject``: a candidate.
- ``rename``, ``merge``, ``split``: a candidate or an active intent; a merge goes into
  another candidate or active intent; a split names remembered utterances of the intent
  (``dialin-memory``), at least one and not all.
- ``retire``: an active intent.

Library: pydantic v2 (the request body, strict types, unknown fields refused).
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from ..service.records import Decision, utc_now
from ._state import ReviewState

Action = Literal["approve", "rename", "merge", "split", "reject", "retire"]

#: The states each action applies to (the intent's, not the merge target's).
APPLIES_TO: dict[str, tuple[str, ...]] = {
    "approve": ("candidate",), "reject": ("candidate",), "retire": ("active",),
    "rename": ("candidate", "active"), "merge": ("candidate", "active"),
    "split": ("candidate", "active"),
}
MERGE_TARGET_STATES = ("candidate", "active")


class ActionRefused(Exception):
    """An action that produces nothing, with the HTTP status and the one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ActionRequest(BaseModel):
    """The body of ``POST /api/decisions``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Action
    intent_id: StrictStr = Field(min_length=1, max_length=256)
    expected_version: StrictInt
    label: StrictStr | None = None
    into: StrictStr | None = None
    utterance_ids: list[StrictStr] | None = None
    #: A retry of the same click sends the same id, so it replaces, not adds, a decision.
    decision_id: StrictStr | None = Field(None, min_length=1, max_length=128)


def parse_request(body: object) -> ActionRequest:
    """The request, or :class:`ActionRefused` (400) naming the first bad field."""
    if not isinstance(body, dict):
        raise ActionRefused(400, "the body must be a JSON object")
    try:
        return ActionRequest.model_validate(body)
    except ValidationError as exc:
        raise ActionRefused(400, _first_error(exc)) from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "body"
    return f"{where}: {err.get('msg', 'invalid')}"


def decide(request: ActionRequest, state: ReviewState, actor: str) -> Decision:
    """The decision ``request`` makes, or :class:`ActionRefused`; produces nothing."""
    intent_id = request.intent_id
    current = state.state_of(intent_id)
    if current is None:
        raise ActionRefused(404, f"intent_id: no intent {intent_id!r}")
    version = state.version_of(intent_id)
    if request.expected_version != version:
        raise ActionRefused(409, f"expected_version: {intent_id} is at version {version}, "
                                 f"not {request.expected_version}; reload and decide again")
    if current not in APPLIES_TO[request.action]:
        raise ActionRefused(409, f"{request.action} applies to a "
                                 f"{' or '.join(APPLIES_TO[request.action])} intent; "
                                 f"{intent_id} is {current}")
    waiting = state.pending(intent_id)
    if waiting is not None and waiting.get("decision_id") != request.decision_id:
        raise ActionRefused(409, f"{intent_id} already has a decision waiting to be applied "
                                 f"({waiting.get('action')})")
    label = into = utterance_ids = None
    if request.action == "rename":
        label = request.label if request.label is not None else ""
    elif request.action == "merge":
        into = _merge_target(request, state)
    elif request.action == "split":
        utterance_ids = _split_members(request, state)
    try:  # the record's own rules on a label (empty, too long, markup) are the contract
        return Decision(decision_id=request.decision_id or uuid.uuid4().hex,
                        action=request.action, intent_id=intent_id, expected_version=version,
                        label=label, into=into, utterance_ids=utterance_ids, actor=actor,
                        decided_at=utc_now())
    except ValidationError as exc:
        raise ActionRefused(422, _first_error(exc)) from None


def _merge_target(request: ActionRequest, state: ReviewState) -> str:
    into = (request.into or "").strip()
    if not into:
        raise ActionRefused(422, "into: a merge needs the intent to merge into")
    if into == request.intent_id:
        raise ActionRefused(422, "into: an intent cannot be merged into itself")
    target = state.state_of(into)
    if target is None:
        raise ActionRefused(404, f"into: no intent {into!r}")
    if target not in MERGE_TARGET_STATES:
        raise ActionRefused(409, f"into: {into} is {target}; merge into a candidate or an "
                                 "active intent")
    return into


def _split_members(request: ActionRequest, state: ReviewState) -> list[str]:
    picked = list(dict.fromkeys(request.utterance_ids or []))
    if not picked:
        raise ActionRefused(422, "utterance_ids: pick the examples that go apart")
    members = state.members(request.intent_id)
    strangers = [u for u in picked if u not in members]
    if strangers:
        raise ActionRefused(422, f"utterance_ids: {strangers[0]!r} is not a remembered "
                                 f"utterance of {request.intent_id}")
    if len(picked) == len(members):
        raise ActionRefused(422, "utterance_ids: a split leaves some examples behind; "
                                 "to move them all, rename or merge")
    return picked
