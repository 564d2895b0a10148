"""Redact personal data from call transcripts before any text leaves the process.

Transcripts are personal data: an utterance put into an LLM prompt or published as an
intent's example must not carry the caller's phone number, e-mail address, payment card
or Chinese resident ID. :class:`Redactor` replaces each found value with a token
(``<PHONE>``, ``<EMAIL>``, ``<CARD>``, ``<CN_ID>``, ...) and counts what it replaced.

Built on the field's libraries rather than home-made detection:

* **Presidio** (``presidio-analyzer``/``presidio-anonymizer``) runs the recognizers and
  applies the replacements (it resolves overlapping findings). Its analyzer gets a
  *blank* spaCy pipeline per language (``spacy.blank``: a tokenizer, no model), so it never
  downloads anything; every recognizer here is a pattern or ``phonenumbers`` one that
  needs no NER model.
* **phonenumbers** finds phone numbers (Presidio's ``PhoneRecognizer``), with region CN
  for Chinese mobile and landline numbers.
* **python-stdnum** validates: ``stdnum.cn.ric`` (GB 11643 checksum, birth date, region)
  for resident IDs, ``stdnum.luhn`` for cards, so a look-alike number is left alone.
* **cn2an** turns Chinese numerals into digits.

Presidio has no Chinese recognizers, and its e-mail and card patterns anchor on ``\\b``,
which never matches between a Chinese character and a digit or letter (both are word
characters), so "卡号6222..." would slip through: the e-mail, card and ID recognizers
here use digit/letter look-arounds instead and serve both languages.

Speech recognition writes digits as words ("four one one one", "幺三八 幺二三四").
Before detection those runs become digits (:func:`normalise_digits`); every character of
the normalised text remembers the span of the original it came from, so a finding maps
back and the replacement is made in the *original* text (a value read partly in words is
replaced whole, from its first to its last word).

Speed: a text with too few digits for any enabled entity (and no ``@`` when e-mail is
enabled) cannot hold one and skips the analyzer; that is most utterances.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from .._base import ClusterView
from ._language import CJK

_TOKEN = re.compile(r"<([A-Z][A-Z_]*)>")  # what redact() puts in place of a value

#: Every entity :class:`Redactor` knows; the default set is the first four.
ENTITIES = ("PHONE", "EMAIL", "CARD", "CN_ID", "IBAN", "IP", "US_SSN")
DEFAULT_ENTITIES = ("PHONE", "EMAIL", "CARD", "CN_ID")
LANGUAGES = ("auto", "en", "zh")
#: Fewest digits a value of each entity has: a text with fewer cannot hold one.
_MIN_DIGITS = {"PHONE": 7, "EMAIL": 0, "CARD": 12, "CN_ID": 17, "IBAN": 8, "IP": 4, "US_SSN": 9}
#: Phone regions tried per language (phonenumbers region codes).
PHONE_REGIONS = {"en": ("US", "GB", "CN", "IN", "CA", "AU", "DE", "FR"), "zh": ("CN", "HK", "TW")}
_SCORE_THRESHOLD = 0.3


def token(entity: str) -> str:
    """The replacement written for ``entity``: ``<PHONE>``, ``<CN_ID>``, ..."""
    return f"<{entity}>"


# --- spoken digits -----------------------------------------------------------------------

_EN_DIGITS = {"zero": "0", "oh": "0", "o": "0", "nought": "0", "one": "1", "two": "2",
              "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8",
              "nine": "9"}
_EN_REPEAT = {"double": 2, "triple": 3}
_EN_WORD = "|".join(sorted([*_EN_DIGITS, *_EN_REPEAT], key=len, reverse=True))
# One run: digit words or digit groups, separated by spaces, commas, dots or hyphens.
_EN_TOKEN = rf"(?:\b(?:{_EN_WORD})\b|\d+)"
_EN_RUN = re.compile(rf"{_EN_TOKEN}(?:[\s,.\-]+{_EN_TOKEN})+", re.IGNORECASE)
_EN_PIECE = re.compile(rf"\b(?:{_EN_WORD})\b|\d+", re.IGNORECASE)
# Chinese numerals as ASR writes them: 幺 for 1 and 两 for 2 (on the phone), 〇/零 for 0.
_ZH_NUMERALS = "零〇一二三四五六七八九幺两十百千万"
_ZH_RUN = re.compile(rf"[{_ZH_NUMERALS}0-9]{{3,}}[叉xX]?")
_ZH_DIGIT = {c: str(i) for i, c in enumerate("零一二三四五六七八九")} | {"〇": "0", "幺": "1", "两": "2"}


def _en_run(run: str) -> list[tuple[str, int, int]] | None:
    """(digits, start, end) per word of an English run, or None if it is not a number read out."""
    pieces: list[tuple[str, int, int]] = []
    repeat, start, words = 1, 0, 0
    for m in _EN_PIECE.finditer(run):
        word = m.group().lower()
        if word in _EN_REPEAT:
            repeat, start = _EN_REPEAT[word], m.start()
            continue
        pieces.append((_EN_DIGITS.get(word, word) * repeat, start if repeat > 1 else m.start(), m.end()))
        words += word in _EN_DIGITS and word not in ("oh", "o")
        repeat = 1
    # "oh" alone is an interjection and two words are no number worth a look. Runs of
    # written digits are left to the recognizers (they read "010-6234 5678" themselves,
    # and joining "010-88545022,010-88545360" would make two numbers one), except digits
    # spaced one by one as ASR writes them ("1 3 8 1 2 ...").
    if sum(len(p[0]) for p in pieces) < 3:
        return None
    if not words and not (len(pieces) >= 3 and all(len(p[0]) == 1 for p in pieces)):
        return None
    return pieces


def _zh_run(run: str) -> str:
    """Digits for a Chinese numeral run: digit by digit when it has no units, else cn2an."""
    tail = ""
    if run[-1] in "叉xX":
        run, tail = run[:-1], "X"
    if not any(c in "十百千万" for c in run):
        return "".join(_ZH_DIGIT.get(c, c) for c in run) + tail
    import cn2an

    try:
        return str(cn2an.transform(run, "cn2an")) + tail
    except (ValueError, KeyError, IndexError):  # cn2an raises on odd mixtures; keep them
        return run + tail


def normalise_digits(text: str) -> tuple[str, list[tuple[int, int]]]:
    """``text`` with spoken digit runs written as digits, and for each character of the
    result the ``(start, end)`` span of ``text`` it stands for.

    English runs of digit words ("four one one", "oh", "double five") and spaced digits
    become one digit string; Chinese numeral runs of three or more characters (幺, 两, 〇
    and 零 included; a trailing 叉 read as the ID check letter X) become digits.
    """
    out: list[str] = []
    spans: list[tuple[int, int]] = []
    cursor = 0
    edits: list[tuple[int, int, list[tuple[str, int, int]]]] = []
    for m in _EN_RUN.finditer(text):
        pieces = _en_run(m.group())
        if pieces:
            edits.append((m.start(), m.end(), [(d, m.start() + s, m.start() + e) for d, s, e in pieces]))
    for m in _ZH_RUN.finditer(text):
        if not any(c in _ZH_NUMERALS for c in m.group()):
            continue
        if any(s < m.end() and m.start() < e for s, e, _ in edits):
            continue
        digits = _zh_run(m.group())
        if len(digits) == m.end() - m.start():  # digit by digit: exact, character for character
            pieces = [(d, m.start() + i, m.start() + i + 1) for i, d in enumerate(digits)]
        else:
            pieces = [(digits, m.start(), m.end())]
        edits.append((m.start(), m.end(), pieces))
    for start, end, pieces in sorted(edits):
        for i in range(cursor, start):
            out.append(text[i])
            spans.append((i, i + 1))
        for digits, s, e in pieces:
            out.extend(digits)
            spans.extend([(s, e)] * len(digits))
        cursor = end
    for i in range(cursor, len(text)):
        out.append(text[i])
        spans.append((i, i + 1))
    return "".join(out), spans


# --- recognizers ------------------------------------------------------------------------

def _recognizers(entities: Sequence[str], language: str) -> list:
    """Presidio recognizers for ``entities`` in ``language``; entity names are ours."""
    from presidio_analyzer import Pattern, PatternRecognizer
    from presidio_analyzer.predefined_recognizers import (
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UsSsnRecognizer,
    )
    from stdnum import luhn
    from stdnum.cn import ric

    class CardRecognizer(PatternRecognizer):
        """13-19 digit card numbers (UnionPay 62.. included), Luhn-checked with stdnum."""

        def validate_result(self, pattern_text: str) -> bool:
            digits = re.sub(r"[\s-]", "", pattern_text)
            # An 18-digit value that is a valid resident ID is reported as CN_ID.
            return luhn.is_valid(digits) and not ("CN_ID" in entities and ric.is_valid(digits))

    class ChineseIdRecognizer(PatternRecognizer):
        """Resident identity numbers (GB 11643): 17 digits and a check digit or X."""

        def validate_result(self, pattern_text: str) -> bool:
            return ric.is_valid(re.sub(r"\s", "", pattern_text))

    build = {
        "PHONE": lambda: PhoneRecognizer(
            supported_language=language, supported_entity="PHONE",
            supported_regions=PHONE_REGIONS[language],
            context=["phone", "call", "mobile", "number", "电话", "手机", "号码", "座机"]),
        "EMAIL": lambda: PatternRecognizer(
            supported_entity="EMAIL", supported_language=language, name="EmailRecognizer",
            patterns=[Pattern("email", r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+"
                                       r"@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,24}"
                                       r"(?![A-Za-z0-9\-])", 0.9)]),
        "CARD": lambda: CardRecognizer(
            supported_entity="CARD", supported_language=language, name="CardRecognizer",
            patterns=[Pattern("card", r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])", 0.3)]),
        "CN_ID": lambda: ChineseIdRecognizer(
            supported_entity="CN_ID", supported_language=language, name="ChineseIdRecognizer",
            patterns=[Pattern("ric", r"(?<!\d)\d{6}\s?\d{8}\s?\d{3}[\dXx](?![\dA-Za-z])", 0.3)]),
        "IBAN": lambda: IbanRecognizer(supported_language=language, supported_entity="IBAN"),
        "IP": lambda: IpRecognizer(supported_language=language, supported_entity="IP"),
        "US_SSN": lambda: UsSsnRecognizer(supported_language=language, supported_entity="US_SSN"),
    }
    return [build[e]() for e in entities]


class _BlankSpacyEngine:
    """Presidio's spaCy engine on ``spacy.blank`` pipelines: tokens only, nothing to download."""

    @staticmethod
    def create(languages: Sequence[str]):
        import spacy
        from presidio_analyzer.nlp_engine import SpacyNlpEngine

        class BlankSpacyNlpEngine(SpacyNlpEngine):
            def load(self) -> None:
                self.nlp = {m["lang_code"]: spacy.blank(m["lang_code"]) for m in self.models}

        engine = BlankSpacyNlpEngine(models=[{"lang_code": lang, "model_name": f"blank:{lang}"}
                                             for lang in languages])
        engine.load()
        return engine


class Redactor:
    """Replace phone numbers, e-mails, payment cards, Chinese IDs (...) with tokens.

    ``entities``: which of :data:`ENTITIES` to redact. ``language``: ``auto`` picks ``zh``
    for a text with Chinese characters, else ``en`` (it decides the phone regions tried).
    ``normalise_spoken_digits``: read digit words before detection (see
    :func:`normalise_digits`). Presidio is built on first use, so constructing a Redactor
    is free; ``stats`` counts replacements by entity since construction (thread-safe),
    and ``on_redact(entity, n)``, when given, hears of each text's replacements as they
    happen (the service counts them in a metric; ``dialin.models`` imports no Prometheus).
    """

    def __init__(self, entities: Sequence[str] = DEFAULT_ENTITIES, language: str = "auto",
                 normalise_spoken_digits: bool = True,
                 on_redact: Callable[[str, int], None] | None = None) -> None:
        self.entities = entities
        self.language = language
        self.normalise_spoken_digits = normalise_spoken_digits
        self.on_redact = on_redact

    @property
    def stats(self) -> Counter:
        """Replacements made so far, by entity (a copy)."""
        with self._guard():
            return Counter(getattr(self, "_stats", {}))

    def _guard(self) -> threading.Lock:
        return self.__dict__.setdefault("_lock", threading.Lock())

    def _validate(self) -> tuple[str, ...]:
        if isinstance(self.entities, str):
            raise ValueError(f"entities must be a list of names, got the string {self.entities!r}")
        entities = tuple(str(e).upper() for e in self.entities)
        unknown = sorted(set(entities) - set(ENTITIES))
        if unknown:
            raise ValueError(f"unknown PII entities {unknown}; expected some of {list(ENTITIES)}")
        if self.language not in LANGUAGES:
            raise ValueError(f"language must be one of {LANGUAGES}, got {self.language!r}")
        return entities

    def _engines(self) -> tuple[Any, Any]:
        with self._guard():
            if getattr(self, "_analyzer", None) is None:
                entities = self._validate()
                from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
                from presidio_anonymizer import AnonymizerEngine

                languages = ["en", "zh"] if self.language == "auto" else [self.language]
                registry = RecognizerRegistry(supported_languages=languages)
                for lang in languages:
                    for recognizer in _recognizers(entities, lang):
                        registry.add_recognizer(recognizer)
                self._analyzer = AnalyzerEngine(registry=registry, supported_languages=languages,
                                                nlp_engine=_BlankSpacyEngine.create(languages))
                self._anonymizer = AnonymizerEngine()
                self._entities = list(entities)
                digits = [_MIN_DIGITS[e] for e in entities if e != "EMAIL"]
                self._min_digits = min(digits) if digits else None
                self._stats = Counter()
            return self._analyzer, self._anonymizer

    def _could_hold(self, text: str) -> bool:
        if "EMAIL" in self._entities and "@" in text:
            return True
        return self._min_digits is not None and sum(c.isdigit() for c in text) >= self._min_digits

    def redact(self, text: str) -> str:
        """``text`` with every found value replaced by its token (``<PHONE>``, ...)."""
        analyzer, anonymizer = self._engines()
        if not isinstance(text, str):
            raise TypeError(f"redact() takes a str, got {type(text).__name__}")
        if self.normalise_spoken_digits:
            normal, spans = normalise_digits(text)
        else:
            normal, spans = text, [(i, i + 1) for i in range(len(text))]
        if not self._could_hold(normal):
            return text
        language = self.language
        if language == "auto":
            language = "zh" if CJK.search(normal) else "en"
        found = analyzer.analyze(normal, language=language, entities=self._entities,
                                 score_threshold=_SCORE_THRESHOLD)
        if not found:
            return text
        from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

        mapped = [RecognizerResult(r.entity_type, spans[r.start][0], spans[r.end - 1][1], r.score)
                  for r in found]
        operators = {e: OperatorConfig("replace", {"new_value": token(e)}) for e in self._entities}
        result = anonymizer.anonymize(text=text, analyzer_results=mapped, operators=operators)
        counts = Counter(item.entity_type for item in result.items)
        with self._guard():
            self._stats.update(counts)
        if self.on_redact is not None:
            for entity, n in counts.items():
                self.on_redact(entity, n)
        return result.text

    def redact_many(self, texts: Iterable[str]) -> list[str]:
        """:meth:`redact` for each text, in order."""
        return [self.redact(t) for t in texts]

    def redact_label(self, label: str) -> str:
        """``label`` with any value replaced by its entity's name (``report-phone``).

        Labels are published too, and a namer can lift a value into one (a keyword
        namer picks a number that recurs in a cluster; an LLM may echo it). Names, not
        ``<PHONE>`` tokens, keep the label in its action-objective form. Action and
        objective are redacted apart: a value glued to the hyphen is missed otherwise.
        """
        return "-".join(_TOKEN.sub(lambda m: m.group(1).lower(), self.redact(part))
                        for part in label.split("-", 1))

    def __getstate__(self) -> dict:
        # Engines and locks do not pickle or copy: a copy builds its own on first use.
        return {k: v for k, v in self.__dict__.items()
                if k not in ("_analyzer", "_anonymizer", "_lock", "_stats")}


def redact_view(redactor: Redactor | None, view: ClusterView) -> ClusterView:
    """``view`` with its sampled texts (and union parts) redacted; unchanged without a redactor.

    The LLM backends call this on every view just before building a prompt, so only the
    prompt sees redacted text: cache keys and members stay those of the real cluster.
    """
    if redactor is None:
        return view
    return replace(view, texts=tuple(redactor.redact_many(view.texts)),
                   parts=tuple(tuple(redactor.redact_many(p)) for p in view.parts))
