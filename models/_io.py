"""Read an analyst's utterance file (.csv or .jsonl) into one small table.

The CLI and the benchmarks read files the same way, so the rules live here once: UTF-8
(a BOM is tolerated), a header row for CSV, one JSON object per line for JSONL. Every
problem an analyst can cause (wrong path, wrong field name, an empty utterance, a file
saved in another encoding, a broken JSON line) raises :class:`InputError` with a
one-line message that names the line, so the CLI can print it without a traceback.
The standard library's ``csv`` and ``json`` do the parsing.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: File types :func:`load_table` understands, by extension.
CSV_SUFFIXES = (".csv",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")


class InputError(ValueError):
    """A problem with the user's input file; the message is one line, fit for stderr
    (whitespace in it, a newline in a field name included, is folded to spaces)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


@dataclass(frozen=True)
class Table:
    """Utterances and their optional per-row fields, in file order.

    ``labels`` and ``roles`` are None when the field was not asked for; a row without
    a value holds None (evaluation decides what to do with unlabelled rows). ``row_ids``
    are the values of the id field, or the 0-based row number when there is none.
    """

    texts: list[str]
    labels: list[str | None] | None
    roles: list[str | None] | None
    row_ids: list[Any]
    source: str

    def __len__(self) -> int:
        return len(self.texts)


def load_table(path: str | Path, text_field: str, label_field: str | None = None,
               role_field: str | None = None, id_field: str | None = None) -> Table:
    """Read ``path`` (.csv with a header, or .jsonl) into a :class:`Table`.

    Raises :class:`InputError` for a missing file, an unknown extension, a field that
    is not there, an empty text, a file that is not UTF-8, an invalid JSON line, a
    duplicate id, or a file without rows.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + JSONL_SUFFIXES:
        raise InputError(f"{path}: unsupported file type {suffix or '(none)'!r}; use .csv or .jsonl")
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    text = _read_utf8(path)
    rows = _csv_rows(text, path) if suffix in CSV_SUFFIXES else _jsonl_rows(text, path)
    fields = {"text": text_field, "label": label_field, "role": role_field, "id": id_field}
    texts: list[str] = []
    labels: list[str | None] = []
    roles: list[str | None] = []
    row_ids: list[Any] = []
    seen_ids: set = set()
    for line, row in rows:
        for kind, name in fields.items():
            if name is not None and name not in row:
                raise InputError(f"{path}:{line}: no {kind} field {name!r} "
                                 f"(fields: {', '.join(repr(str(k)) for k in row) or 'none'})")
        value = row[text_field]
        if value is None or not str(value).strip():
            raise InputError(f"{path}:{line}: empty text in field {text_field!r}")
        texts.append(str(value))
        if label_field is not None:
            labels.append(_optional_str(row[label_field]))
        if role_field is not None:
            roles.append(_optional_str(row[role_field]))
        if id_field is None:
            row_ids.append(len(row_ids))
        else:
            rid = row[id_field]
            if rid is None or rid == "" or isinstance(rid, (dict, list)):
                raise InputError(f"{path}:{line}: id field {id_field!r} must be a non-empty scalar")
            if rid in seen_ids:
                raise InputError(f"{path}:{line}: duplicate id {rid!r} in field {id_field!r}")
            seen_ids.add(rid)
            row_ids.append(rid)
    if not texts:
        raise InputError(f"{path}: no rows")
    return Table(texts=texts, labels=labels if label_field is not None else None,
                 roles=roles if role_field is not None else None, row_ids=row_ids,
                 source=str(path))


def _read_utf8(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                         "save the file as UTF-8") from None


def _csv_rows(text: str, path: Path) -> Iterator[tuple[int, dict]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        if not reader.fieldnames:
            raise InputError(f"{path}: empty CSV (no header row)")
        for row in reader:
            # Short rows get None for missing cells: treat them as absent values, not fields.
            yield reader.line_num, {k: v for k, v in row.items() if k is not None}
    except csv.Error as exc:
        raise InputError(f"{path}:{reader.line_num}: invalid CSV ({exc})") from None


def _jsonl_rows(text: str, path: Path) -> Iterator[tuple[int, dict]]:
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{line}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}:{line}: expected a JSON object, got {type(row).__name__}")
        yield line, row


def _optional_str(value: Any) -> str | None:
    """Labels and roles compare as strings; null or blank means unknown."""
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    value = str(value)
    return value if value.strip() else None
