"""The small value objects and plugin interfaces every part of the engine shares.

Plugins (judges, namers, embedders) see only these frozen value objects, never an
estimator, in the way BERTopic's representation and backend base classes keep each
extension point to one method. Real LLM backends (OpenAI-compatible HTTP, in-process
vLLM) implement the same two interfaces as the offline heuristic ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .llm._breaker import CircuitBreaker
    from .llm._spend import SpendCap

GOOD = "Good"
BAD = "Bad"


@dataclass(frozen=True)
class ClusterView:
    """What a judge or namer is shown of one cluster (or of a union of two).

    ``texts`` is the sample the LLM reads; ``members`` are the row indices of every
    utterance in the cluster, for judges that look at the whole set (the oracle judge
    of the benchmarks, the geometric heuristic). When the question is about the union
    of two groups, ``parts`` holds the sample of each side so a prompt can show both.
    ``repetition`` distinguishes the t repeated evaluations of the paper's §6.4.1: the
    same cluster asked twice on purpose is two questions, asked twice by accident is one.
    ``split`` marks a union question: ``members[:split]`` is side A and
    ``members[split:]`` side B (0 means one cluster), so a judge that looks at the
    members can weigh the two sides against each other.
    """

    members: tuple[int, ...]
    texts: tuple[str, ...]
    parts: tuple[tuple[str, ...], ...] = ()
    role: str | None = None
    repetition: int = 0
    split: int = 0
    embeddings: np.ndarray | None = field(default=None, compare=False, hash=False, repr=False)

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass(frozen=True)
class Verdict:
    """One coherence judgement. ``good`` is None when no valid answer was obtained.

    An unparseable or failed answer is never read as Good: callers treat None as Bad
    and count it, so a flaky LLM can only make the engine more conservative.

    ``good`` is stored as a Python ``bool`` (or None): a numpy boolean from a plug-in
    judge is converted, because :attr:`is_good` compares with ``is True`` and would
    read ``np.True_`` as Bad; anything else (``1``, ``"Good"``) is refused with a
    ``TypeError`` rather than guessed at.

    ``fallback`` says why an offline judge answered instead of the LLM (an LLM spend
    cap was reached: ``"call_cap"`` or ``"token_cap"``); None when the judge answered.
    """

    good: bool | None
    confidence: float | None = None
    backend: str = ""
    fallback: str | None = None

    def __post_init__(self) -> None:
        if self.good is None or type(self.good) is bool:
            return
        if not isinstance(self.good, np.bool_):
            raise TypeError(f"Verdict.good must be True, False or None, got {self.good!r} "
                            f"({type(self.good).__name__}) from backend {self.backend!r}")
        object.__setattr__(self, "good", bool(self.good))

    @property
    def is_good(self) -> bool:
        return self.good is True


class Judge(ABC):
    """The paper's LLM_eval: is this cluster semantically coherent (Good) or not (Bad)?"""

    #: Short backend name reported with every verdict ("heuristic", "oracle", "openai", ...).
    backend: str = "judge"
    #: Judge calls per utterance a budgeted strategy spends when not told otherwise. LLM
    #: calls cost money, so 0.3 (paper-level quality, see docs/benchmarks.md); judges
    #: that cost nothing may ask for more.
    default_budget: float = 0.3
    #: True when a question asked again always gets the same answer (it depends on the
    #: members only, not on the sample or the repetition): asking again is then wasted.
    deterministic: bool = False
    #: True when the answers come from a server over the network (LLM backends): a batch
    #: of questions then costs about one round trip, so a fit may ask several at once
    #: (the budget strategy's ``lookahead``, set by the service's ``judge_lookahead``).
    concurrent: bool = False
    #: True for judges that stand in for an LLM by reading the gold labels (the oracles
    #: of the benchmarks): their results must never be mistaken for an LLM's.
    simulated: bool = False

    def describe(self) -> dict:
        """What reports print about this judge: its backend, whether it is simulated,
        and (for simulated judges) the parameters that set how often it errs."""
        return {"backend": self.backend, "simulated": self.simulated}

    def prepare(self, X: np.ndarray, texts: Sequence[str]) -> None:
        """Called once at the start of every ``fit`` with the whole data set.

        Label-free judges calibrate here; LLM judges have nothing to do.
        """

    @abstractmethod
    def judge(self, views: Sequence[ClusterView]) -> list[Verdict]:
        """Judge a batch of clusters; LLM backends send the batch concurrently."""

    def cache_key(self, view: ClusterView) -> tuple:
        """What identifies a question for this judge: by default what it is shown."""
        return (view.parts or view.texts, view.role, view.repetition)


class Namer(ABC):
    """The paper's LLM_name: summarise a cluster as an "Action-Objective" label."""

    backend: str = "namer"

    def prepare(self, X: np.ndarray, texts: Sequence[str]) -> None:
        """Called once per ``fit`` with the whole data set (keyword namers fit IDF here)."""

    @abstractmethod
    def name(self, views: Sequence[ClusterView]) -> list[str]:
        """Return one ``action-objective`` label per view."""


class Embedder(ABC):
    """Turns texts into L2-normalised float32 rows; the space must stay fixed once used."""

    #: A name that identifies the embedding space (model name, or lsa + fitted hash).
    name: str = "embedder"

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return an ``(n, d)`` float32 array of unit-length rows."""


@dataclass(frozen=True)
class Intent:
    """One discovered intent: the estimator's public result for a cluster."""

    intent_id: int
    label: str
    members: tuple[int, ...]
    examples: tuple[str, ...]
    role: str | None = None
    verdict: Verdict | None = None

    @property
    def size(self) -> int:
        return len(self.members)


class Pruner(ABC):
    """Search-space pruning (the paper's §6.4.2): which cluster counts to try next."""

    @abstractmethod
    def propose(self, log: Sequence[Mapping], n_remaining: int, lo: int, hi: int,
                k: int = 5) -> list[int]:
        """Up to ``k`` distinct counts in ``[lo, hi]``, best first, from the iteration log."""


@dataclass(frozen=True)
class Completion:
    """One answer of a :class:`ChatClient` to one conversation.

    ``tokens`` are (chosen token, {alternative: logprob}) pairs when logprobs were asked
    and given. ``seconds`` is what the request took (its share, for a batched engine);
    ``http_status`` every HTTP status it saw, the transport's own retries included.
    ``error`` says why a request failed after the client's own retries (the text is then
    None); ``unavailable`` marks one the circuit breaker refused or that opened it;
    ``capped`` one the spend cap refused (``"call_cap"`` or ``"token_cap"``): nothing
    was sent, or a retry was not.
    """

    text: str | None
    tokens: tuple[tuple[str, dict[str, float]], ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    http_status: tuple[int, ...] = ()
    error: str | None = None
    unavailable: bool = False
    capped: str | None = None


class ChatClient(ABC):
    """Sends chat conversations to an LLM and returns its answers: text and logprobs.

    The one thing an LLM backend must do. Caching, invalid-answer retries, the sampling
    policy, the circuit breaker's state and the accounting live above it, once, in
    :class:`~dialin.models.LLMJudge`, :class:`~dialin.models.LLMNamer` and
    :class:`~dialin.models.LLMPruner`.
    """

    #: Short name reported with every verdict ("openai", "vllm", ...).
    backend: str = "llm"
    #: The model answering: part of every cached answer's key.
    model: str = ""

    @abstractmethod
    def complete(self, conversations: Sequence[list[dict]], *, task: str,
                 temperatures: Sequence[float], seeds: Sequence[int | None],
                 logprobs: bool = False, structured: bool | str = True,
                 breaker: CircuitBreaker | None = None,
                 spend: SpendCap | None = None) -> list[Completion]:
        """One :class:`Completion` per conversation, in order.

        ``task`` (judge|name|prune) sets the answer's length and constraint (when
        ``structured``); ``temperatures`` and ``seeds`` are per conversation. A client
        that talks over a network asks ``breaker.allow()`` before each request and
        reports each outcome (``success()``, or ``failure()`` for an outage); a failed
        request is a Completion with ``error`` set, never an exception. A client given
        a ``spend`` cap takes one call from it (``spend.take()``) for every request it
        sends, retries included, in the order of ``conversations``, answers a refused
        one with ``capped`` set, and adds the tokens of every answer
        (``spend.add_tokens``). Options a client has no use for are ignored.
        """

    def close(self) -> None:
        """Release connections and threads (a later call starts anew); nothing by default."""
