"""Each platform's own definition of a valid import, checked offline.

Every file ``dialin catalog export`` writes is checked here before it is written, and a
Rasa file ``dialin catalog import`` reads is checked the same way:

- **Rasa 3 NLU YAML**: the open-source ``rasa`` package does not install on Python 3.11
  here, so :data:`RASA_NLU_SCHEMA` is a JSON schema written from Rasa's documented
  training-data format (https://rasa.com/docs/rasa/training-data-format: top-level
  ``version`` and ``nlu``; ``nlu`` items are ``intent``, ``synonym``, ``regex`` or
  ``lookup`` entries, each with ``examples`` as a block of ``- `` lines or, for
  intents, a list of ``text`` entries with optional ``metadata``), checked with
  ``jsonschema``.
- **Dialogflow CX**: every intent is parsed into the official protobuf type
  ``google.cloud.dialogflow.cx.v3.Intent`` with ``google.protobuf.json_format`` (unknown
  or mistyped fields fail), then the fields the API documents as required are checked
  (a display name, unique within the agent; each training phrase's parts have text;
  label keys and values by the documented rule).
- **Amazon Lex V2**: every ``CreateIntent`` request is validated against botocore's own
  service model for ``lexv2-models`` with botocore's ``ParamValidator`` (required
  members, types, unknown members, minimum lengths); the ``max`` and ``pattern``
  constraints the same model declares, which botocore leaves to the server, are checked
  from the model too. No AWS call is made.

Libraries: jsonschema, PyYAML, google-cloud-dialogflow-cx (protobuf), botocore.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from ._errors import CatalogError

_EXAMPLE_BLOCK = r"^(- [^\n]*[^\s][^\n]*\n)+$"
_EXAMPLES = {"oneOf": [
    {"type": "string", "pattern": _EXAMPLE_BLOCK},
    {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["text"], "additionalProperties": False,
        "properties": {"text": {"type": "string", "minLength": 1}, "metadata": {}}}},
]}


def _entry(key: str, examples: dict) -> dict:
    return {"type": "object", "required": [key, "examples"], "additionalProperties": False,
            "properties": {key: {"type": "string", "minLength": 1, "pattern": r"^[^\n]+$"},
                           "examples": examples, "metadata": {}}}


#: Rasa 3 NLU training data, from Rasa's documented YAML format (see the module docstring).
RASA_NLU_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Rasa 3 NLU training data (YAML)",
    "type": "object",
    "required": ["nlu"],
    "properties": {
        "version": {"type": "string", "pattern": r"^3\.\d+$"},
        "nlu": {"type": "array", "items": {"oneOf": [
            _entry("intent", _EXAMPLES),
            _entry("synonym", {"type": "string", "pattern": _EXAMPLE_BLOCK}),
            _entry("regex", {"type": "string", "pattern": _EXAMPLE_BLOCK}),
            _entry("lookup", {"type": "string", "pattern": _EXAMPLE_BLOCK}),
        ]}},
        "stories": {"type": "array"},
        "rules": {"type": "array"},
    },
    "additionalProperties": False,
}


def check_rasa(doc: Any, source: str) -> dict:
    """``doc`` (parsed YAML) when it is Rasa 3 NLU training data, else :class:`CatalogError`."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    error = best_match(Draft202012Validator(RASA_NLU_SCHEMA).iter_errors(doc))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "top level"
        raise CatalogError(f"{source}: not Rasa 3 NLU training data: at {where}: "
                           f"{_short(error.message)}")
    return doc


# --- Dialogflow CX ------------------------------------------------------------------------

_CX_LABEL = re.compile(r"^[\w-]{1,63}$")


def check_cx_intent(intent: dict, where: str):
    """Parse one intent (API JSON form) into ``google.cloud.dialogflow.cx.v3.Intent``."""
    from google.cloud.dialogflowcx_v3 import Intent
    from google.protobuf import json_format

    try:
        message = json_format.ParseDict(intent, Intent.pb()())
    except json_format.ParseError as exc:
        raise CatalogError(f"{where}: not a Dialogflow CX Intent: {_short(str(exc))}") from None
    if not message.display_name.strip():
        raise CatalogError(f"{where}: Dialogflow CX Intent without a display name")
    for k, phrase in enumerate(message.training_phrases):
        if not phrase.parts or any(not part.text.strip() for part in phrase.parts):
            raise CatalogError(f"{where}: training phrase {k} has a part without text")
    for key, value in message.labels.items():
        if not (_CX_LABEL.match(key) and key[0].isalpha() and _CX_LABEL.match(value or "x")
                and len(key.encode()) <= 128 and len(value.encode()) <= 128
                and key == key.lower() and value == value.lower()):
            raise CatalogError(f"{where}: Dialogflow CX label {key}={value} breaks the label rules")
    return message


def check_cx(doc: dict, source: str) -> list:
    """Every intent of an exported Dialogflow CX document, as protobuf messages."""
    if not isinstance(doc.get("languageCode"), str) or not doc["languageCode"]:
        raise CatalogError(f"{source}: no languageCode")
    messages, names = [], set()
    for k, intent in enumerate(doc.get("intents", [])):
        message = check_cx_intent(intent, f"{source}: intents[{k}]")
        key = message.display_name.casefold()
        if key in names:
            raise CatalogError(f"{source}: display name {message.display_name!r} twice "
                               "(Dialogflow CX wants it unique within the agent)")
        names.add(key)
        messages.append(message)
    return messages


# --- Amazon Lex V2 ------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _lex_create_intent():
    """The ``CreateIntent`` input shape of botocore's bundled ``lexv2-models`` model."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("lexv2-models")
    return model.operation_model("CreateIntent").input_shape


def _model_constraints(value: Any, shape, name: str) -> str | None:
    """The first ``max``/``pattern`` violation of ``value`` under ``shape``, or None."""
    meta = shape.metadata
    if shape.type_name == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            return f"{name}: longer than {meta['max']} characters"
        if "pattern" in meta and not re.search(meta["pattern"], value):
            return f"{name}: {value!r} does not match {meta['pattern']}"
    elif shape.type_name == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            return f"{name}: more than {meta['max']} items"
        for k, item in enumerate(value):
            found = _model_constraints(item, shape.member, f"{name}[{k}]")
            if found:
                return found
    elif shape.type_name == "structure" and isinstance(value, dict):
        for key, item in value.items():
            if key in shape.members:
                found = _model_constraints(item, shape.members[key], f"{name}.{key}")
                if found:
                    return found
    return None


def check_lex_request(request: dict, where: str) -> dict:
    """One ``CreateIntent`` request, validated by botocore's service model (offline)."""
    from botocore.validate import ParamValidator

    shape = _lex_create_intent()
    report = ParamValidator().validate(request, shape)
    if report.has_errors():
        raise CatalogError(f"{where}: not a valid Lex V2 CreateIntent request: "
                           f"{_short(report.generate_report())}")
    found = _model_constraints(request, shape, "CreateIntent")
    if found:
        raise CatalogError(f"{where}: not a valid Lex V2 CreateIntent request: {found}")
    return request


def check_lex(doc: dict, source: str) -> list[dict]:
    """Every request of an exported Lex V2 document; intent names unique in the locale."""
    names: set[str] = set()
    for k, request in enumerate(doc.get("intents", [])):
        check_lex_request(request, f"{source}: intents[{k}]")
        if request["intentName"] in names:
            raise CatalogError(f"{source}: intentName {request['intentName']!r} twice")
        names.add(request["intentName"])
    return doc.get("intents", [])


def _short(text: str, limit: int = 240) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
