"""Write a catalog in each export format, checked by the platform's own definition.

Formats (:data:`FORMATS`):

- ``dialin``: the full backup. Every entry of every status (merged intents keep the
  lineage), as catalog records with their vectors (centroid, exemplars, threshold) when
  the source has them; ``dialin catalog import`` restores it with the same ids, labels,
  lineage and versions. Checked by reading it back with the importer's parser.
- ``rasa``: Rasa 3 NLU training data (YAML), checked against
  :data:`~._vendors.RASA_NLU_SCHEMA` after a YAML round trip.
- ``dialogflow-cx``: ``{"languageCode", "intents": [...]}``, each intent the JSON body of
  ``projects.locations.agents.intents.create`` (pass ``languageCode`` with the request),
  parsed into the official ``Intent`` protobuf type.
- ``lex-v2``: ``{"localeId", "intents": [...]}``, each item the parameters of one Lex V2
  ``CreateIntent`` call (``aws lexv2-models create-intent --cli-input-json``), validated
  with botocore's service model. ``botId`` is a placeholder to replace (``--bot-id``).
- ``csv``: ``intent_id,label,role,example``, one row per training phrase (what
  ``dialin catalog import --format csv`` reads back).

The platform formats hold the *active* intents only, with their training phrases
(:func:`._phrases.training_phrases`); an intent left without a phrase is left out and
counted. Names follow :mod:`._names`.

Libraries: PyYAML, the standard library's ``csv`` and ``json``; the checks in
:mod:`._vendors`.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime, timezone

import yaml

from dialin.models import Redactor, detect_language

from . import _names, _vendors
from ._errors import CatalogError
from ._phrases import PUBLISHED_EXAMPLES, training_phrases
from ._sources import Snapshot

FORMATS = ("dialin", "rasa", "dialogflow-cx", "lex-v2", "csv")
#: The ``format`` field of a ``dialin`` backup, and its version.
DIALIN_FORMAT = "dialin-catalog"
DIALIN_FORMAT_VERSION = 1
#: Language codes per detected language: (Dialogflow CX ``languageCode``, Lex ``localeId``).
LANGUAGES = {"en": ("en", "en_US"), "zh": ("zh-cn", "zh_CN")}
#: A syntactically valid Lex ``botId`` (10 letters or digits) to replace with the real one.
PLACEHOLDER_BOT_ID = "DIALINBOT0"
RASA_VERSION = "3.1"


@dataclass(frozen=True)
class Export:
    """A written export: its text, and what it holds."""

    format: str
    text: str
    n_intents: int
    n_phrases: int
    left_out: int  # active intents without a training phrase (platform formats only)
    language: str | None = None


class _Block(str):
    """A string YAML writes as a literal block (``|``), as Rasa's examples are written."""


class _RasaDumper(yaml.SafeDumper):
    pass


_RasaDumper.add_representer(
    _Block, lambda dumper, s: dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|"))


def export(snapshot: Snapshot, fmt: str, *, redactor: Redactor | None,
           max_examples: int = PUBLISHED_EXAMPLES,
           language: str | None = None, bot_id: str = PLACEHOLDER_BOT_ID) -> Export:
    """The catalog of ``snapshot`` in format ``fmt`` (:data:`FORMATS`), checked.

    ``language`` (``en`` or ``zh``) sets Dialogflow's ``languageCode`` and Lex's
    ``localeId``; None detects it from the labels and examples.
    """
    if fmt not in FORMATS:
        raise CatalogError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if max_examples < 1:
        raise CatalogError(f"--max-examples must be at least 1, got {max_examples}")
    records = snapshot.records if fmt == "dialin" else snapshot.active()
    if not records:
        raise CatalogError(f"{snapshot.source}: the catalog has no "
                           f"{'' if fmt == 'dialin' else 'active '}intent; nothing to export")
    if fmt == "dialin":
        return _dialin(snapshot, records, redactor, max_examples)
    phrases = {r["intent_id"]: training_phrases(r.get("examples", ()), redactor=redactor,
                                                limit=max_examples, platform=fmt)
               for r in records}
    kept = [r for r in records if phrases[r["intent_id"]]]
    lang = language or detect_language([r["label"] for r in kept]
                                       + [p for r in kept for p in phrases[r["intent_id"]]])
    if lang not in LANGUAGES:
        raise CatalogError(f"unknown language {lang!r}: choose one of {', '.join(LANGUAGES)}")
    # Labels are checked for every active intent, even one left out for want of phrases.
    for r in records:
        _names.check_label(r["intent_id"], r["label"], fmt)
    if not kept:
        raise CatalogError(f"{snapshot.source}: no active intent has a training phrase left "
                           "after redaction and de-duplication; nothing to export")
    writer = {"rasa": _rasa, "dialogflow-cx": _cx, "lex-v2": _lex, "csv": _csv}[fmt]
    text = writer(kept, phrases, snapshot.source, lang, bot_id)
    return Export(fmt, text, len(kept), sum(len(phrases[r["intent_id"]]) for r in kept),
                  len(records) - len(kept), lang)


def _pairs(records: list[dict]) -> list[tuple[str, str]]:
    return [(r["intent_id"], r["label"]) for r in records]


def _rasa(records, phrases, source, lang, bot_id) -> str:
    names = _names.unique_names(_pairs(records), _names.rasa_name, "rasa")
    nlu = []
    for r in records:
        meta = {"intent_id": r["intent_id"]}
        if r.get("role"):
            meta["role"] = r["role"]
        nlu.append({"intent": names[r["intent_id"]], "metadata": meta,
                    "examples": _Block("".join(f"- {p}\n" for p in phrases[r["intent_id"]]))})
    text = yaml.dump({"version": RASA_VERSION, "nlu": nlu}, Dumper=_RasaDumper,
                     allow_unicode=True, sort_keys=False, width=1 << 20)
    doc = _vendors.check_rasa(yaml.safe_load(text), "the Rasa export")
    for item, r in zip(doc["nlu"], records):  # the YAML round trip kept every phrase
        back = [line[2:] for line in item["examples"].splitlines()]
        if back != phrases[r["intent_id"]]:
            raise CatalogError(f"the Rasa export changed the phrases of {r['intent_id']} "
                               "in a YAML round trip")
    return f"# Rasa 3 NLU training data exported by dialin from {source}\n{text}"


def _cx(records, phrases, source, lang, bot_id) -> str:
    names = _names.unique_names(_pairs(records), _names.cx_display_name, "dialogflow-cx",
                                max_length=_names.CX_DISPLAY_NAME_MAX)
    intents = []
    for r in records:
        labels = {"dialin-id": r["intent_id"].lower()}
        if r.get("role"):
            labels["dialin-role"] = str(r["role"]).lower()
        intents.append({
            "displayName": names[r["intent_id"]],
            "description": f"dialin intent {r['intent_id']}",
            "labels": labels,
            "trainingPhrases": [{"parts": [{"text": p}], "repeatCount": 1}
                                for p in phrases[r["intent_id"]]],
        })
    doc = {"languageCode": LANGUAGES[lang][0], "intents": intents}
    _vendors.check_cx(doc, "the Dialogflow CX export")
    return json.dumps(doc, ensure_ascii=False, indent=1) + "\n"


def _lex(records, phrases, source, lang, bot_id) -> str:
    names = _names.unique_names(_pairs(records), _names.lex_name, "lex-v2",
                                max_length=_names.LEX_NAME_MAX)
    locale = LANGUAGES[lang][1]
    intents = [{
        "botId": bot_id, "botVersion": "DRAFT", "localeId": locale,
        "intentName": names[r["intent_id"]],
        "intentDisplayName": _names.lex_display_name(r["intent_id"], r["label"]),
        "description": f"dialin intent {r['intent_id']}",
        "sampleUtterances": [{"utterance": p} for p in phrases[r["intent_id"]]],
    } for r in records]
    doc = {"localeId": locale, "intents": intents}
    _vendors.check_lex(doc, "the Lex V2 export")
    return json.dumps(doc, ensure_ascii=False, indent=1) + "\n"


CSV_COLUMNS = ("intent_id", "label", "role", "example")


def _csv(records, phrases, source, lang, bot_id) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    rows = [(r["intent_id"], r["label"], r.get("role") or "", p)
            for r in records for p in phrases[r["intent_id"]]]
    writer.writerows(rows)
    text = out.getvalue()
    back = [tuple(row) for row in csv.reader(io.StringIO(text))]
    if back != [CSV_COLUMNS, *rows]:
        raise CatalogError("the CSV export does not read back as written")
    return text


def _dialin(snapshot: Snapshot, records: list[dict], redactor: Redactor | None,
            max_examples: int) -> Export:
    from ._parse import parse_dialin

    out = [dict(r, examples=training_phrases(r.get("examples", ()), redactor=redactor,
                                             limit=max_examples)) for r in records]
    doc = {"format": DIALIN_FORMAT, "version": DIALIN_FORMAT_VERSION,
           "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "source": snapshot.source, "embedder": snapshot.embedder, "intents": out}
    text = json.dumps(doc, ensure_ascii=False, indent=1) + "\n"
    parse_dialin(json.loads(text), "the dialin export")  # what import will read
    return Export("dialin", text, len(out), sum(len(r["examples"]) for r in out), 0)
