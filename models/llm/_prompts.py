"""The paper's Appendix B prompts as editable files, how utterances go in, how answers come out.

One module serves every LLM backend (HTTP and in-process vLLM), so a prompt, the way the
data is quoted into it and the strict parsers of what comes back exist once.

* Prompts live in ``models/prompts/<task>_<language>.txt`` (task judge|name|prune,
  language en|zh): a ``version:`` line, then ``[system]``, ``[user]`` (and for the judge
  ``[user_union]``) sections with ``{{placeholder}}`` slots. Users may copy the folder,
  edit it and pass ``prompt_dir``. :data:`PROMPT_VERSION` hashes the packaged files so
  outputs can record which prompts made them.
* Utterances are data, never instructions: each is JSON-quoted on a numbered line inside
  ``<utterances>`` tags, with ``<`` and ``>`` escaped so no utterance can close the tag,
  and every placeholder is filled in one pass so an utterance cannot smuggle in another.
* Parsers are strict: an answer that is not exactly Good/Bad, a well-formed label, or a
  JSON list of integers is ``None`` (invalid), never a guess.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .._base import BAD, GOOD, ClusterView
from ..text._language import detect_language

PROMPT_DIR = Path(__file__).parent.parent / "prompts"
TASKS = ("judge", "name", "prune")
LANGUAGES = ("en", "zh")
#: Longest utterance shown to an LLM, in characters; longer ones are cut (a prompt's size
#: must stay bounded whatever a transcription produced).
MAX_UTTERANCE_CHARS = 400

_SECTION = re.compile(r"^\[(system|user|user_union)\]\s*$")
_SLOT = re.compile(r"\{\{(\w+)\}\}")

#: The judge's answer set, for guided choice.
JUDGE_CHOICES = [GOOD, BAD]
#: An "action-objective" label: two sides of 1-40 word characters (letters, digits, CJK,
#: underscore) joined by one hyphen. vLLM's guided regex takes this same pattern.
LABEL_REGEX = r"[0-9A-Za-z_\u3400-\u4dbf\u4e00-\u9fff]{1,40}-[0-9A-Za-z_\u3400-\u4dbf\u4e00-\u9fff]{1,40}"
_LABEL = re.compile(r"[^\W-]{1,40}-[^\W-]{1,40}")
#: Longest raw answer still considered a label (before spaces become underscores).
MAX_LABEL_CHARS = 60
#: Pruner answers: a JSON list of integers.
COUNTS_SCHEMA = {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 20}


class PromptError(ValueError):
    """A prompt file is missing or malformed."""


@dataclass(frozen=True)
class PromptTemplate:
    """One parsed prompt file."""

    task: str
    language: str
    version: str
    sections: Mapping[str, str]
    path: str

    def messages(self, section: str = "user", **slots: str) -> list[dict]:
        """Chat messages: the system text, then ``section`` with its slots filled in one pass."""
        if section not in self.sections:
            raise PromptError(f"{self.path} has no [{section}] section")

        def fill(match: re.Match) -> str:
            name = match.group(1)
            if name not in slots:
                raise PromptError(f"{self.path}: no value for {{{{{name}}}}}")
            return str(slots[name])

        user = _SLOT.sub(fill, self.sections[section])
        return [{"role": "system", "content": self.sections["system"]},
                {"role": "user", "content": user}]


def _parse_prompt(text: str, task: str, language: str, path: str) -> PromptTemplate:
    version = None
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        m = _SECTION.match(line)
        if m:
            current = sections.setdefault(m.group(1), [])
        elif current is not None:
            current.append(line)
        elif line.startswith("version:"):
            version = line.split(":", 1)[1].strip()
        elif line.strip() and not line.startswith("#"):
            raise PromptError(f"{path}: text before the first [section]: {line[:40]!r}")
    if not version:
        raise PromptError(f"{path}: missing 'version:' line")
    for need in ("system", "user"):
        if need not in sections:
            raise PromptError(f"{path}: missing [{need}] section")
    body = {k: "\n".join(v).strip() for k, v in sections.items()}
    return PromptTemplate(task=task, language=language, version=version, sections=body, path=path)


@lru_cache(maxsize=64)
def _load(task: str, language: str, folder: str) -> PromptTemplate:
    path = Path(folder) / f"{task}_{language}.txt"
    if not path.is_file():
        raise PromptError(f"prompt file not found: {path}")
    return _parse_prompt(path.read_text(encoding="utf-8"), task, language, str(path))


def load_prompt(task: str, language: str, prompt_dir: str | Path | None = None) -> PromptTemplate:
    """The prompt for ``task`` in ``language`` from ``prompt_dir`` (default: the packaged ones)."""
    if task not in TASKS:
        raise PromptError(f"unknown prompt task {task!r}; expected one of {TASKS}")
    if language not in LANGUAGES:
        raise PromptError(f"unknown prompt language {language!r}; expected one of {LANGUAGES}")
    folder = Path(prompt_dir) if prompt_dir is not None else PROMPT_DIR
    return _load(task, language, str(folder.resolve()))


def prompt_version(prompt_dir: str | Path | None = None) -> str:
    """A short hash of every prompt file in ``prompt_dir``: what outputs record."""
    folder = Path(prompt_dir) if prompt_dir is not None else PROMPT_DIR
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.txt")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


#: Hash of the packaged prompt files.
PROMPT_VERSION = prompt_version()


def resolve_language(language: str, texts: Sequence[str]) -> str:
    """``auto`` picks by :func:`detect_language`; anything else must be a known language."""
    if language == "auto":
        return detect_language(texts)
    if language not in LANGUAGES:
        raise PromptError(f"unknown language {language!r}; expected auto or one of {LANGUAGES}")
    return language


def _quote(text: str) -> str:
    text = " ".join(str(text).split())[:MAX_UTTERANCE_CHARS]
    # JSON quoting escapes quotes, backslashes and control characters; escaping < and >
    # as well means no utterance can write the closing tag of the block it sits in.
    return json.dumps(text, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")


def utterance_block(texts: Sequence[str], group: str | None = None) -> str:
    """Numbered, JSON-quoted utterances inside ``<utterances>`` tags (``group`` A/B for unions)."""
    opening = "<utterances>" if group is None else f'<utterances group="{group}">'
    lines = [f"{i}. {_quote(t)}" for i, t in enumerate(texts, 1)]
    return "\n".join([opening, *lines, "</utterances>"])


def view_texts(view: ClusterView) -> tuple[str, ...]:
    """Every sampled text of a view, parts flattened when only parts were given."""
    if view.texts:
        return tuple(view.texts)
    return tuple(t for part in view.parts for t in part)


def template_for(task: str, language: str, prompt_dir: str | Path | None,
                 views: Sequence[ClusterView], prepared: str | None = None) -> PromptTemplate:
    """The prompt for a batch: ``prepared`` (the data set's language) wins under ``auto``."""
    if language == "auto" and prepared is not None:
        return load_prompt(task, prepared, prompt_dir)
    sample = [t for v in views for t in view_texts(v)]
    return load_prompt(task, resolve_language(language, sample), prompt_dir)


class PromptedMixin:
    """Prompt choice for backends with ``language`` and ``prompt_dir`` parameters."""

    def prepare(self, X, texts: Sequence[str]) -> None:
        """Pick the prompt language once from the whole data set (a small cluster could mislead)."""
        if texts is not None and len(texts):
            self._language = resolve_language(self.language, list(texts[:5000]))

    def _template(self, task: str, views: Sequence[ClusterView]) -> PromptTemplate:
        return template_for(task, self.language, self.prompt_dir, views,
                            getattr(self, "_language", None))


def judge_messages(template: PromptTemplate, view: ClusterView) -> list[dict]:
    """The judge's chat messages for one view: a union shows Group A and Group B apart."""
    if len(view.parts) >= 2:
        if "user_union" not in template.sections:
            raise PromptError(f"{template.path} has no [user_union] section for union questions")
        # More than two parts: the first against all the others together.
        first, rest = view.parts[0], tuple(t for part in view.parts[1:] for t in part)
        return template.messages("user_union", group_a=utterance_block(first, "A"),
                                 group_b=utterance_block(rest, "B"))
    return template.messages("user", utterances=utterance_block(view_texts(view)))


def name_messages(template: PromptTemplate, view: ClusterView) -> list[dict]:
    return template.messages("user", utterances=utterance_block(view_texts(view)))


_LOG_KEYS = ("iteration", "n_cluster", "good", "bad", "rate")


def prune_messages(template: PromptTemplate, log: Sequence[Mapping], n_remaining: int,
                   lo: int, hi: int, k: int) -> list[dict]:
    """The pruner's messages: the iteration log as one JSON object per line (Table 10's columns)."""
    lines = []
    for entry in log:
        row = {key: entry[key] for key in _LOG_KEYS if key in entry}
        if "n_cluster" not in row and "n_clusters" in entry:
            row["n_cluster"] = entry["n_clusters"]
        text = json.dumps(row, ensure_ascii=False, default=str)
        lines.append(text.replace("<", "\\u003c").replace(">", "\\u003e"))
    return template.messages("user", log="\n".join(lines), n_remaining=int(n_remaining),
                             lo=int(lo), hi=int(hi), k=int(k))


@dataclass(frozen=True)
class DecidedExample:
    """A cluster a person decided about: its (PII-redacted) examples, whether it was
    approved (``good``) or rejected, its label when approved, and its language."""

    texts: tuple[str, ...]
    good: bool
    label: str | None
    language: str


class DecidedExamples:
    """The clusters people decided about, most recent first, that the LLM judge and namer
    show as few-shot examples (``examples=`` of :class:`~dialin.models.LLMJudge`).

    The service refreshes it with :meth:`replace` as decisions are applied (the engine
    never reads Kafka); the judge and namer read it at every batch with :meth:`select`.
    ``limit`` examples at most are shown, only those in the prompt's language; the namer
    gets only approved ones whose label is a well-formed ``action-objective`` name.
    Thread-safe: one list swapped whole.
    """

    def __init__(self, limit: int = 6) -> None:
        self.limit = limit
        self._items: tuple[DecidedExample, ...] = ()

    def replace(self, examples: Sequence[DecidedExample]) -> None:
        """The decided clusters, most recent first."""
        self._items = tuple(examples)

    def __len__(self) -> int:
        return len(self._items)

    def select(self, task: str, language: str) -> list[DecidedExample]:
        """The examples a ``task`` prompt in ``language`` shows (most recent ``limit``)."""
        out = []
        for ex in self._items:
            if ex.language != language or not ex.texts:
                continue
            if task == "name" and (not ex.good or ex.label is None or parse_label(ex.label) is None):
                continue
            out.append(ex)
        return out[:max(0, self.limit)]


#: What introduces the decided examples in the system message, by prompt language.
_DECIDED_INTRO = {
    "en": "More examples, decided by a reviewer of this deployment (the same format):",
    "zh": "更多示例（由本部署的审核人员判定，格式相同）：",
}
#: Most utterances shown per decided example.
DECIDED_TEXTS = 5


def with_decided(messages: list[dict], task: str, language: str,
                 examples: Sequence[DecidedExample]) -> list[dict]:
    """``messages`` with ``examples`` appended to the system message as few-shot pairs:
    the utterances quoted as in the question, the output a judge (Good/Bad) or the namer
    (the label) should give. Utterances stay data: they are quoted like every other."""
    if not examples:
        return messages
    blocks = [_DECIDED_INTRO.get(language, _DECIDED_INTRO["en"])]
    for ex in examples:
        output = (GOOD if ex.good else BAD) if task == "judge" else str(ex.label)
        blocks.append(f"input:\n{utterance_block(ex.texts[:DECIDED_TEXTS])}\noutput: {output}")
    system = dict(messages[0], content=messages[0]["content"].rstrip() + "\n\n"
                  + "\n\n".join(blocks))
    return [system, *messages[1:]]


def response_key(model: str, task: str, messages: list[dict], repetition: int = 0) -> str:
    """What identifies an answer in a response cache: the model and the full prompt."""
    body = json.dumps([model, task, messages, repetition], ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()


# --- strict parsers -----------------------------------------------------------------

def _unwrap(text: str, key: str) -> str | None:
    """Plain answers pass through; a JSON answer (structured output) must be ``{key: str}``."""
    text = text.strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            return None
        if not isinstance(obj, dict) or set(obj) != {key} or not isinstance(obj[key], str):
            return None
        return obj[key].strip()
    return text


def _strip_quotes(text: str) -> str:
    text = text.strip()
    if text.endswith((".", "。")):
        text = text[:-1].rstrip()
    for quote in ('"', "'", "`", "“”", "「」"):
        left, right = (quote[0], quote[-1])
        if len(text) >= 2 and text[0] == left and text[-1] == right:
            text = text[1:-1].strip()
            break
    return text


def parse_verdict(text: str | None) -> bool | None:
    """True for Good, False for Bad, None for anything else (case-insensitive, quotes and a
    final period allowed; ``{"verdict": "Good"}`` from a JSON-schema answer too)."""
    if text is None:
        return None
    inner = _unwrap(text, "verdict")
    if inner is None:
        return None
    word = _strip_quotes(inner).lower()
    if word == GOOD.lower():
        return True
    if word == BAD.lower():
        return False
    return None


def parse_label(text: str | None) -> str | None:
    """A clean ``action-objective`` label, or None.

    Accepts one line of at most :data:`MAX_LABEL_CHARS` characters, quotes and a final
    period stripped; English is lower-cased and the spaces of a few words become
    underscores ("Inquire - card arrival" is read as ``inquire-card_arrival``). Anything
    else (prose, several lines, several hyphens) is invalid rather than trimmed to fit.
    """
    if text is None:
        return None
    inner = _unwrap(text, "label")
    if inner is None or "\n" in inner.strip() or len(inner.strip()) > MAX_LABEL_CHARS:
        return None
    label = _strip_quotes(inner)
    if label.count("-") != 1:
        return None
    sides = []
    for side in label.split("-"):
        words = side.split()
        if not words or len(words) > 4:
            return None
        sides.append("_".join(words).lower())
    label = "-".join(sides)
    return label if _LABEL.fullmatch(label) else None


def parse_counts(text: str | None, lo: int, hi: int, k: int) -> list[int]:
    """Up to ``k`` distinct integers in ``[lo, hi]`` from a JSON list (or ``{"counts": [...]}``).

    An answer that is not such JSON gives ``[]``; entries out of range or not integers are
    dropped one by one, so a partly good answer still helps.
    """
    if text is None:
        return []
    try:
        obj = json.loads(text.strip())
    except ValueError:
        return []
    if isinstance(obj, dict) and set(obj) == {"counts"}:
        obj = obj["counts"]
    if not isinstance(obj, list):
        return []
    out: list[int] = []
    for item in obj:
        if isinstance(item, bool) or not isinstance(item, int | float):
            continue
        if isinstance(item, float) and not item.is_integer():
            continue
        value = int(item)
        if lo <= value <= hi and value not in out:
            out.append(value)
    return out[:k]


def _norm_token(token: str) -> str:
    return token.strip().strip("\"'`{}:").strip().lower()


def p_good(tokens: Sequence[tuple[str, Mapping[str, float]]]) -> float | None:
    """P(Good) from logprobs, normalised over Good and Bad.

    ``tokens`` is the answer as (chosen token, {alternative token: logprob}) pairs. The
    first position whose chosen token starts "good" or "bad" (after quotes, so a JSON
    answer works too) is read; returns None when no such position or no mass on either.
    """
    for chosen, alternatives in tokens:
        word = _norm_token(chosen)
        if not word or not ("good".startswith(word) or "bad".startswith(word)):
            continue
        good = bad = 0.0
        for token, logprob in alternatives.items():
            alt = _norm_token(token)
            if not alt or logprob is None or not math.isfinite(logprob):
                continue
            if "good".startswith(alt):
                good += math.exp(logprob)
            elif "bad".startswith(alt):
                bad += math.exp(logprob)
        if good + bad <= 0.0:
            return None
        return good / (good + bad)
    return None


def structured_choice(task: str) -> dict:
    """vLLM's ``structured_outputs`` options for ``task`` (``extra_body`` or SamplingParams)."""
    if task == "judge":
        return {"choice": list(JUDGE_CHOICES)}
    if task == "name":
        return {"regex": LABEL_REGEX}
    return {"json": COUNTS_SCHEMA}


def json_schema_format(task: str) -> dict:
    """OpenAI ``response_format`` for ``task``: an object with one constrained field."""
    if task == "judge":
        prop, field = {"type": "string", "enum": list(JUDGE_CHOICES)}, "verdict"
    elif task == "name":
        prop, field = {"type": "string", "pattern": f"^{LABEL_REGEX}$"}, "label"
    else:
        prop, field = COUNTS_SCHEMA, "counts"
    schema = {"type": "object", "properties": {field: prop}, "required": [field],
              "additionalProperties": False}
    return {"type": "json_schema", "json_schema": {"name": f"dialin_{task}", "strict": True,
                                                   "schema": schema}}
