"""English or Chinese: one CJK character class and one rule for the whole engine.

The keyword namer, the LLM prompts and the PII redactor each pick English or Chinese
resources (trigger lexicons and jieba, prompt files, phone regions). They share the
character class and the share rule here, so they agree on what counts as Chinese.
Standard library only (``re``, ``itertools``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from itertools import islice

#: Code-point ranges of the CJK ideographs: Extension A, the Unified Ideographs and the
#: Compatibility Ideographs (for building other character classes).
CJK_RANGES = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
#: One CJK ideograph.
CJK = re.compile(f"[{CJK_RANGES}]")
#: Texts :func:`detect_language_from_head` reads.
HEAD_TEXTS = 2000


def detect_language(texts: Sequence[str], threshold: float = 0.2) -> str:
    """``zh`` when at least ``threshold`` of the non-space characters are CJK, else ``en``."""
    total = cjk = 0
    for text in texts:
        total += sum(1 for ch in text if not ch.isspace())
        cjk += len(CJK.findall(text))
    return "zh" if total and cjk / total >= threshold else "en"


def detect_language_from_head(texts: Iterable[str], head: int = HEAD_TEXTS) -> str:
    """:func:`detect_language` of the first ``head`` texts only.

    The keyword namer's rule: a whole data set is one language, and its first
    texts tell which in bounded time however large it is.
    """
    return detect_language(list(islice(texts, head)))
