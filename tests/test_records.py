"""The inbound contract: valid events parse, everything else is rejected with a reason, never raised."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialin.streams.service.records import (
    MAX_TEXT_CHARS,
    BufferEntry,
    DeadLetter,
    IntentUpdate,
    Rejection,
    Utterance,
    default_utterance_id,
    kafka_utterance_id,
    validate_event,
)


def event(**fields) -> bytes:
    base = {"call_id": "c1", "turn": 2, "role": "customer", "text": "I lost my card",
            "ts": "2026-11-25T10:00:00Z", "lang": "en"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


def test_valid_event_parses_and_strips_text():
    u = validate_event(event(text="  I lost my card \n"))
    assert isinstance(u, Utterance)
    assert u.text == "I lost my card"
    assert u.role == "customer" and u.turn == 2 and u.ts.year == 2026


def test_default_utterance_id_is_deterministic_and_given_one_wins():
    a = validate_event(event())
    b = validate_event(event())
    assert a.uid == b.uid == default_utterance_id("c1", 2, "I lost my card")
    assert validate_event(event(turn=3)).uid != a.uid
    assert validate_event(event(utterance_id="u-42")).uid == "u-42"


def test_default_utterance_id_on_kafka_is_the_record_position():
    """A caller who says "yes" twice in a call without turn numbers is two utterances; a
    redelivered record (same offset) is the same one; a given id still wins."""
    yes = json.dumps({"call_id": "c1", "text": "yes"}).encode()
    first = validate_event(yes, ("utterances", 0, 7))
    second = validate_event(yes, ("utterances", 0, 8))
    assert first.uid == kafka_utterance_id("utterances", 0, 7) == "utterances/0/7"
    assert second.uid == "utterances/0/8" != first.uid
    assert validate_event(yes, ("utterances", 0, 7)).uid == first.uid
    assert validate_event(yes, ("utterances", 1, 7)).uid != first.uid
    assert validate_event(event(utterance_id="u-42"), ("utterances", 0, 7)).uid == "u-42"


def test_optional_fields_may_be_missing_or_null():
    u = validate_event(json.dumps({"call_id": "c", "text": "你好，我要订酒店", "role": None}).encode())
    assert isinstance(u, Utterance) and u.role is None and u.turn is None


@pytest.mark.parametrize("raw, reason", [
    (b"{not json", "not JSON"),
    (b"\xff\xfe\x00", "invalid UTF-8"),
    (b"[1, 2]", "not a JSON object"),
    (b"", "not JSON"),
    (event(text="   "), "empty after strip"),
    (event(text="x" * (MAX_TEXT_CHARS + 1)), "more than 2000"),
    (event(call_id=...), "call_id"),
    (event(text=...), "text"),
    (event(turn="3"), "turn"),
    (event(role="robot"), "role"),
    (event(ts="yesterday"), "ts"),
    (event(text=42), "text"),
    (b'{"call_id": "c", "text": "' + b"a" * 100_000 + b'"}', "bytes, more than"),
])
def test_invalid_payloads_are_rejected_with_a_reason(raw, reason):
    r = validate_event(raw)
    assert isinstance(r, Rejection)
    assert reason in r.reason
    assert "\n" not in r.reason


def test_text_of_exactly_the_limit_is_accepted():
    assert isinstance(validate_event(event(text="y" * MAX_TEXT_CHARS)), Utterance)


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.binary(max_size=2000),
    st.text(max_size=500).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.dictionaries(st.sampled_from(["call_id", "text", "turn", "role", "ts", "lang", "utterance_id"]),
                    st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=50),
                              st.lists(st.integers(), max_size=3)),
                    max_size=7).map(lambda d: json.dumps(d).encode()),
))
def test_validate_event_never_raises(raw):
    result = validate_event(raw)
    assert isinstance(result, (Utterance, Rejection))


def test_dead_letter_keeps_the_payload_byte_exact():
    text = DeadLetter.of("r", "好".encode())
    assert (text.payload, text.payload_encoding) == ("好", "utf-8")
    binary = DeadLetter.of("r", b"\xff\x00")
    assert binary.payload_encoding == "base64" and binary.payload == "/wA="
    assert DeadLetter.of("r", None).payload_encoding == "none"


def test_buffer_entry_round_trips_its_embedding():
    v = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    e = BufferEntry(utterance_id="u", call_id="c", text="t", role=None, embedding=BufferEntry.pack(v),
                    accepted_at=1.0)
    back = BufferEntry.model_validate_json(e.model_dump_json())
    np.testing.assert_array_equal(back.vector(), v)


def test_intent_update_caps_examples_and_has_no_centroid():
    base = dict(intent_id="i", label="l", role=None, version=1, status="created", size=1,
                created_at="", updated_at="")
    assert "centroid" not in IntentUpdate(**base).model_dump()
    with pytest.raises(ValueError):
        IntentUpdate(**base, examples=["x"] * 11)
