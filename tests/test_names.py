"""The keyword namer's rules (issue 14) on small fixed inputs, and the measure of
``bench/names.py`` on a constructed case whose answer is known."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from dialin.models import AGENT_ACTIONS, CUSTOMER_ACTIONS, ClusterView, KeywordNamer, action_of

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    """bench/names.py as a module (its own imports resolve from bench/)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        spec = importlib.util.spec_from_file_location("bench_names", ROOT / "bench" / "names.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return module


def _name(texts: list[str], *clusters: range, **params) -> list[str]:
    namer = KeywordNamer(**params)
    namer.prepare(None, texts)
    return namer.name([ClusterView(members=tuple(c), texts=()) for c in clusters])


OTHERS = ["how do I top up my card", "what is my balance", "where is my new card",
          "can I get a refund", "the atm kept my card", "how long does delivery take"]


def _objective(label: str) -> list[str]:
    return label.split("-", 1)[1].split("_") if action_of(label) else label.split("_")


def test_no_repeated_stem_in_a_label():
    # Spelling variants, plurals and the action's own word: each could fill the label twice.
    texts = ["I do not recognise this payment", "I don't recognize this payment",
             "a payment I do not recognise", "payments I don't recognize on my statement",
             "please cancel my cancelled order", "cancel the order I cancelled"] + OTHERS
    recognise, cancel = _name(texts, range(0, 4), range(4, 6))
    words = _objective(recognise)
    assert sum(w.startswith("recogni") for w in words) == 1, recognise
    assert sum(w.startswith("payment") for w in words) == 1, recognise
    assert action_of(cancel) == "cancel" and not any(w.startswith("cancel") for w in _objective(cancel)), cancel


def test_never_misc():
    texts = ["yes", "yes please", "ok", "okay yes", "1234", "5678"] + OTHERS
    stop_words_only, digits_only, everything = _name(texts, range(0, 4), range(4, 6), range(len(texts)))
    for label in (stop_words_only, digits_only, everything):
        assert "misc" not in label and label and not label.endswith("-"), label
    assert "yes" in _objective(stop_words_only)  # its most distinctive word, stop word or not
    assert _objective(digits_only) == ["number"]


def test_objective_words_come_in_the_members_order():
    # The same two keywords, said in opposite orders by two data sets.
    forward = ["what is the exchange rate today", "exchange rate for euros", "your exchange rate is bad",
               "which exchange rate applies"] + OTHERS
    backward = ["what rate of exchange do you use", "rate of exchange for euros", "your rate of exchange is bad",
                "which rate of exchange applies"] + OTHERS
    (a,) = _name(forward, range(4), max_keywords=2)
    (b,) = _name(backward, range(4), max_keywords=2)
    assert _objective(a) == ["exchange", "rate"], a
    assert _objective(b) == ["rate", "exchange"], b


def test_words_are_spelled_as_the_members_spell_them():
    # simplemma's lemma of "pending" is "pend": the label shows the word as written.
    texts = ["my transfer is pending", "pending transfer for days", "why is the transfer still pending",
             "transfer pending"] + OTHERS
    (label,) = _name(texts, range(4), max_keywords=2)
    assert set(_objective(label)) == {"pending", "transfer"}, label


def test_chinese_label_is_action_object_without_repeats():
    texts = ["请问附近有地铁站吗", "地铁站在哪里？", "离地铁站近吗", "这个酒店离地铁近吗", "地铁站怎么走",
             "酒店的电话是多少", "酒店电话是什么", "推荐菜有糖耳朵, 驴打滚。", "推荐菜有五彩烧麦, 爆肚。", "不用客气！",
             "不用客气，都是我应该做的。"]
    subway, phone, dishes, welcome = _name(texts, range(0, 5), range(5, 7), range(7, 9), range(9, 11))
    cjk = r"[\u4e00-\u9fff]+"
    for label in (subway, phone, dishes, welcome):
        assert re.fullmatch(rf"{cjk}-{cjk}(?:_{cjk})*", label), label
        assert action_of(label) in CUSTOMER_ACTIONS | AGENT_ACTIONS | {"问候"}, label
        words = _objective(label)
        assert not any(a != b and a in b for a in words for b in words), label
        assert "其他" not in words
    assert action_of(subway) == "询问" and "地铁站" in _objective(subway)
    assert action_of(dishes) == "提供" and action_of(welcome) == "问候"


def test_max_keywords_is_bounded():
    with pytest.raises(ValueError, match="max_keywords"):
        KeywordNamer(max_keywords=7).prepare(None, ["x"])
    with pytest.raises(ValueError, match="neighbours"):
        KeywordNamer(neighbours=-1).prepare(None, ["x"])
    with pytest.raises(ValueError, match="X has 1 rows"):
        KeywordNamer().prepare(np.zeros((1, 2)), ["x", "y"])


def test_a_keyword_is_placed_where_a_word_of_its_stem_is_said():
    # "verify" is the keyword ("verification" is common everywhere), but five members say
    # "pin verification" and three "verify my pin": a reader sees pin first.
    texts = ["verify my pin please", "verify my pin now", "verify my pin", "pin verification",
             "pin verification failed", "pin verification code", "pin verification needed",
             "pin verification again", "identity verification", "verification of address", "email verification",
             "verification email", "verification letter", "verification documents"] + OTHERS
    (by_stem,) = _name(texts, range(8), max_keywords=2)
    (by_word,) = _name(texts, range(8), max_keywords=2, order_by_stem=False)
    assert _objective(by_stem) == ["pin", "verify"], by_stem
    assert _objective(by_word) == ["verify", "pin"], by_word  # placed only where "verify" itself is said


def test_neighbours_score_words_against_the_nearest_clusters():
    # "card" is every member's word in two neighbouring clusters: against the whole data it
    # names both, against each other each is named by what sets it apart.
    arrive = ["card arrive", "card delivery", "card post", "card courier"]
    lost = ["card lost", "card stolen", "card missing", "card gone"]
    others = ["what is my balance", "can I get a refund", "how long does delivery take", "what is the exchange rate",
              "close my account", "change my address", "my pin is blocked", "top up failed"]
    texts = arrive + lost + others
    views = [range(4), range(4, 8)] + [range(8 + i, 9 + i) for i in range(len(others))]

    def first_two(neighbours: int, X: np.ndarray | None = None) -> list[list[str]]:
        namer = KeywordNamer(max_keywords=1, neighbours=neighbours)
        namer.prepare(X, texts)
        labels = namer.name([ClusterView(members=tuple(v), texts=()) for v in views])
        return [_objective(label) for label in labels[:2]]

    assert first_two(0) == [["card"], ["card"]]
    a, b = first_two(1)
    assert "card" not in a + b and a != b, (a, b)
    # With embeddings the neighbours are the nearest centroids in X: here the arrival
    # cluster sits on the balance question, far from the lost cards, so it keeps "card".
    X = np.zeros((len(texts), 3))
    X[:4, 0] = X[8, 0] = 1.0
    X[4:8, 1] = 1.0
    X[9:, 2] = 1.0
    a, b = first_two(1, X)
    assert a == ["card"] and b != ["card"], (a, b)


# ----------------------------------------------------------------- the measure
def _bag_of_words(texts: list[str]) -> np.ndarray:
    """A stand-in for MiniLM: unit bag-of-words rows over a fixed vocabulary."""
    vocab = ["inquire", "card", "arrival", "exchange", "rate", "report", "lost"]
    rows = np.array([[t.split().count(w) for w in vocab] for t in texts], dtype=float)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def test_name_accuracy_on_a_known_case(bench):
    gold = ["card_arrival", "exchange_rate", "lost_card"]
    labels = ["inquire-card_arrival", "inquire-rate_exchange", "inquire-card_arrival", "report-lost_card"]
    majority = ["card_arrival", "exchange_rate", "exchange_rate", "lost_card"]
    assert bench.name_accuracy(labels, majority, gold, _bag_of_words) == [True, True, False, True]
    assert bench.spaced("Refund_not-showing_up") == "refund not showing up"


def test_label_rules_of_the_measure(bench):
    assert bench.repeats_a_stem("inquire-recognize_recognise")
    assert bench.repeats_a_stem("inquire-service_services") and bench.repeats_a_stem("inquire-card_cards")
    assert bench.repeats_a_stem("询问-地铁_地铁站")
    assert not bench.repeats_a_stem("inquire-exchange_rate") and not bench.repeats_a_stem("inquire-card_cash")
    assert bench.says_misc("confirm-misc") and bench.says_misc("询问-其他") and not bench.says_misc("misconduct")
    assert bench.has_form("inquire-exchange_rate") and bench.has_form("询问-酒店_电话")
    assert not bench.has_form("exchange_rate") and not bench.has_form("ask-exchange_rate")
    members = ["what is the exchange rate", "exchange rate please", "the rate of exchange"]
    assert bench.order_agrees("inquire-exchange_rate", members) is True
    assert bench.order_agrees("inquire-rate_exchange", members) is False
    assert bench.order_agrees("inquire-rate", members) is None
    # A one- or two-letter word of a member is a label word only when it is that word:
    # "a" is not "app", "to" is not "top".
    debit = ["a debit shows in the app", "a direct debit in my app", "to pay a debit by app"]
    assert bench.order_agrees("inquire-debit_app", debit) is True
    assert bench.order_agrees("inquire-app_debit", debit) is False
    assert bench.order_agrees("inquire-id_card", ["my id card", "id for a card"]) is True


def test_members_mean_accuracy_on_a_known_case(bench):
    # Members embedded by the same stand-in: the first intent's members say "card arrival",
    # the second's mostly "exchange rate" but its majority gold intent is lost_card.
    gold = ["card_arrival", "exchange_rate", "lost_card"]
    X = _bag_of_words(["card arrival", "card arrival", "exchange rate", "exchange rate", "lost card"])
    members = [np.array([0, 1]), np.array([2, 3, 4])]
    assert bench.members_mean_accuracy(X, members, ["card_arrival", "exchange_rate"], gold, _bag_of_words) == 1.0
    assert bench.members_mean_accuracy(X, members, ["card_arrival", "lost_card"], gold, _bag_of_words) == 0.5


def test_phrase_namer_takes_the_words_nearest_the_members(bench):
    # Two clusters that say "card" and "rate" as often: by lift alone they tie, so the keyword
    # namer keeps its (alphabetical) order; the phrase namer takes the word whose embedding
    # is the members' and not the other cluster's.
    texts = ["card rate", "card rate again", "card rate now", "exchange please", "exchange now", "exchange again"]
    X = _bag_of_words(["exchange rate", "exchange rate", "exchange rate", "card arrival", "card arrival", "card arrival"])
    views = [ClusterView(members=(0, 1, 2), texts=()), ClusterView(members=(3, 4, 5), texts=())]
    namer = bench.PhraseNamer(_bag_of_words, candidates=2)
    namer.max_keywords = 1
    namer.prepare(X, texts)
    assert _objective(namer.name(views)[0]) == ["rate"]
    plain = KeywordNamer(max_keywords=1)
    plain.prepare(X, texts)
    assert _objective(plain.name(views)[0]) == ["card"]
    with pytest.raises(ValueError, match="embeddings"):
        no_x = bench.PhraseNamer(_bag_of_words)
        no_x.prepare(None, texts)
        no_x.name(views)
