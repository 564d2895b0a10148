"""load_table: the analyst's files in, one-line errors out."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialin.models import InputError, Table, load_table

DATA = Path(__file__).parent / "data"


def test_csv_sample_reads_texts_labels_and_row_numbers():
    table = load_table(DATA / "banking77_sample.csv", "text", label_field="category")
    assert isinstance(table, Table)
    assert len(table) == 600
    assert table.texts[0] == "Could you please activate my card"
    assert table.labels[0] == "activate_my_card"
    assert table.roles is None
    assert table.row_ids[:3] == [0, 1, 2]


def test_jsonl_sample_keeps_null_labels_as_none_and_roles():
    table = load_table(DATA / "crosswoz_sample.jsonl", "text", label_field="intent",
                       role_field="role", id_field=None)
    assert len(table) >= 600
    assert table.labels[0] is None  # a multi-act customer turn has no single intent
    assert table.labels[1] == "Inform-酒店-名称"
    assert set(table.roles) == {"customer", "agent"}


def test_id_field_values_become_row_ids(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"id": "u7", "t": "hello"}\n\n{"id": 8, "t": "bye"}\n', encoding="utf-8")
    table = load_table(p, "t", id_field="id")
    assert table.row_ids == ["u7", 8]
    assert table.texts == ["hello", "bye"]


def test_utf8_bom_is_tolerated(tmp_path):
    p = tmp_path / "bom.csv"
    p.write_bytes("\ufefftext,label\nhi there,a\n".encode("utf-8"))
    assert load_table(p, "text", "label").labels == ["a"]


def _error(path, *args, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        load_table(path, *args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path):
    assert "no such file" in _error(tmp_path / "nope.csv", "text")


def test_unknown_extension(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("x", encoding="utf-8")
    assert "unsupported file type '.txt'" in _error(p, "text")


def test_missing_text_field_names_the_fields():
    message = _error(DATA / "banking77_sample.csv", "utterance")
    assert "'utterance'" in message and "'text', 'category'" in message


def test_missing_label_field():
    assert "label field 'intent'" in _error(DATA / "banking77_sample.csv", "text", "intent")


def test_empty_text_names_the_line(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("text,label\nfine,a\n   ,b\n", encoding="utf-8")
    assert f"{p}:3: empty text" in _error(p, "text", "label")


def test_null_text_in_jsonl(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text('{"text": "ok"}\n{"text": null}\n', encoding="utf-8")
    assert ":2: empty text" in _error(p, "text")


def test_wrong_encoding_names_the_line(tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes("text\nok\ncaf\xe9 au lait\n".encode("latin-1"))
    message = _error(p, "text")
    assert ":3: not UTF-8" in message and "0xe9" in message


def test_invalid_json_line_names_the_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "a"}\n{"text": "b"\n', encoding="utf-8")
    assert ":2: invalid JSON" in _error(p, "text")


def test_non_object_json_line(tmp_path):
    p = tmp_path / "list.jsonl"
    p.write_text('["text"]\n', encoding="utf-8")
    assert ":1: expected a JSON object" in _error(p, "text")


def test_duplicate_ids(tmp_path):
    p = tmp_path / "dup.csv"
    p.write_text("id,text\n1,a\n1,b\n", encoding="utf-8")
    assert ":3: duplicate id '1'" in _error(p, "text", id_field="id")


def test_empty_files(tmp_path):
    csv_path = tmp_path / "empty.csv"
    csv_path.write_text("", encoding="utf-8")
    assert "no header" in _error(csv_path, "text")
    header_only = tmp_path / "header.csv"
    header_only.write_text("text\n", encoding="utf-8")
    assert "no rows" in _error(header_only, "text")
