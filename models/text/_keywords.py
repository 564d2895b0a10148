"""The lexicons and tokenizers of "action-objective" intent labels.

An intent label reads ``action-objective`` ("inquire-card_arrival", "询问-餐馆"). The
action comes from small trigger lexicons (English regular expressions, Chinese trigger
words, in priority order); which actions a customer takes and which an agent takes tells
the two roles apart. The objective comes from keywords: the tokenizers and stop lists
here feed scikit-learn's ``TfidfVectorizer``, Chinese words segmented by ``jieba``.
English keywords are lemmatised with ``simplemma`` (offline: its word lists ship in the
package), and :func:`same_stem` tells when two keywords say the same thing. The keyword
namer (:mod:`dialin.models.judges`) and role inference (:mod:`dialin.models.cluster`)
both read them from here.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache, partial
from typing import TYPE_CHECKING

from ._language import CJK, CJK_RANGES

if TYPE_CHECKING:
    from sklearn.feature_extraction.text import TfidfVectorizer

_ASK_NOT_REQUEST = r"(?!know|ask|find|understand|check|see|learn)"
_REQUEST = rf"(?:please|i (?:want|need|would like|'d like|wish) to {_ASK_NOT_REQUEST}|i'd like to {_ASK_NOT_REQUEST}|help me(?: to)?|can you|could you)"

#: English triggers, in priority order: a text takes the first action that matches.
ENGLISH_TRIGGERS: tuple[tuple[str, str], ...] = (
    ("complain", r"\b(?:complain\w*|unacceptable|terrible|ridiculous|awful|frustrat\w*|angry|upset|disappointed)\b"),
    ("report", r"\b(?:not working|(?:does|is|wo|did)n'?t (?:work|arrive)\w*|stopped working|(?:has|have)n'?t (?:arrived|come|shown|gone|been|received|got)"
               r"|(?:has|have) not (?:arrived|come|received)|still (?:pending|waiting|not)|wrong|declined|rejected|failed|stolen|lost|missing"
               r"|problem|issue|error|twice|broken|stuck|blocked|frozen|(?:was|been|got) cancel+ed)\b"),
    ("cancel", r"\b(?:cancel|terminate|unsubscribe|close (?:my )?account|delete (?:my )?account)\b"),
    ("activate", rf"{_REQUEST} activate\b"),
    ("verify", rf"{_REQUEST} (?:verify|confirm my identity)\b"),
    ("transfer", rf"{_REQUEST} (?:transfer|send money)\b"),
    ("change", rf"{_REQUEST} (?:change|update|edit|modify|reset)\b"),
    ("request", rf"^(?:{_REQUEST}|i (?:want|need|would like)\b|give me|send me)"),
    ("inquire", r"\?|^(?:how|what|why|when|where|which|who|whom|whose|is|are|was|were|can|could|do|does|did|will|would|should|has|have|am|may)\b"
                r"|\b(?:i (?:want|need|would like) to (?:know|ask|find out|understand))\b|\bwonder"),
    ("recommend", r"\b(?:i (?:recommend|suggest)|we (?:recommend|suggest)|you (?:could|might|should) try)\b"),
    ("answer", r"\b(?:you can|you will|you'll|you need to|you have to|it (?:takes|will take)|we (?:will|can|do))\b"),
    ("provide", r"\b(?:here is|here's|my (?:name|number|address|email|phone|account) is)\b"),
    ("thank", r"\bthank"),
    ("confirm", r"^(?:yes|yeah|yep|correct|right|sure|ok|okay|confirmed|that's right)\b|\bconfirm"),
    ("greet", r"^(?:hi|hello|hey|good (?:morning|afternoon|evening))\b"),
)

#: Chinese triggers, in priority order (customer and agent turns of service calls).
CHINESE_TRIGGERS: tuple[tuple[str, str], ...] = (
    ("投诉", r"投诉|太差|不满意|差劲|生气"),
    ("取消", r"取消|退订|注销|退掉"),
    ("要求", r"(?:给我|帮我|请|麻烦|能不能).{0,4}推荐"),
    ("推荐", r"推荐您|为您推荐|推荐你|建议您|您可以去|你可以去"),
    ("询问", r"请问|吗|什么|多少|怎么|哪|几[点号天位星钱]|是否|有没有|[？?]"),
    ("要求", r"我想|我要|帮我|请给|给我|麻烦|需要|请帮"),
    ("办理", r"办理|开通|预订|预定|申请"),
    ("提供", r"为您|查到|有以下|分别是|推荐菜(?:有|是)|^也?提供|(?:电话|地址|名称|价格|营业时间|评分|时间|车型|车牌)(?:是|在|：|:)|(?:周边|附近)\S{0,4}有|是\d"),
    ("解答", r"您可以|你可以|可以的|不需要|不可以|不能|抱歉|没有符合|^没[有事]"),
    ("感谢", r"谢谢|感谢|多谢"),
    ("确认", r"^(?:是的|对的|对|没错|好的|嗯|确认|可以)"),
    ("问候", r"你好|您好|再见|客气|不用谢"),
)

#: Canonical actions that mark a customer's turn / an agent's turn (role inference).
CUSTOMER_ACTIONS = frozenset({"inquire", "request", "report", "cancel", "complain", "activate", "verify",
                              "transfer", "change", "询问", "要求", "投诉", "取消", "办理"})
AGENT_ACTIONS = frozenset({"answer", "provide", "recommend", "confirm", "解答", "提供", "推荐", "确认"})
ALL_ACTIONS = frozenset(a for a, _ in ENGLISH_TRIGGERS + CHINESE_TRIGGERS)

_EN_RULES = tuple((a, re.compile(p)) for a, p in ENGLISH_TRIGGERS)
_ZH_RULES = tuple((a, re.compile(p)) for a, p in CHINESE_TRIGGERS)
_EN_PRIORITY = {a: i for i, (a, _) in enumerate(reversed(ENGLISH_TRIGGERS))}
_ZH_PRIORITY = {a: i for i, (a, _) in enumerate(reversed(CHINESE_TRIGGERS))}

_EN_EXTRA_STOP = {"want", "need", "like", "please", "thanks", "thank", "hi", "hello", "hey", "help", "know",
                  "tell", "does", "did", "just", "got", "ve", "don", "doesn", "isn", "haven", "hasn", "didn",
                  "won", "ll", "im", "ok", "okay", "yes", "able", "possible", "way", "wondering", "let"}
# Lemmas that name no intent ("report-think_card_stolen"); matched on the lemma, so
# "tried", "tries" and "trying" go with "try".
_EN_VAGUE = frozenset({"think", "try", "come", "make", "mean", "seem", "really"})
# Content words that scikit-learn's English stop list drops but service calls need.
_EN_KEEP = {"amount", "back", "bill", "call", "detail", "empty", "fill", "fire", "front", "full",
            "interest", "move", "name", "system", "top"}
_ZH_STOP = {"请问", "什么", "多少", "怎么", "怎么样", "可以", "一下", "一个", "这个", "那个", "这家", "那家",
            "哪些", "哪个", "哪里", "哪家", "你好", "您好", "谢谢", "感谢", "好的", "是的", "没有", "有没有",
            "知道", "需要", "我们", "你们", "他们", "我想", "想要", "帮我", "麻烦", "推荐", "为您", "给我",
            "还有", "就是", "如果", "然后", "因为", "所以", "不是", "已经", "还是", "或者", "比较", "的话",
            "一家", "一些", "地方", "不客气", "再见", "告诉", "那么", "这里", "那里", "其他", "时候", "是否",
            "查到", "以下", "分别", "您可以", "你可以", "建议", "不用", "非常", "现在", "为了",
            "客气", "不用谢", "非常感谢", "记好", "当然", "抱歉", "没问题", "放心"}
_ZH_TOKEN = re.compile(rf"^[{CJK_RANGES}A-Za-z]{{2,}}$")
_EN_TOKEN = re.compile(r"(?u)\b[a-zA-Z][a-zA-Z]+\b")


def action_of(label: str) -> str | None:
    """The canonical action of an ``action-objective`` label, or None if it has none."""
    head = str(label).strip().split("-", 1)[0].strip().lower()
    return head if head in ALL_ACTIONS else None


def dominant_action(texts: Sequence[str], language: str) -> str | None:
    """The action most of ``texts`` trigger (each text votes for its first matching
    trigger; a tie goes to the trigger listed first), or None if none triggers any."""
    rules, priority = (_ZH_RULES, _ZH_PRIORITY) if language == "zh" else (_EN_RULES, _EN_PRIORITY)
    counts: Counter[str] = Counter()
    for text in texts:
        low = text.strip().lower()
        for action, rule in rules:
            if rule.search(low):
                counts[action] += 1
                break
    if not counts:
        return None
    return max(counts, key=lambda a: (counts[a], priority[a]))


@lru_cache(maxsize=1 << 16)
def _lemma(word: str) -> str:
    try:
        import simplemma
    except ImportError:  # a core dependency; say what is missing rather than a bare trace
        raise ImportError("the keyword namer lemmatises English with simplemma: pip install simplemma") from None
    return simplemma.lemmatize(word, lang="en").lower()  # it capitalises names: "Europe"


def _english_stop() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset((ENGLISH_STOP_WORDS - _EN_KEEP) | _EN_EXTRA_STOP)


@lru_cache(maxsize=1 << 16)
def keyword_tokens(text: str, language: str) -> tuple[tuple[str, str], ...]:
    """The content words of ``text`` in order, each as ``(word as written, its key)``.

    English: words of two or more letters, lower case, off the stop list; the key is the
    word's lemma (``simplemma``, whose word lists ship in the package), so "cards" and
    "card" are one keyword (a word whose lemma is a stop word or vague, "wanted",
    "tried", is dropped too). Chinese: ``jieba`` words of two or
    more CJK or Latin letters off the stop list; the key is the word itself. Cached:
    the namer reads each text twice (weights, then order and spelling).
    """
    if language == "zh":
        import jieba

        jieba.setLogLevel(60)  # silence its "Building prefix dict" banner
        return tuple((t, t) for t in jieba.lcut(text) if _ZH_TOKEN.match(t) and t not in _ZH_STOP)
    stop = _english_stop()
    out = []
    for word in _EN_TOKEN.findall(text.lower()):
        if word not in stop:
            key = _lemma(word)
            if key not in stop and key not in _EN_VAGUE:
                out.append((word, key))
    return tuple(out)


def _keys(text: str, language: str) -> list[str]:
    return [key for _, key in keyword_tokens(text, language)]


def same_stem(a: str, b: str) -> bool:
    """Whether two keywords say the same thing: equal, one Chinese word inside the other,
    an English word and its plural the lemmatiser does not know ("atm"/"atms"), or two
    English words of five letters or more with the same first four ("recognize"/
    "recognise", "verify"/"verification", "marry"/"marriage", "beneficiary"/"beneficiery",
    and "transfer"/"transaction", which customers use as one word)."""
    if a == b:
        return True
    if CJK.search(a) or CJK.search(b):
        return a in b or b in a
    short, long = sorted((a, b), key=len)
    return long in (short + "s", short + "es") or (len(short) >= 5 and short[:4] == long[:4])


def keyword_vectorizer(language: str, lemmatize: bool = True) -> TfidfVectorizer:
    """An unfitted ``TfidfVectorizer`` over the keywords of ``language`` (``en``/``zh``):
    the keys of :func:`keyword_tokens` (lemmas), or with ``lemmatize=False`` English
    words as written, off the stop list alone (the tokenizer before lemmas)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if language == "zh" or lemmatize:
        return TfidfVectorizer(tokenizer=partial(_keys, language=language), token_pattern=None,
                               lowercase=False, sublinear_tf=True)
    return TfidfVectorizer(stop_words=sorted(_english_stop()), token_pattern=_EN_TOKEN.pattern,
                           sublinear_tf=True)
