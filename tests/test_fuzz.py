"""Bad input, fuzzed with hypothesis (issue 7, item 2).

Inbound payloads go through :func:`validate_event` and through the real ingest path
(:class:`Ingestor` with a real LSA embedder and catalog): nothing raises, and every
payload is either processed (assigned or buffered, keyed by its utterance_id) or
dead-lettered with a one-line reason and its raw bytes. The CLI's file inputs
(``load_table``, ``dialin evaluate``, ``dialin discover``) get fuzzed files: a table or
an :class:`InputError`; from the CLI a zero exit or one error line and a non-zero exit,
never a traceback.
"""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dialin.models import CatalogIntent, InputError, IntentCatalog, LSAEmbedder, load_table
from dialin.streams.service.ingest import Inbound, Ingestor
from dialin.streams.service.records import MAX_PAYLOAD_BYTES, Rejection, Utterance, validate_event
from dialin.streams.settings import Settings

# --- payload strategies ---------------------------------------------------------------------

ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
CONTROL = "".join(map(chr, range(0, 32))) + "\x7f\x85\u2028\u2029"
SCRIPTS = "abcXYZ 你好退款 مرحبا привет שלום こんにちは 🙂👍🏽 ﷽ é"
nasty_text = st.text(alphabet=st.sampled_from(ZERO_WIDTH + CONTROL + SCRIPTS) | st.characters(),
                     max_size=60)
huge_text = st.sampled_from(["x" * 1_000_000, "退" * 350_000, " " * 1_000_000 + "a",
                             "a" * (2001), ZERO_WIDTH * 500])
json_scalar = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | nasty_text
json_value = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(nasty_text, inner, max_size=3), max_leaves=8)
FIELDS = ("call_id", "text", "utterance_id", "turn", "role", "ts", "lang")


@st.composite
def event_objects(draw) -> dict:
    """A JSON object near the contract: each field missing, right, or of a wrong type."""
    good = {"call_id": draw(st.sampled_from(["c1", "call-2", "呼叫-3"])),
            "text": draw(nasty_text | st.sampled_from(["I lost my card", "我要退款"])),
            "utterance_id": draw(st.sampled_from(["u-1", "u-2"])),
            "turn": draw(st.integers(-5, 10**20)),
            "role": draw(st.sampled_from(["customer", "agent", None, "robot"])),
            "ts": draw(st.sampled_from(["2024-05-01T10:00:00Z", "yesterday", "2024-13-40"])),
            "lang": draw(st.sampled_from(["en", "zh", "x" * 40]))}
    out = {}
    for name in FIELDS:
        choice = draw(st.sampled_from(["keep", "keep", "drop", "wrong"]))
        if choice == "keep":
            out[name] = good[name]
        elif choice == "wrong":
            out[name] = draw(json_value | huge_text)
    out.update(draw(st.dictionaries(nasty_text, json_value, max_size=2)))
    return out


def _dump(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


payloads = st.one_of(
    st.binary(max_size=300),
    event_objects().map(_dump),
    event_objects().map(lambda o: json.dumps(o).encode()),  # \\u escapes, lone surrogates too
    json_value.map(_dump),
    st.builds(lambda head, bad: head + bad, event_objects().map(_dump), st.sampled_from(
        [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"}}"])),  # invalid UTF-8, trailing junk
    huge_text.map(lambda t: _dump({"call_id": "c", "text": t})),
    st.just(b""), st.just(b"null"), st.just(b"[" * 100_000),
)


def _one_line(reason: str) -> bool:
    return bool(reason.strip()) and "\n" not in reason and len(reason) < 500


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.data_too_large])
@given(payloads)
def test_validate_event_never_raises_and_explains_every_rejection(raw):
    result = validate_event(raw)
    assert isinstance(result, (Utterance, Rejection))
    if isinstance(result, Rejection):
        assert _one_line(result.reason)
    else:
        assert len(raw) <= MAX_PAYLOAD_BYTES
        assert 1 <= len(result.text) <= 2000 and result.text == result.text.strip()
        result.model_dump_json()  # what the worker will serialise downstream


# --- the real ingest path ---------------------------------------------------------------------


class RecordingPublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | str | None, bytes | None]] = []

    async def send_all(self, records) -> None:
        self.sent += list(records)


@pytest.fixture(scope="module")
def ingest_parts(english_sample):
    lsa = LSAEmbedder(n_components=32, random_state=0).fit(english_sample.texts[:200])
    catalog = IntentCatalog(embedder=lsa.name)
    catalog.put(CatalogIntent(intent_id="intent-lost", label="report-lost_card", role="customer",
                              centroid=lsa.encode(["I lost my card"])[0], size=5))
    return lsa, catalog


@settings(max_examples=150, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(batch=st.lists(payloads, min_size=1, max_size=8))
def test_every_fuzzed_payload_is_processed_or_dead_lettered_with_a_reason(ingest_parts, batch):
    lsa, catalog = ingest_parts
    settings_ = Settings(match_threshold=0.9, dedup_window=0)
    publisher = RecordingPublisher()
    ingestor = Ingestor(settings_, lsa, catalog, publisher)
    inbound = [Inbound(key=b"k", value=raw, topic="utt", partition=0, offset=i)
               for i, raw in enumerate(batch)]
    counts = asyncio.run(ingestor.process(inbound))  # must not raise
    assert counts["assigned"] + counts["buffered"] + counts["invalid"] == len(batch)
    letters = [json.loads(v) for t, _, v in publisher.sent if t == settings_.topic_dlq]
    processed = [(k, json.loads(v)) for t, k, v in publisher.sent
                 if t in (settings_.topic_assignments, settings_.topic_buffer)]
    assert len(letters) == counts["invalid"] and len(processed) == len(batch) - counts["invalid"]
    for letter in letters:
        assert _one_line(letter["reason"])
        raw = batch[letter["offset"]]
        kept = (letter["payload"].encode("utf-8", "surrogatepass")
                if letter["payload_encoding"] == "utf-8" else base64.b64decode(letter["payload"]))
        assert kept == raw  # byte-exact, for replay after a fix
    for key, event in processed:
        assert key == event["utterance_id"]


# --- the CLI's file inputs ---------------------------------------------------------------------

cell = st.one_of(nasty_text, st.sampled_from(["", " ", '"', '""', "a,b", "x\ny", "1e999", "null"]))


@st.composite
def csv_files(draw) -> bytes:
    header = draw(st.lists(st.sampled_from(["text", "label", "role", "id", "", "t\u200bext", "文本"]),
                           min_size=0, max_size=4))
    rows = draw(st.lists(st.lists(cell, max_size=5), max_size=6))
    lines = [",".join(header)] + [",".join(r) for r in rows]
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    return data + draw(st.sampled_from([b"", b"\n", b"\xff\xfe", b"\r\n,,,\r\n", b"\x00"]))


@st.composite
def jsonl_files(draw) -> bytes:
    lines = draw(st.lists(st.one_of(
        st.fixed_dictionaries({}, optional={"text": json_value, "label": json_value, "role": json_value,
                                            "id": json_value}).map(_dump),
        json_value.map(_dump), st.binary(max_size=40)), max_size=6))
    return b"\n".join(lines)


files = st.one_of(st.tuples(st.just(".csv"), csv_files()), st.tuples(st.just(".jsonl"), jsonl_files()),
                  st.tuples(st.sampled_from([".txt", ".CSV", ".jsonl"]), st.binary(max_size=200)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files)
@example(file=(".jsonl", b'{"\\n": null}'))  # a field name holding a newline (found by CI)
def test_load_table_returns_a_table_or_a_one_line_input_error(tmp_path, file):
    suffix, content = file
    path = tmp_path / f"input{suffix}"
    path.write_bytes(content)
    try:
        table = load_table(path, text_field="text", label_field=None)
    except InputError as exc:
        assert _one_line(str(exc))
    else:
        assert len(table.texts) >= 1 and all(t.strip() for t in table.texts)


@settings(max_examples=25, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(file=files, command=st.sampled_from(["evaluate", "discover"]))
@example(file=(".csv", b"text,text,text,text\n,,,\xe2\x80\x8b"), command="discover")  # one row (found by CI)
@example(file=(".csv", b"text,label\nonly one,a\n"), command="evaluate")
def test_the_cli_answers_fuzzed_files_with_one_line_never_a_traceback(tmp_path, file, command):
    from typer.testing import CliRunner

    from dialin.streams.cli import app

    suffix, content = file
    path = tmp_path / f"input{suffix}"
    path.write_bytes(content)
    args = [command, str(path), "--text-field", "text", "--embedder", "lsa",
            "--out", str(tmp_path / "out.json")]
    if command == "evaluate":
        args[4:4] = ["--label-field", "label"]
    result = CliRunner().invoke(app, args)
    assert "Traceback" not in result.output and "Traceback" not in (result.stderr or "")
    if result.exit_code != 0:
        assert isinstance(result.exception, SystemExit), repr(result.exception)
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr
