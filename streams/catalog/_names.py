"""Intent names by each bot platform's rules, from labels in any script.

Why: a discovered label (``report-lost_card``, ``查询-酒店-地址``) is free text, and each
platform accepts a narrower set of names. The rules, per platform (docs/operate.md,
"Export and import the catalog", says the same to operators):

- ``rasa``: every run of characters other than letters, digits, ``_`` and ``-`` becomes
  one ``_`` (letters of every script are kept, so a Chinese label stays Chinese; ``/``
  would make a retrieval intent and ``+`` a multi-intent, so neither survives).
- ``dialogflow-cx``: the display name is the label with its whitespace folded, at most
  :data:`CX_DISPLAY_NAME_MAX` characters; every script is kept.
- ``lex-v2``: ``intentName`` must match the pattern in botocore's service model (ASCII
  letters and digits, single ``_``/``-`` between them, at most 100), so the label is
  transliterated to ASCII (accents dropped by Unicode decomposition) when that loses no
  letter, and is id-based (``intent_<hash>`` from the intent id) otherwise, as for a
  Chinese label; ``intentDisplayName`` (any characters, at most 100) keeps the label.

A label without a letter or digit in any script names nothing on any platform: it is
refused with :class:`CatalogError`, never replaced silently. Names are unique within an
export, compared case-insensitively: a clash gets ``_2``, ``_3`` ... in intent-id order.

Library: the standard library (``unicodedata``, ``re``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence

from ._errors import CatalogError

#: The longest Dialogflow CX display name written (the proto does not bound it; this is
#: the bound we keep so the console shows the whole name).
CX_DISPLAY_NAME_MAX = 64
#: Amazon Lex V2 ``intentName`` / ``intentDisplayName`` maximum (botocore's service model).
LEX_NAME_MAX = 100

_NOT_RASA = re.compile(r"[^\w-]+")
_NOT_ASCII_NAME = re.compile(r"[^0-9A-Za-z]+")


def has_name(label: str) -> bool:
    """True when ``label`` holds a letter or a digit of some script."""
    return any(ch.isalnum() for ch in label)


def check_label(intent_id: str, label: str, platform: str) -> None:
    """Refuse a label that names nothing (no letter or digit in any script)."""
    if not isinstance(label, str) or not has_name(label):
        raise CatalogError(f"intent {intent_id}: label {label!r} has no letter or digit to name "
                           f"it by on {platform}; rename the intent and export again")


def rasa_name(intent_id: str, label: str) -> str:
    """The Rasa intent name of a label (letters of every script kept)."""
    return _NOT_RASA.sub("_", label).strip("_-") or label


def cx_display_name(intent_id: str, label: str) -> str:
    """The Dialogflow CX display name of a label (whitespace folded, bounded)."""
    return " ".join(label.split())[:CX_DISPLAY_NAME_MAX].rstrip()


def ascii_transliteration(label: str) -> str | None:
    """``label`` in ASCII letters and digits when decomposing accents loses none, else None."""
    plain = "".join(ch for ch in unicodedata.normalize("NFKD", label)
                    if not unicodedata.combining(ch))
    if any(ch.isalnum() and not ch.isascii() for ch in plain):
        return None
    return plain


def lex_name(intent_id: str, label: str) -> str:
    """The Lex V2 ``intentName`` of a label: transliterated when possible, else id-based."""
    plain = ascii_transliteration(label)
    if plain is None:
        plain = intent_id
    name = _NOT_ASCII_NAME.sub("_", plain).strip("_")[:LEX_NAME_MAX].rstrip("_")
    return name or _NOT_ASCII_NAME.sub("_", intent_id).strip("_")


def lex_display_name(intent_id: str, label: str) -> str:
    """The Lex V2 ``intentDisplayName``: the label itself, bounded."""
    return " ".join(label.split())[:LEX_NAME_MAX].rstrip()


def unique_names(items: Sequence[tuple[str, str]], name_of: Callable[[str, str], str],
                 platform: str, max_length: int | None = None,
                 joiner: str = "_") -> dict[str, str]:
    """``intent_id -> name`` for ``(intent_id, label)`` pairs, unique case-insensitively.

    Every label is checked first (:func:`check_label`); clashes get ``_2``, ``_3`` in
    intent-id order, cut to ``max_length`` when given.
    """
    out: dict[str, str] = {}
    taken: set[str] = set()
    for intent_id, label in sorted(items):
        check_label(intent_id, label, platform)
        base = name_of(intent_id, label)
        name, n = base, 1
        while name.casefold() in taken:
            n += 1
            suffix = f"{joiner}{n}"
            head = base if max_length is None else base[:max_length - len(suffix)]
            name = head + suffix
        taken.add(name.casefold())
        out[intent_id] = name
    return out
