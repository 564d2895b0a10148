"""The one language helper: what counts as CJK, and the keyword namer's head-only rule."""

from __future__ import annotations

import pytest

from dialin.models import KeywordNamer, detect_language
from dialin.models.text._language import detect_language_from_head

ENGLISH = ["How do I top up my card?"] * 2000
CHINESE = ["我想咨询一下企业财产保险"] * 3000


@pytest.mark.parametrize("ideograph", ["\u3400", "\u4e00", "\u9fff", "\uf900"])
def test_every_range_of_the_character_class_counts_as_chinese(ideograph):
    assert detect_language([ideograph * 3 + " ok"]) == "zh"


def test_the_head_variant_reads_only_the_first_texts():
    assert detect_language(ENGLISH + CHINESE) == "zh"
    assert detect_language_from_head(ENGLISH + CHINESE) == "en"
    assert detect_language_from_head(iter(ENGLISH[:5] + CHINESE)) == "zh"
    assert detect_language_from_head([]) == detect_language([]) == "en"


def test_the_keyword_namer_picks_its_language_from_the_head():
    namer = KeywordNamer()
    namer.prepare(None, ENGLISH + CHINESE)
    assert namer.lang_ == "en"
