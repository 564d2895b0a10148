"""A simulated LLM judge behind real HTTP, for benchmarks only: it knows the gold labels.

The service's LLM path (the OpenAI client, its budget, retries, the prompts with their
sampled utterances, the union questions of consolidation and catalog upserts) cannot be
measured with the offline heuristic judge, and no LLM weights exist on this machine. This
module puts :class:`~dialin.models.SampledOracleJudge`, the project's stricter simulated
judge, behind the project's OpenAI-protocol test server (``tests/openai_server.py``, real
HTTP on loopback), so a ``dialin serve`` worker or ``dialin discover`` run with
``DIALIN_JUDGE=openai`` asks it exactly what it would ask an LLM.

What it answers: each judge prompt's utterance blocks are decoded; each shown text is looked
up among the benchmark's rows (as the prompt shows it: PII redacted with the shipped entities,
whitespace folded, cut to the prompt's length) to get its gold label; the sampled oracle's
rules (Good when one gold label covers >= 90% of the shown sample, both sides of a union
together; right 96% of the time; lenient with nearly pure samples; one answer per prompt,
a question the engine asks again at a sampling temperature counting as its repetition)
decide. Only judge prompts are served: the namer stays the offline keyword namer, because a
namer that knew the gold labels would make the label merge trivially perfect; a name or
prune prompt is answered with an invalid text, so the client falls back and the bench can
count it. Every report that uses it must say "simulated".

``latency`` makes each request wait that many seconds before its answer, as an LLM takes
to read a prompt and answer; the server answers each request on a thread of its own, so
requests sent together wait together, as a batching server (vLLM) answers them.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from dialin.models import ClusterView, Redactor, SampledOracleJudge
from dialin.models.llm._prompts import MAX_UTTERANCE_CHARS
from dialin.streams.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from openai_server import FakeLLMServer, task_of, utterance_groups  # noqa: E402

#: The model name the simulated server lists and the service is told to use.
MODEL = "test-model"
#: The sampled oracle's accuracy: the paper's fine-tuned judges agree with annotators ~96%.
ACCURACY = 0.96
#: Gold label given to a shown text the bench's rows do not hold (counted, and it makes a
#: sample less pure: a miss can only make the simulated judge stricter).
UNKNOWN = "\x00unknown"


def shown(text: str) -> str:
    """A text as a prompt shows it: whitespace folded, cut to the prompt's length."""
    return " ".join(str(text).split())[:MAX_UTTERANCE_CHARS]


class SimulatedLLM:
    """The server, answering judge prompts with the sampled oracle over ``texts``' gold labels."""

    def __init__(self, texts: Sequence[str], gold: Sequence[str], random_state: int = 0,
                 latency: float = 0.0) -> None:
        redactor = Redactor(entities=Settings().pii_entities)
        self._gold: dict[str, str] = {}
        for text, label in zip(texts, gold):
            for variant in (text, redactor.redact(text)):
                self._gold.setdefault(shown(variant), str(label))
        self.random_state = random_state
        self.latency = latency
        self.asked: Counter = Counter()  # judge | name | prune, and unknown texts
        self._lock = threading.Lock()
        self._server = FakeLLMServer()
        self._server.answer = self.answer
        self._server.p_good = lambda body: 0.9 if self.answer(body, count=False) == "Good" else 0.1

    @property
    def url(self) -> str:
        return self._server.url

    def env(self) -> dict[str, str]:
        """The settings that point a worker or ``dialin discover`` at this server."""
        return {"DIALIN_JUDGE": "openai", "DIALIN_LLM_URL": self.url, "DIALIN_LLM_MODEL": MODEL}

    def answer(self, body: dict, count: bool = True) -> str:
        if count and self.latency > 0:
            time.sleep(self.latency)
        task = task_of(body)
        if task != "judge":
            if count:
                with self._lock:
                    self.asked[task] += 1
            return "no answer: the simulated LLM judges only"
        groups = utterance_groups(body)
        texts = [t for group in groups for t in group]
        # A prompt shows shown(text) already; shown() again would drop the trailing space
        # of a text cut right after one.
        labels = [self._gold.get(t, UNKNOWN) for t in texts]
        if count:
            with self._lock:
                self.asked["judge"] += 1
                self.asked["unknown texts"] += labels.count(UNKNOWN)
        # The engine asks a question again on purpose (repetition > 0: a Good confirmed)
        # at a sampling temperature, where an LLM may answer otherwise; the sampled oracle
        # draws a fresh error for a repetition, so a prompt sent with temperature > 0 is
        # its repetition 1 (only the first repetition is told apart).
        repetition = int(float(body.get("temperature") or 0.0) > 0.0)
        return "Good" if self.verdict(groups, labels, repetition) else "Bad"

    def verdict(self, groups: list[list[str]], labels: list[str], repetition: int = 0) -> bool:
        """The sampled oracle's verdict on one prompt (one block, or the two of a union)."""
        texts = [t for group in groups for t in group]
        judge = SampledOracleJudge(labels, accuracy=ACCURACY, random_state=self.random_state)
        judge.prepare(None, texts)
        union = len(groups) == 2
        view = ClusterView(members=tuple(range(len(texts))), texts=tuple(texts),
                           parts=tuple(tuple(g) for g in groups) if union else (),
                           split=len(groups[0]) if union else 0, repetition=repetition)
        return bool(judge.judge([view])[0].good)

    def __enter__(self) -> SimulatedLLM:
        self._server.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.stop()
