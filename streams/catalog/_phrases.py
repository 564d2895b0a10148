"""Training phrases of an exported intent: its examples, PII-redacted, de-duplicated, capped.

Why one place: every export format (and the ``dialin`` backup) must say the same thing
about PII, and a phrase that a platform would read as markup must be neutralised the
same way each time. The pipeline, in order:

1. redact with the service's redactor (:func:`dialin.streams.factory.build_redactor`;
   examples the leader published are redacted already, and redacting twice is a no-op);
2. fold whitespace (a newline would end a Rasa example; a platform's UI shows one line);
3. neutralise the platform's markup: Rasa reads ``[text](entity)`` as an entity
   annotation, Lex ``{Name}`` as a slot reference, so square brackets (Rasa) and curly
   braces (Lex) become parentheses;
4. drop empty phrases and duplicates (compared case-insensitively after 1-3), keeping the
   first, then keep at most ``limit``.

Library: the standard library only; the redactor is :class:`dialin.models.Redactor`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from dialin.models import Redactor

#: Examples an intent update carries at most (``IntentUpdate.examples``): what the catalog
#: keeps per intent, and the default cap of an export.
PUBLISHED_EXAMPLES = 10

#: Per-platform markup neutralisation (step 3 above).
MARKUP: dict[str, Callable[[str], str]] = {
    "rasa": lambda text: text.replace("[", "(").replace("]", ")"),
    "lex-v2": lambda text: text.replace("{", "(").replace("}", ")"),
}


def training_phrases(examples: Iterable[str], *, redactor: Redactor | None, limit: int,
                     platform: str | None = None) -> list[str]:
    """The phrases to export for one intent (see the module docstring for the steps)."""
    texts = [str(t) for t in examples]
    if redactor is not None:
        texts = redactor.redact_many(texts)
    fix = MARKUP.get(platform or "", lambda text: text)
    out: list[str] = []
    seen: set[str] = set()
    for text in texts:
        phrase = fix(" ".join(text.split()))
        key = phrase.casefold()
        if not phrase or key in seen:
            continue
        seen.add(key)
        out.append(phrase)
        if len(out) >= limit:
            break
    return out
