"""Read an import file into seeds: the intents it holds, checked, with one-line errors.

Formats ``dialin catalog import`` reads (:data:`IMPORT_FORMATS`):

- ``dialin``: a backup written by ``dialin catalog export --format dialin``; every
  record is checked field by field (pydantic) and, when it carries vectors, decoded
  once (a corrupt centroid is an error here, not in a worker).
- ``rasa``: Rasa 3 NLU training data (YAML), checked against the same schema the
  export is checked with (:data:`._vendors.RASA_NLU_SCHEMA`); its ``intent`` entries are
  the intents (synonyms, regexes and lookups are not), entity annotations
  (``[text](entity)``, ``[text]{...}``) are read as their text, and an intent's
  ``metadata`` may give ``intent_id`` and ``role`` (what the Rasa export writes).
- ``csv``: a header row with ``label`` and ``example`` (or ``text``), optionally
  ``role`` and ``intent_id``; one row per example utterance.

An intent named twice (two Rasa entries, many CSV rows) is one intent with all the
examples. Roles are ``customer`` or ``agent``; a file that gives none gets the
importer's default role.

Libraries: PyYAML, pydantic, the standard library's ``csv`` and ``json``.
"""

from __future__ import annotations

import binascii
import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dialin.models import CatalogIntent

from ._errors import CatalogError, first_error, read_text
from ._vendors import check_rasa

IMPORT_FORMATS = ("dialin", "rasa", "csv")
ROLES = ("customer", "agent")
_SUFFIXES = {".json": "dialin", ".yml": "rasa", ".yaml": "rasa", ".csv": "csv"}
_ANNOTATION = re.compile(r"\[([^\]\n]+)\](?:\([^)\n]*\)|\{[^}\n]*\})")


@dataclass(frozen=True)
class Seed:
    """One intent of an import file.

    ``record`` is the catalog record of a ``dialin`` backup (its vectors may be absent);
    for the other formats only ``label``, ``role``, ``examples`` and, when the file
    names one, ``intent_id`` are known.
    """

    label: str
    role: str | None
    examples: tuple[str, ...]
    intent_id: str | None = None
    record: dict | None = None


def format_of(path: Path, fmt: str | None) -> str:
    """The import format: the one asked for, else the file's extension's."""
    if fmt is not None:
        if fmt not in IMPORT_FORMATS:
            raise CatalogError(f"unknown import format {fmt!r}: choose one of "
                               f"{', '.join(IMPORT_FORMATS)}")
        return fmt
    if path.suffix.lower() not in _SUFFIXES:
        raise CatalogError(f"{path}: cannot tell the format from {path.suffix or 'no extension'!r};"
                           f" pass --format ({', '.join(IMPORT_FORMATS)})")
    return _SUFFIXES[path.suffix.lower()]


def read_import(path: str | Path, fmt: str | None = None) -> tuple[str, list[Seed]]:
    """The format and the seeds of an import file; :class:`CatalogError` when malformed."""
    path = Path(path)
    fmt = format_of(path, fmt)
    text = read_text(path)
    if fmt == "dialin":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CatalogError(f"{path}:{exc.lineno}: not JSON ({exc.msg})") from None
        seeds = parse_dialin(doc, str(path))
    elif fmt == "rasa":
        seeds = _parse_rasa(text, str(path))
    else:
        seeds = _parse_csv(text, str(path))
    if not seeds:
        raise CatalogError(f"{path}: no intent in it; nothing to import")
    return fmt, seeds


# --- dialin backups ---------------------------------------------------------------------

class _Judge(BaseModel):
    model_config = ConfigDict(extra="allow")  # fields a newer leader writes are kept

    backend: str = ""
    confidence: float | None = None


class _BackupRecord(BaseModel):
    """One catalog record (:meth:`dialin.models.CatalogIntent.to_record` form); fields
    this version does not know are kept, so a restore gives the record back whole."""

    model_config = ConfigDict(extra="allow")

    intent_id: str = Field(min_length=1)
    label: str
    role: str | None = None
    version: int = Field(ge=1)
    status: Literal["created", "updated", "merged", "retired"]
    merged_into: str | None = None
    split_from: str | None = None
    size: int = Field(ge=0)
    examples: list[str] = Field(default_factory=list)
    created_at: str = ""
    updated_at: str = ""
    judge: _Judge = Field(default_factory=_Judge)
    embedder: str
    centroid: str | None = None
    exemplars: str | None = None
    threshold: float | None = None


class _Backup(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format: Literal["dialin-catalog"]
    version: Literal[1]
    intents: list[_BackupRecord]


def parse_dialin(doc: Any, source: str) -> list[Seed]:
    """The seeds of a parsed ``dialin`` backup document."""
    try:
        backup = _Backup.model_validate(doc)
    except ValidationError as exc:
        raise CatalogError(f"{source}: not a dialin catalog backup: {first_error(exc)}") from None
    seeds, seen = [], set()
    for k, rec in enumerate(backup.intents):
        if rec.intent_id in seen:
            raise CatalogError(f"{source}: intents[{k}]: intent {rec.intent_id} twice")
        seen.add(rec.intent_id)
        record = rec.model_dump(exclude_unset=True)  # the keys the file has, no more
        if rec.centroid is None:
            record.pop("centroid", None)
            record.pop("exemplars", None)
        else:
            try:
                CatalogIntent.from_record(record)
            except (binascii.Error, ValueError, TypeError) as exc:
                raise CatalogError(f"{source}: intents[{k}] ({rec.intent_id}): its vectors do "
                                   f"not decode ({exc})") from None
        seeds.append(Seed(label=rec.label, role=rec.role, examples=tuple(rec.examples),
                          intent_id=rec.intent_id, record=record))
    return seeds


# --- Rasa -------------------------------------------------------------------------------

def _parse_rasa(text: str, source: str) -> list[Seed]:
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        raise CatalogError(f"{source}{where}: not YAML ({problem})") from None
    check_rasa(doc, source)
    grouped: dict[str, dict] = {}
    for item in doc.get("nlu", []):
        if "intent" not in item:
            continue
        examples = item["examples"]
        if isinstance(examples, str):
            texts = [line.strip()[2:] for line in examples.splitlines() if line.strip()]
        else:
            texts = [e["text"] for e in examples]
        meta = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
        role = meta.get("role")
        if role is not None and role not in ROLES:
            raise CatalogError(f"{source}: intent {item['intent']!r}: role {role!r} is not one "
                               f"of {', '.join(ROLES)}")
        entry = grouped.setdefault(item["intent"], {"examples": [], "role": role,
                                                    "intent_id": meta.get("intent_id")})
        entry["examples"] += [" ".join(_ANNOTATION.sub(r"\1", t).split()) for t in texts]
    return [Seed(label=name, role=e["role"], examples=tuple(t for t in e["examples"] if t),
                 intent_id=e["intent_id"] if isinstance(e["intent_id"], str) else None)
            for name, e in grouped.items()]


# --- CSV --------------------------------------------------------------------------------

def _parse_csv(text: str, source: str) -> list[Seed]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = reader.fieldnames or []
    text_field = "example" if "example" in fields else "text"
    if "label" not in fields or text_field not in fields:
        raise CatalogError(f"{source}: a CSV import needs the columns label and example (or "
                           f"text); it has {', '.join(map(repr, fields)) or 'no header'}")
    grouped: dict[tuple[str | None, str], dict] = {}
    try:
        for row in reader:
            line = reader.line_num
            label = (row.get("label") or "").strip()
            example = " ".join((row.get(text_field) or "").split())
            role = (row.get("role") or "").strip() or None
            if not label:
                raise CatalogError(f"{source}:{line}: empty label")
            if not example:
                raise CatalogError(f"{source}:{line}: empty {text_field}")
            if role is not None and role not in ROLES:
                raise CatalogError(f"{source}:{line}: role {role!r} is not one of {', '.join(ROLES)}")
            intent_id = (row.get("intent_id") or "").strip() or None
            entry = grouped.setdefault((role, label), {"examples": [], "intent_id": intent_id})
            if intent_id and entry["intent_id"] not in (None, intent_id):
                raise CatalogError(f"{source}:{line}: label {label!r} has two intent ids "
                                   f"({entry['intent_id']}, {intent_id})")
            entry["intent_id"] = entry["intent_id"] or intent_id
            entry["examples"].append(example)
    except csv.Error as exc:
        raise CatalogError(f"{source}:{reader.line_num}: invalid CSV ({exc})") from None
    return [Seed(label=label, role=role, examples=tuple(e["examples"]), intent_id=e["intent_id"])
            for (role, label), e in grouped.items()]
