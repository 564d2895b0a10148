"""PII redaction on realistic Chinese and English call-center transcripts.

Every positive case is a value that really is one (a checksum-valid resident ID, a
Luhn-valid card, a valid phone number), every negative case a look-alike that is not;
spoken digits ("幺三八", "four one one one") are caught as well as written ones. The last
tests send clusters through the OpenAI judge and namer to the real local test server and
check that the request bodies carry no PII when a redactor is set (and do without one,
so the check can fail).
"""

from __future__ import annotations

import copy
import json
import pickle
from dataclasses import replace

import pytest
from openai_server import utterance_groups
from stdnum import luhn
from stdnum.cn import ric

from dialin.models import ClusterView, OpenAIJudge, OpenAINamer, Redactor
from dialin.models.text._pii import normalise_digits

# (transcript, the PII value as written, the token expected in its place)
POSITIVES = [
    # Chinese: ASR writes digits as numerals, 幺 for 1, spaces between groups.
    ("您好，我想查一下订单，我的手机号是幺三八 幺二三四 五六七八", "幺三八 幺二三四 五六七八", "<PHONE>"),
    ("我的手机号是13812345678，麻烦帮我改一下地址", "13812345678", "<PHONE>"),
    ("你记一下，座机是010-62345678", "010-62345678", "<PHONE>"),
    ("座机号码零幺零 六二三四 五六七八，白天打这个", "零幺零 六二三四 五六七八", "<PHONE>"),
    ("身份证号 11010519491231002X 帮我查下社保", "11010519491231002X", "<CN_ID>"),
    ("身份证号码是幺幺零幺零五幺九四九幺二三幺零零二叉", "幺幺零幺零五幺九四九幺二三幺零零二叉", "<CN_ID>"),
    ("我老婆的身份证是110101199003071233", "110101199003071233", "<CN_ID>"),
    ("卡号6222021234567890128，昨天被扣了两次钱", "6222021234567890128", "<CARD>"),
    ("银行卡是 6222 0212 3456 7890 128 尾号一二八", "6222 0212 3456 7890 128", "<CARD>"),
    ("邮箱是zhang.san@163.com谢谢", "zhang.san@163.com", "<EMAIL>"),
    # English: card numbers and phone numbers read out word by word.
    ("my card number is four one one one one one one one one one one one one one one one",
     "four one one one one one one one one one one one one one one one", "<CARD>"),
    ("the card is 5500 0055 5555 5559 and it got declined", "5500 0055 5555 5559", "<CARD>"),
    ("amex 3782 822463 10005 was charged twice", "3782 822463 10005", "<CARD>"),
    ("you can call me back on four one five, five five five, oh one three two",
     "four one five, five five five, oh one three two", "<PHONE>"),
    ("my number is oh two oh seven nine four six double oh one eight",
     "oh two oh seven nine four six double oh one eight", "<PHONE>"),
    ("reach me at (415) 555-2671 after six", "(415) 555-2671", "<PHONE>"),
    ("send it to John.Smith+billing@example.co.uk please", "John.Smith+billing@example.co.uk",
     "<EMAIL>"),
]

NEGATIVES = [
    "身份证号110105194912310021",          # checksum wrong
    "身份证号110101199013071237",          # checksum right, but month 13
    "卡号6222021234567890127，帮我查一下",  # fails Luhn
    "订单号是12345678901",                  # not a valid Chinese number
    "金额是一千三百八十块，分三期",
    "我要两张去北京的票，明天下午三点",
    "my card number is four one one one one one one one one one one one one one one two",
    "order 4111 1111 1111 1112 never arrived",  # fails Luhn
    "I waited two three days for my card",
    "oh no, I was charged 35.99 twice on the 12th",
    "I want to cancel my card",
    "what is the exchange rate for 1000 euros",
]


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


def test_the_examples_are_what_they_claim_to_be():
    # Guards the data above: a typo would make a positive case test nothing.
    assert ric.is_valid("11010519491231002X") and ric.is_valid("110101199003071233")
    assert not ric.is_valid("110105194912310021") and not ric.is_valid("110101199013071237")
    for card in ("4111111111111111", "6222021234567890128", "5500005555555559", "378282246310005"):
        assert luhn.is_valid(card)
    for card in ("4111111111111112", "6222021234567890127"):
        assert not luhn.is_valid(card)


@pytest.mark.parametrize(("text", "value", "expected"), POSITIVES)
def test_pii_is_replaced_and_the_rest_kept(redactor, text, value, expected):
    out = redactor.redact(text)
    assert out == text.replace(value, expected)


@pytest.mark.parametrize("text", NEGATIVES)
def test_look_alikes_are_left_alone(redactor, text):
    assert redactor.redact(text) == text


def test_several_values_in_one_utterance_and_redacting_twice_changes_nothing(redactor):
    text = ("电话是010-88545022,010-88545360和010-88545426，"
            "身份证 110105199912310014，邮箱 li.si@qq.com")
    out = redactor.redact(text)
    assert out == "电话是<PHONE>,<PHONE>和<PHONE>，身份证 <CN_ID>，邮箱 <EMAIL>"
    assert redactor.redact(out) == out


@pytest.mark.parametrize("label, expected", [
    ("report-4111111111111111", "report-card"),  # glued to the hyphen: still found
    ("询问-13812345678", "询问-phone"),
    ("inquire-138-1234-5678", "inquire-phone"),
    ("inquire-refund", "inquire-refund"),
    ("询问-优惠", "询问-优惠"),
])
def test_labels_keep_their_form_with_values_named(redactor, label, expected):
    assert redactor.redact_label(label) == expected


def test_redactions_are_counted_by_entity():
    r = Redactor()
    assert r.stats == {}
    r.redact_many(["我的手机号是13812345678", "my email is a.b@example.com",
                   "身份证号 11010519491231002X", "card 4111 1111 1111 1111", "no pii here",
                   "两个号码 13812345678 和 13912345678"])
    assert r.stats == {"PHONE": 3, "EMAIL": 1, "CN_ID": 1, "CARD": 1}
    stats = r.stats
    stats["PHONE"] = 99  # a copy: callers cannot corrupt the count
    assert r.stats["PHONE"] == 3


def test_entities_are_configurable():
    r = Redactor(entities=["EMAIL"])
    text = "手机13812345678 邮箱 a.b@example.com"
    assert r.redact(text) == "手机13812345678 邮箱 <EMAIL>"
    assert Redactor(entities=["CARD", "IBAN"]).redact(
        "IBAN DE89 3704 0044 0532 0130 00, card 4111111111111111") == "IBAN <IBAN>, card <CARD>"


def test_spoken_digits_can_be_switched_off():
    text = "my card number is four one one one one one one one one one one one one one one one"
    assert Redactor(normalise_spoken_digits=False).redact(text) == text


def test_normalised_text_maps_back_to_the_original():
    text = "call oh two oh seven, 幺三八 ok"
    normal, spans = normalise_digits(text)
    assert normal == "call 0207, 138 ok"
    assert len(spans) == len(normal)
    assert text[spans[5][0]:spans[8][1]] == "oh two oh seven"
    assert text[spans[11][0]:spans[13][1]] == "幺三八"
    assert normalise_digits("一百二十三块")[0] == "123块"  # units: cn2an
    assert normalise_digits("oh well, one more thing")[0] == "oh well, one more thing"


def test_constructor_only_stores_and_copies_are_independent(redactor):
    r = Redactor(entities=("PHONE",), language="zh", normalise_spoken_digits=False)
    assert (r.entities, r.language, r.normalise_spoken_digits) == (("PHONE",), "zh", False)
    assert not hasattr(r, "_analyzer")
    redactor.redact("13812345678")
    clone = pickle.loads(pickle.dumps(redactor))
    assert clone.redact("手机13812345678") == "手机<PHONE>"
    assert copy.deepcopy(redactor).stats == {}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"entities": ["PHONE", "PASSPORT"]}, "unknown PII entities"),
    ({"entities": "PHONE"}, "list of names"),
    ({"language": "fr"}, "language must be"),
])
def test_bad_parameters_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        Redactor(**kwargs).redact("x")
    assert "\n" not in str(info.value)


# --- nothing leaves the process --------------------------------------------------------

CLUSTER = (
    "我的手机号是幺三八 幺二三四 五六七八，卡丢了",
    "身份证号 11010519491231002X 要挂失银行卡",
    "my card number is four one one one one one one one one one one one one one one one",
    "email me at john.smith@example.com when the card is blocked",
)
SECRETS = ("13812345678", "138 1234 5678", "幺三八", "11010519491231002X", "4111",
           "four one one one", "john.smith", "example.com")


def _bodies_leak(bodies: list[dict]) -> list[str]:
    raw = json.dumps(bodies, ensure_ascii=False)
    return [s for s in SECRETS if s in raw]


@pytest.mark.parametrize("cls", [OpenAIJudge, OpenAINamer])
def test_llm_requests_carry_no_pii_with_a_redactor(llm_server, redactor, cls):
    view = ClusterView(members=(0, 1, 2, 3), texts=CLUSTER)
    union = ClusterView(members=(0, 1, 2, 3), texts=(), parts=(CLUSTER[:2], CLUSTER[2:]), split=2)
    with cls(llm_server.url, "test-model", redactor=redactor) as backend:
        (backend.judge if cls is OpenAIJudge else backend.name)([view, union])
    bodies = llm_server.chat_requests()
    assert bodies and _bodies_leak(bodies) == []
    shown = " ".join(t for body in bodies for group in utterance_groups(body) for t in group)
    assert all(tok in shown for tok in ("<PHONE>", "<CN_ID>", "<CARD>", "<EMAIL>"))


def test_without_a_redactor_the_same_requests_do_leak(llm_server):
    # The control: proves the check above can fail.
    with OpenAIJudge(llm_server.url, "test-model") as judge:
        judge.judge([ClusterView(members=(0, 1, 2, 3), texts=CLUSTER)])
    assert len(_bodies_leak(llm_server.chat_requests())) >= 4


# --- the service: settings, factory, published examples, the metric -------------------

def test_the_factory_shares_one_redactor_and_gives_it_to_llm_backends(llm_server):
    from dialin.streams.factory import SettingsError, build_judge, build_namer, build_redactor
    from dialin.streams.settings import Settings

    settings = Settings(judge="openai", namer="openai", llm_url=llm_server.url, llm_model="m")
    judge, namer = build_judge(settings), build_namer(settings)
    assert isinstance(judge.redactor, Redactor) and judge.redactor is namer.redactor
    assert build_redactor(settings.model_copy(update={"pii_redaction": False})) is None
    assert build_judge(settings.model_copy(update={"pii_redaction": False})).redactor is None
    with pytest.raises(SettingsError, match="DIALIN_PII_ENTITIES.*PASSPORT"):
        build_redactor(settings.model_copy(update={"pii_entities": ["PHONE", "PASSPORT"]}))


def _published(label: str | None = None, **overrides) -> list[dict]:
    """The intent updates one discovery run publishes for clusters of :data:`CLUSTER`."""
    import asyncio
    import time

    from test_worker import DirectionEstimator, fill, make_discovery

    class Chatty(DirectionEstimator):
        def fit(self, X, texts=None):
            super().fit(X, texts)
            self.intents_ = [replace(it, examples=CLUSTER, label=f"{label}{it.intent_id}" if label else it.label)
                             for it in self.intents_]
            return self

    disco, pub = make_discovery(Chatty(), **overrides)
    fill(disco.buffer, [0, 1], 10, accepted_at=time.time())
    asyncio.run(disco.tick())
    return [u for _, u in pub.on(disco.settings.topic_updates)]


def _published_examples(**overrides) -> list[str]:
    return [t for u in _published(**overrides) for t in u["examples"]]


def test_a_namer_that_lifts_a_number_into_a_label_publishes_its_entity_name():
    # A keyword namer picks a value that recurs in a cluster; an LLM may echo one.
    labels = [u["label"] for u in _published(label="callback-1381234567")]
    assert labels and all(lab.startswith("callback-phone") for lab in labels), labels
    assert not any("138123" in lab for lab in labels)
    labels = [u["label"] for u in _published(label="callback-1381234567", pii_redaction=False)]
    assert labels and all("1381234567" in lab for lab in labels)  # the check above can fail


def test_discovery_publishes_redacted_examples_and_counts_them():
    from dialin.streams.service import metrics

    before = metrics.PII_REDACTIONS.labels("PHONE")._value.get()
    examples = _published_examples()
    assert len(examples) == 2 * len(CLUSTER)
    assert _bodies_leak([{"examples": examples}]) == []
    assert "我的手机号是<PHONE>，卡丢了" in examples
    assert metrics.PII_REDACTIONS.labels("PHONE")._value.get() - before == 2
    # Switched off, the same run publishes the numbers: the check above can fail.
    assert _bodies_leak([{"examples": _published_examples(pii_redaction=False)}])


def test_discover_writes_redacted_examples(tmp_path, clean_settings):
    from typer.testing import CliRunner

    from dialin.streams.cli import app

    rows = ["text"] + [f"my card {c} was declined at the shop" for c in
                       ("4111 1111 1111 1111", "5500 0055 5555 5559", "3782 822463 10005")] * 8 \
        + [f"please call me back on {p} about my refund" for p in
           ("(415) 555-2671", "020 7946 0018", "+86 138 1234 5678")] * 8
    path = tmp_path / "calls.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "intents.json"
    result = CliRunner().invoke(app, ["discover", str(path), "--text-field", "text",
                                      "--embedder", "lsa", "--out", str(out)])
    assert result.exit_code == 0, result.output
    examples = [t for it in json.loads(out.read_text("utf-8"))["intents"] for t in it["examples"]]
    assert examples and not any(n in t for t in examples
                                for n in ("4111", "5500", "3782", "555-2671", "7946", "1234 5678"))
    assert any("<CARD>" in t for t in examples) and any("<PHONE>" in t for t in examples)
