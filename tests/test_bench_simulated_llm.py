"""bench/_simulated_llm.py: the simulated LLM behind real HTTP answers each prompt the project's
LLM judge client sends exactly as the sampled oracle answers the same question directly,
a question asked again on purpose included."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from dialin.models import ClusterView, SampledOracleJudge
from dialin.streams.factory import build_judge
from dialin.streams.settings import Settings

WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")


@pytest.fixture(scope="module")
def simulated_llm(bench_module):
    return bench_module("_simulated_llm")


def _rows() -> tuple[list[str], list[str]]:
    """Three intents of 40 distinct utterances each (words only: nothing for PII redaction)."""
    texts, gold = [], []
    for label in ("card", "refund", "transfer"):
        for i in range(40):
            texts.append(f"my {label} question {WORDS[i % 8]} {WORDS[i // 8]}")
            gold.append(label)
    return texts, gold


def _views(texts: list[str], gold: list[str], rng: np.random.Generator) -> list[ClusterView]:
    """Single clusters from pure to evenly mixed, and unions of one intent or of two."""
    by = {y: [i for i, g in enumerate(gold) if g == y] for y in sorted(set(gold))}
    views = []
    for k in range(40):
        main, other = rng.choice(sorted(by), 2, replace=False)
        n_other = [0, 1, 2, 4, 6, 10][k % 6]
        rows = (rng.choice(by[main], 20 - n_other, replace=False).tolist()
                + rng.choice(by[other], n_other, replace=False).tolist())
        if k % 2:  # a union question: side A is one intent, side B this intent or another
            side_b = by[main] if k % 4 == 1 else by[other]
            a = rng.choice(by[main], 10, replace=False).tolist()
            b = [i for i in rng.choice(side_b, 14, replace=False).tolist() if i not in a][:10]
            views.append(ClusterView(members=tuple(a + b), texts=tuple(texts[i] for i in a + b),
                                     parts=(tuple(texts[i] for i in a), tuple(texts[i] for i in b)),
                                     split=len(a)))
        else:
            views.append(ClusterView(members=tuple(rows), texts=tuple(texts[i] for i in rows)))
    return views


def test_the_llm_client_gets_the_sampled_oracles_verdicts(simulated_llm):
    texts, gold = _rows()
    views = _views(texts, gold, np.random.default_rng(0))
    # each asked again on purpose (the client sends it at a sampling temperature)
    views += [replace(v, repetition=1) for v in views]
    direct = SampledOracleJudge(gold, accuracy=simulated_llm.ACCURACY, random_state=0)
    direct.prepare(None, texts)
    expected = [v.good for v in direct.judge(views)]
    with simulated_llm.SimulatedLLM(texts, gold, random_state=0) as llm:
        settings = Settings(judge="openai", llm_url=llm.url, llm_model=simulated_llm.MODEL)
        over_http = [v.good for v in build_judge(settings).judge(views)]
        asked = dict(llm.asked)
    assert over_http == expected
    assert 5 <= sum(expected) <= len(expected) - 5  # both answers occur: not a constant
    assert asked == {"judge": len(views), "unknown texts": 0}


def test_texts_it_does_not_hold_are_counted_and_make_the_sample_less_pure(simulated_llm):
    texts, gold = _rows()
    with simulated_llm.SimulatedLLM(texts[:40], gold[:40], random_state=0) as llm:
        judge = build_judge(Settings(judge="openai", llm_url=llm.url,
                                     llm_model=simulated_llm.MODEL))
        pure = ClusterView(members=tuple(range(20)), texts=tuple(texts[:20]))
        # half the sample unknown: a 50% dominant share, Bad unless a 4% error flips it
        half = ClusterView(members=tuple(range(30, 50)), texts=tuple(texts[30:50]))
        verdicts = [v.good for v in judge.judge([pure, half])]
        asked = dict(llm.asked)
    assert verdicts == [True, False]
    assert asked == {"judge": 2, "unknown texts": 10}
