"""Budgeted LLM-in-the-loop clustering: the engine's default strategy.

The paper's Algorithm 1 judges every cluster at every candidate count: about 1.1 judge
calls per utterance on BANKING77, and it over-splits. This strategy spends a fixed
budget of judge calls (``budget`` calls per utterance, or an absolute ``max_calls``)
where a verdict changes the result most:

1. **coarse** - k-means into clusters of about ``coarse_size`` utterances, each judged
   once; Good ones become *anchors* (intents in the making).
2. **growth** - the rest is cut into small Ward micro-clusters; repeatedly the unvisited
   micro-cluster nearest to an anchor is offered to it ("is the union Good?"), else
   asked alone ("is it Good?", a new anchor), else left for the classifier.
3. **merge** - judge-constrained agglomerative merging of the anchors, most connected
   pair first (edges of a k-nearest-neighbour graph of the utterances, normalised by
   size). Good merges; Bad is a cannot-link inherited by later unions; a merge of two
   comparable groups is confirmed by a second call. It stops when merges stop being
   accepted; then near pairs with a single Bad are asked once more (a judge that errs
   leaves false cannot-links behind).
4. **leftovers** - groups under ``min_group_size`` are dissolved and a logistic
   regression trained on the groups (on inputs over 5,000 rows, the nearest group
   centroid) labels every utterance not in one, so every
   utterance ends in an intent the judge certified (nearest centroid and k-NN measured
   the same). When the judge certified no group at all, nothing is an intent: every
   label is -1 (``UNASSIGNED``), ``intents_`` is empty and a
   :class:`~._intents.NothingCertifiedWarning` says so.

**Warm start.** ``fit(..., prior_labels=...)`` continues an earlier fit instead of
starting over, as a service's consolidation may when its memory grows. Each group an
earlier fit certified (its rows that were in a judged group, ``in_group_``, not those
the leftover classifier placed; at least ``min_group_size`` of them) is asked about once
(phase ``recheck``) and, when the judge still calls it Good, is an anchor from the start.
Only the other rows (new ones, and those of groups now called Bad) go through the coarse
pass, and the budget counts the rows of kept groups at ``warm_share`` of the per-row
budget. Growth and merge then run as usual, so new rows can still join an old group or
form their own, and old groups can still merge. What it saves and costs:
``bench/stream_keepup.py --warm``.

Inputs over 5,000 rows are first cut into parts of about 2,500 (k-means,
:func:`~._clusterers.split_rows`); the coarse k-means and the Ward micro-clusters run
inside the parts, so a fit grows about linearly with the input instead of as n^2
(``bench/discover_scale.py``). Smaller inputs are one part: nothing changes for them.

Libraries: FAISS (k-means, nearest neighbours, HNSW above 5,000 rows), scikit-learn
(Ward, logistic regression). Every question goes through a :class:`~._ledger.JudgeLedger`, so repeated
questions are free and ``calls_by_phase_`` reports what each phase spent. One fit's
working state (generators, call cap, ledger, verdicts) lives in a private per-fit object,
so the estimator holds only its parameters and, after ``fit``, its results.
"""

from __future__ import annotations

import heapq
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Literal

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state

from .._base import ClusterView, Judge, Namer, Verdict
from ._clusterers import cluster, kmeans_in_parts, split_rows
from ._contract import StrategyMixin, check_no_y
from ._intents import NothingCertifiedWarning, build_intents, placeholder_texts
from ._kestimate import estimate_n_intents
from ._ledger import JudgeLedger
from ._sampling import make_union_view, make_view
from .._threads import single_threaded
from .._vectors import check_embeddings, nearest_rows, unit


#: Global k-means iterations after the coarse pass ran inside parts (inputs over 5,000
#: rows): without them clusters are cut at the parts' borders (6,000 rows of BANKING77
#: train, a tuning set: NMI 0.804 in parts alone, 0.811 with 3 global iterations, 0.812
#: with 10, 0.815 with the whole coarse pass global, whose seeding costs n^2).
_REFINE_ITERATIONS = 3


class BudgetITLClustering(StrategyMixin, BaseEstimator):
    """LLM-in-the-loop intent clustering on a judge-call budget (scikit-learn style).

    Parameters
    ----------
    judge : Judge
        The coherence judge (the paper's LLM_eval).
    namer : Namer or None
        Names the final clusters "Action-Objective"; None leaves ``cluster-<id>``.
    budget : float or None
        Judge calls per utterance for the whole fit (0.3 reaches paper-level quality);
        None uses the judge's ``default_budget`` (0.3 for LLM judges).
    max_calls : int or None
        Absolute cap on judge calls; the smaller of the two caps wins.
    coarse_size, micro_size : float or None
        Mean cluster size of the coarse k-means pass and of the Ward micro-clusters;
        ``micro_size=None`` derives it from the budget (about 1 / (0.55 * budget)).
    growth_share : float
        Share of the budget that coarse + growth may spend before merging.
    min_group_size : int
        Groups smaller than this are dissolved and relabelled by the classifier.
    n_neighbors : int
        Neighbours per utterance in the graph that ranks merge candidates.
    sample_size, union_side : int
        How many texts an LLM judge is shown for one cluster, and per side of a union.
    confirm : bool or None
        Ask every Good verdict a second time before acting on it (noise robustness);
        None turns it on for rich budgets (``budget >= 0.75``).
    k_hint : int, "auto" or None
        An anchor, off by default: about how many intents the input holds. With n rows,
        the coarse clusters are made no larger than ``n / k_hint`` rows, groups down to
        half that size are kept, and merging stops once ``k_hint`` groups are left; it
        never makes a fit coarser than the defaults. ``"auto"`` takes the label-free
        cosine-cut estimate of the input (:func:`dialin.models.estimate_n_intents`, seeded
        on its own so the fit's random stream is the one it has without a hint): it keeps
        a small input of many intents from collapsing into a few broad groups, which is
        what a service's first discovery runs see. What it changes: ``bench/k_estimate.py``.
    lookahead : int
        How many questions of growth and merge go to the judge at once. Those phases
        decide one question at a time, each answer changing the next question; with
        ``lookahead`` > 1, whenever the next answer is not known yet, the questions of
        the next ``lookahead`` micro-clusters (or merge pairs), as things stand, are asked
        in one batch, which an LLM judge's client sends concurrently, so a fit waits for
        about one round trip per batch instead of one per question. The phase then reads
        the answers from the ledger as it reaches them; a question whose view changed in
        the meantime (an earlier answer grew its group) is asked anew. So with a judge
        that answers a prompt the same way each time the decisions are those of asking
        one at a time, except that questions asked ahead and never reached count against
        the budget (``ledger_summary_["asked_ahead_unused"]``). 1 (the default) asks one
        at a time. What it changes: ``bench/lookahead.py``.
    warm_share : float
        With ``prior_labels`` (a warm start, see the module docstring): the share of the
        per-row budget that rows of an earlier certified group cost; their groups are
        re-checked with one question each instead of being clustered again.
    random_state : int, RandomState or None

    Attributes
    ----------
    labels_, n_clusters_, intents_, log_, n_judge_calls_, calls_by_phase_
        What every strategy sets (:data:`~._contract.FITTED_ATTRIBUTES`); ``log_`` has
        one dict per phase (``coarse``, ``growth``, ``merge``, ``leftovers``).
    budget_, ledger_summary_, seconds_
        The budget used (calls per utterance), the ledger's figures and the fit's time.
    k_hint_
        The anchor the fit used (the estimate when ``k_hint="auto"``), None without one.
    in_group_
        One bool per row: True where the row was in a group a verdict admitted, False where
        the leftover classifier gave it its label (what a later warm start may keep).
    """

    def __init__(self, judge: Judge, namer: Namer | None = None, budget: float | None = None,
                 max_calls: int | None = None, coarse_size: float = 15.0,
                 micro_size: float | None = None, growth_share: float = 0.85,
                 min_group_size: int = 8, n_neighbors: int = 10, confirm_share: float = 0.15,
                 stop_window: int = 80, stop_rate: float = 0.05, sample_size: int = 20,
                 union_side: int = 10, confirm: bool | None = None,
                 k_hint: int | Literal["auto"] | None = None, lookahead: int = 1,
                 warm_share: float = 0.25, random_state=None) -> None:
        self.judge = judge
        self.namer = namer
        self.budget = budget
        self.max_calls = max_calls
        self.coarse_size = coarse_size
        self.micro_size = micro_size
        self.growth_share = growth_share
        self.min_group_size = min_group_size
        self.n_neighbors = n_neighbors
        self.confirm_share = confirm_share
        self.stop_window = stop_window
        self.stop_rate = stop_rate
        self.sample_size = sample_size
        self.union_side = union_side
        self.confirm = confirm
        self.k_hint = k_hint
        self.lookahead = lookahead
        self.warm_share = warm_share
        self.random_state = random_state

    # ------------------------------------------------------------------ fit
    @single_threaded
    def fit(self, X: np.ndarray, y=None, *, texts: Sequence[str] | None = None,
            prior_labels: Sequence[int] | None = None) -> "BudgetITLClustering":
        """Cluster the rows of ``X`` (unit-length embeddings; ``texts`` are what the judge
        reads, placeholders when None). ``y`` is not used; texts passed in its place fail.

        ``prior_labels`` (one int per row, -1 for none): the groups an earlier fit
        certified, for a warm start (module docstring). They are not gold labels: each
        group is asked about again, and a group the judge now refuses is clustered anew.
        """
        check_no_y(y)
        given = list(texts) if texts is not None else None
        X = check_embeddings(X, given, min_rows=2)
        n = X.shape[0]
        prior = None
        if prior_labels is not None:
            prior = np.asarray(prior_labels)
            if prior.shape != (n,) or not np.issubdtype(prior.dtype, np.integer):
                raise ValueError(f"prior_labels must be {n} integers (one per row, -1 for "
                                 f"none), got shape {prior.shape} of {prior.dtype}")
        if not 0.0 <= self.warm_share <= 1.0:
            raise ValueError(f"warm_share must be in [0, 1], got {self.warm_share}")
        budget = self.budget if self.budget is not None else self.judge.default_budget
        if not budget > 0:
            raise ValueError(f"budget must be > 0 calls per utterance, got {budget}")
        if self.k_hint is not None and self.k_hint != "auto" and not (
                isinstance(self.k_hint, (int, np.integer)) and self.k_hint >= 1):
            raise ValueError(f"k_hint must be None, 'auto' or an integer >= 1, got {self.k_hint!r}")
        if not (isinstance(self.lookahead, (int, np.integer)) and self.lookahead >= 1):
            raise ValueError(f"lookahead must be an integer >= 1, got {self.lookahead!r}")
        started = time.perf_counter()
        run = _BudgetFit(self, X, given if given is not None else placeholder_texts(n),
                         float(budget), prior)
        labels = run.fit()

        self.budget_ = run.budget
        self.k_hint_ = run.k_hint
        self.labels_ = labels
        self.log_ = run.log
        self.in_group_ = run.in_group
        self.n_judge_calls_ = run.ledger.n_calls
        self.calls_by_phase_ = dict(run.ledger.calls_by_phase)
        self.ledger_summary_ = run.ledger.summary()
        self.intents_ = build_intents(labels, given, X, namer=self.namer, rng=run.gen,
                                      verdicts=run.group_verdicts)
        self.n_clusters_ = len(self.intents_)
        self.seconds_ = time.perf_counter() - started
        return self


#: A question a fit may ask the judge: its view, made for a given repetition.
Question = Callable[[int], ClusterView]


class _BudgetFit:
    """One fit's working state and its four phases; nothing of it outlives the fit.

    The estimator keeps only its parameters and the fitted results: the generators, the
    call cap, the ledger and the verdicts of the groups live here, for one call of
    :meth:`BudgetITLClustering.fit`.
    """

    def __init__(self, est: BudgetITLClustering, X: np.ndarray, texts: Sequence[str],
                 budget: float, prior: np.ndarray | None = None) -> None:
        n = X.shape[0]
        self.est = est
        self.budget = budget
        self.X, self.texts = X, texts
        self.rng = check_random_state(est.random_state)
        # A warm start: the earlier fit's groups big enough to keep, each re-checked once.
        self.prior_groups: list[np.ndarray] = []
        if prior is not None:
            ids, sizes = np.unique(prior[prior >= 0], return_counts=True)
            self.prior_groups = [np.flatnonzero(prior == g)
                                 for g, size in zip(ids, sizes) if size >= est.min_group_size]
        in_prior = sum(len(g) for g in self.prior_groups)
        cap = int(budget * (n - in_prior + est.warm_share * in_prior)) + len(self.prior_groups)
        if est.max_calls is not None:
            cap = min(cap, int(est.max_calls))
        self.cap = max(cap, 1)
        self.gen = np.random.default_rng(self.rng.randint(2**31 - 1))
        self.ledger = JudgeLedger(est.judge)
        self.verdicts: dict[int, Verdict] = {}
        self.group_verdicts: dict[int, Verdict] = {}
        self.in_group = np.zeros(n, bool)  # rows in a judged group (set by the leftovers phase)
        self.confirm = budget >= 0.75 if est.confirm is None else bool(est.confirm)
        # The anchor: no coarser than k_hint intents of n / k_hint rows would be.
        self.k_hint = est.k_hint
        if self.k_hint == "auto":
            self.k_hint = estimate_n_intents(X, "cosine-cut", random_state=0) if n >= 4 else None
        self.coarse_size, self.min_group_size = est.coarse_size, est.min_group_size
        if self.k_hint is not None:
            size = n / int(self.k_hint)
            self.coarse_size = min(est.coarse_size, max(2.0, size))
            self.min_group_size = min(est.min_group_size, max(2, round(size / 2)))
        self.log: list[dict] = []
        # Large inputs are partitioned once; the coarse k-means and the Ward micro-clusters
        # run inside the parts, so they grow as n rather than n^2 (one part up to 5,000 rows).
        self.parts = split_rows(X, self.rng)

    def fit(self) -> np.ndarray:
        """The four phases in order; the labels of every row."""
        n = self.X.shape[0]
        self.est.judge.prepare(self.X, self.texts)
        groups = self._coarse(n)
        groups = self._grow(groups, n)
        groups = self._merge(groups)
        return self._assign_leftovers(groups, n)

    # --------------------------------------------------------------- phases
    def _left(self) -> int:
        return self.cap - self.ledger.n_calls

    def _recheck(self, n: int) -> tuple[list[np.ndarray], np.ndarray]:
        """A warm start's first step: the earlier groups the judge still calls Good (one
        question each), and the rows left to cluster (all rows without a warm start)."""
        if not self.prior_groups:
            return [], np.arange(n)
        verdicts = self.ledger.ask([self._view(g) for g in self.prior_groups], "recheck")
        kept = [g for g, v in zip(self.prior_groups, verdicts) if v.is_good]
        for g, v in zip(self.prior_groups, verdicts):
            self._note(g, v)
        taken = np.zeros(n, bool)
        for g in kept:
            taken[g] = True
        self.log.append({"phase": "recheck", "groups": len(self.prior_groups), "good": len(kept),
                         "bad": len(self.prior_groups) - len(kept), "calls": self.ledger.n_calls})
        return kept, np.flatnonzero(~taken)

    def _coarse(self, n: int) -> list[np.ndarray]:
        anchors, rows = self._recheck(n)
        if len(rows) == 0:
            return anchors
        k = int(round(len(rows) / self.coarse_size))
        k = max(1, min(k, len(rows), int(0.5 * self.cap)))
        if len(rows) < n:  # a warm start: only the rows no kept group holds
            labels = kmeans_in_parts(self.X[rows], k, split_rows(self.X[rows], self.rng),
                                     self.rng, refine=_REFINE_ITERATIONS)
        elif len(self.parts) == 1:
            labels = _kmeans(self.X, k, self.rng)
        else:
            labels = kmeans_in_parts(self.X, k, self.parts, self.rng, refine=_REFINE_ITERATIONS)
        clusters = [rows[labels == c] for c in range(labels.max() + 1)]
        clusters = [c for c in clusters if len(c)]
        verdicts = self.ledger.ask([self._view(c) for c in clusters], "coarse")
        good = [c for c, v in zip(clusters, verdicts) if v.is_good]
        for c, v in zip(clusters, verdicts):
            self._note(c, v)
        self.log.append({"phase": "coarse", "parts": len(self.parts), "n_cluster": len(clusters),
                         "good": len(good), "bad": len(clusters) - len(good),
                         "calls": self.ledger.n_calls})
        return anchors + good

    def _grow(self, anchors: list[np.ndarray], n: int) -> list[np.ndarray]:
        in_anchor = np.zeros(n, bool)
        for a in anchors:
            in_anchor[a] = True
        rest = np.flatnonzero(~in_anchor)
        size = self.est.micro_size or float(np.clip(1.0 / (0.55 * self.budget), 3, 10))
        micros = [m for part in self.parts
                  for m in _ward_groups(self.X, np.intersect1d(part, rest, assume_unique=True), size)]
        growth_cap = int(self.est.growth_share * self.cap)
        X = self.X
        a_sum = [X[a].sum(0) for a in anchors]
        a_cent = np.array([unit(s) for s in a_sum]) if anchors else np.zeros((0, X.shape[1]), np.float32)
        m_cent = np.array([unit(X[m].sum(0)) for m in micros]) if micros else np.zeros((0, X.shape[1]))
        # best[i] = (similarity, anchor) of micro i's nearest anchor, kept up to date lazily
        sims = m_cent @ a_cent.T if len(anchors) else np.full((len(micros), 0), -1.0)
        best_sim = sims.max(1) if sims.shape[1] else np.full(len(micros), -1.0)
        best_a = sims.argmax(1) if sims.shape[1] else np.full(len(micros), -1)
        unvisited = np.ones(len(micros), bool)
        joined = new = dropped = 0
        while unvisited.any() and self.ledger.n_calls < growth_cap:
            i = int(np.flatnonzero(unvisited)[np.argmax(best_sim[unvisited])])
            ahead = partial(self._ask_growth_ahead, i, anchors, micros, best_a, best_sim,
                            unvisited, growth_cap)
            unvisited[i] = False
            micro = micros[i]
            a = int(best_a[i])
            if a >= 0:
                verdict = self._confirmed(lambda r: self._union_view(anchors[a], micro, r), "growth",
                                          ahead)
                if verdict.is_good:
                    anchors[a] = np.concatenate([anchors[a], micro])
                    self._note(anchors[a], verdict)
                    a_sum[a] = a_sum[a] + X[micro].sum(0)
                    col = m_cent @ unit(a_sum[a])
                    # the anchor moved: refresh the micros that pointed at it or now prefer it
                    stale = (best_a == a) | (col > best_sim)
                    best_sim[stale] = col[stale]
                    best_a[stale] = a
                    joined += 1
                    continue
            if self.ledger.n_calls >= growth_cap:
                break
            # asked first only when there is no anchor; after a refused union, as it comes
            verdict = self._confirmed(lambda r: self._view(micro, r), "growth",
                                      ahead if a < 0 else None)
            if verdict.is_good:
                anchors.append(micro)
                self._note(micro, verdict)
                a_sum.append(X[micro].sum(0))
                col = m_cent @ unit(a_sum[-1])
                better = col > best_sim
                best_sim[better] = col[better]
                best_a[better] = len(anchors) - 1
                new += 1
            else:
                dropped += 1
        self.log.append({"phase": "growth", "micro_clusters": len(micros), "micro_size": size,
                         "joined": joined, "new_anchors": new, "rejected": dropped,
                         "unvisited": int(unvisited.sum()), "groups": len(anchors),
                         "calls": self.ledger.n_calls})
        return anchors

    def _merge(self, groups: list[np.ndarray]) -> list[np.ndarray]:
        n_groups = len(groups)
        if n_groups < 2 or self._left() <= 0:
            return groups
        owner = np.full(self.X.shape[0], -1)
        for g, members in enumerate(groups):
            owner[members] = g
        state = _Groups(groups, self.X, _group_edges(self.X, owner, self.est.n_neighbors))
        stats = {"asked": 0, "accepted": 0}
        # Most kNN-connected pairs first; then pairs of near centroids, for parts of one
        # intent that share no neighbour edge (measured on the 10k BANKING77 train split,
        # 77 intents: 127 -> 117 groups; on the 3k test split the budget is spent first).
        self._merge_pass(state, state.link_score, state.linked_pairs, stats)
        self._merge_pass(state, state.centroid_score, state.near_pairs, stats)
        # One Bad verdict is a cannot-link, but a judge that errs 4% of the time leaves
        # dozens of false ones on a large input: near pairs with a single Bad are asked
        # once more, on a fresh sample (the paper's repeated evaluation). Measured on the
        # 10k BANKING77 train split, oracle 0.96, budget 0.3, seeds 0/1: 117/113 -> 94/97
        # groups, NMI 0.862 -> 0.874/0.871. A deterministic judge would answer the same.
        if not self.est.judge.deterministic:
            state.allowed_bad = 2
            self._merge_pass(state, state.centroid_score, state.near_pairs, stats)
        self.log.append({"phase": "merge", "groups_before": n_groups, "groups": len(state.members),
                         **stats, "calls": self.ledger.n_calls})
        return list(state.members.values())

    def _merge_pass(self, state: "_Groups", score, pairs_of, stats: dict) -> None:
        """Ask about the best-scoring open pair until merges stop being accepted."""
        heap = [(-score(a, b), a, b) for a, b in pairs_of(None)]
        heapq.heapify(heap)
        window = self.est.stop_window
        recent: deque[bool] = deque(maxlen=window)
        while heap and self._left() > 0:
            if self.k_hint is not None and len(state.members) <= self.k_hint:
                break  # the anchor: as many groups as the hint says intents
            neg, a, b = heapq.heappop(heap)
            if not state.open(a, b) or -neg != score(a, b):
                continue  # merged away, forbidden, or a stale entry
            ma, mb = state.members[a], state.members[b]
            rep = 2 * state.bad(a, b)  # a fresh question when the pair is asked again
            verdict = self._ask(self._union_view(ma, mb, repetition=rep), "merge",
                                lambda: self._ask_merge_ahead(heap, state, score, (a, b)))
            if verdict.is_good and self._merge_confirmed(ma, mb) and self._left() > 0:
                verdict = self.ledger.ask_one(self._union_view(ma, mb, repetition=rep + 1), "merge")
            stats["asked"] += 1
            recent.append(verdict.is_good)
            if verdict.is_good:
                stats["accepted"] += 1
                g = state.join(a, b)
                self._note(state.members[g], verdict)
                for pair in pairs_of(g):
                    heapq.heappush(heap, (-score(*pair), *pair))
            else:
                state.forbid(a, b)
            if len(recent) == window and sum(recent) < self.est.stop_rate * window:
                break

    def _assign_leftovers(self, groups: list[np.ndarray], n: int) -> np.ndarray:
        from sklearn.linear_model import LogisticRegression

        kept = [g for g in groups if len(g) >= self.min_group_size]
        kept.sort(key=len, reverse=True)
        labels = np.full(n, -1, dtype=np.int64)
        for c, members in enumerate(kept):
            labels[members] = c
        self.group_verdicts = {c: self.verdicts[int(g.min())] for c, g in enumerate(kept)
                               if int(g.min()) in self.verdicts}
        self.in_group = labels >= 0
        rest = np.flatnonzero(labels < 0)
        if len(kept) == 0:
            # No Good verdict covers any utterance: one cluster of everything would be an
            # "intent" nobody certified, so every row stays unassigned.
            warnings.warn(f"the judge certified no cluster: all {n} utterances are left "
                          "unassigned (label -1)", NothingCertifiedWarning, stacklevel=4)
        elif len(kept) == 1:
            labels[rest] = 0
        elif len(rest) and len(self.parts) > 1:
            # A large input: the nearest group centroid, one matrix product. The logistic
            # regression below costs rows x groups x iterations, which grows as n^2 here.
            centroids = unit(np.array([self.X[m].sum(0) for m in kept]))
            labels[rest] = np.argmax(self.X[rest] @ centroids.T, axis=1)
        elif len(rest):
            # float64: scikit-learn's lbfgs path is several times slower on float32 here.
            train = labels >= 0
            clf = LogisticRegression(C=10.0, max_iter=300)
            clf.fit(self.X[train].astype(np.float64), labels[train])
            labels[rest] = clf.predict(self.X[rest].astype(np.float64))
        self.log.append({"phase": "leftovers", "groups_kept": len(kept),
                         "groups_dissolved": len(groups) - len(kept),
                         "reassigned": int(len(rest)), "calls": self.ledger.n_calls})
        return labels

    # ------------------------------------------------------------ lookahead
    def _ask(self, view: ClusterView, phase: str, ahead: Callable[[], None] | None) -> Verdict:
        """Ask ``view``; with ``lookahead`` > 1, when its answer is not known yet, first
        ``ahead()``: ask it together with the questions expected next."""
        if ahead is not None and self.est.lookahead > 1 and not self.ledger.has(view):
            ahead()
        return self.ledger.ask_one(view, phase)

    def _ask_growth_ahead(self, first: int, anchors: list[np.ndarray], micros: list[np.ndarray],
                          best_a: np.ndarray, best_sim: np.ndarray, unvisited: np.ndarray,
                          growth_cap: int) -> None:
        """Ask the growth questions of micro-cluster ``first`` and of the next unvisited
        ones, ``lookahead`` in all, as things stand, in batches: each one's union with its
        nearest anchor, then what its answer leads to (the confirmation, or the
        micro-cluster alone), as :meth:`_grow` asks."""
        rest = np.flatnonzero(unvisited)
        rest = rest[np.argsort(-best_sim[rest], kind="stable")][: self.est.lookahead - 1]
        todo = [first, *rest.tolist()]

        def union(i: int) -> Question:
            return lambda r: self._union_view(anchors[int(best_a[i])], micros[i], r)

        def alone(i: int) -> Question:
            return lambda r: self._view(micros[i], r)

        self._ask_trees([[union(i), alone(i)] if best_a[i] >= 0 else [alone(i)] for i in todo],
                        "growth", growth_cap)

    def _ask_merge_ahead(self, heap: list, state: "_Groups", score, first: tuple[int, int]) -> None:
        """Ask the merge questions of pair ``first`` and of the next pairs of the queue that
        share no group with it or each other (an answer about one cannot change the others'
        views), ``lookahead`` in all, in batches."""
        pairs, used, popped = [first], set(first), []
        while heap and len(pairs) < self.est.lookahead:
            entry = heapq.heappop(heap)
            popped.append(entry)
            neg, a, b = entry
            if state.open(a, b) and -neg == score(a, b) and not used & {a, b}:
                pairs.append((a, b))
                used |= {a, b}
        for entry in popped:
            heapq.heappush(heap, entry)

        def pair(a: int, b: int) -> Question:
            ma, mb, rep = state.members[a], state.members[b], 2 * state.bad(a, b)
            return lambda r: self._union_view(ma, mb, repetition=rep + r)

        confirmed = [self._merge_confirmed(state.members[a], state.members[b]) for a, b in pairs]
        self._ask_trees([[pair(a, b)] for a, b in pairs], "merge", self.cap, confirmed)

    def _merge_confirmed(self, ma: np.ndarray, mb: np.ndarray) -> bool:
        """Whether a Good answer about merging ``ma`` and ``mb`` is asked again: always with
        ``confirm``, else when the smaller side is ``confirm_share`` of the union or more."""
        return self.confirm or min(len(ma), len(mb)) >= self.est.confirm_share * (len(ma) + len(mb))

    def _ask_trees(self, questions: list[list[Question]], phase: str, cap: int,
                   confirmed: list[bool] | None = None) -> None:
        """Ask each item's questions in rounds, one batch per round: an item asks its first
        question at repetition 0; a Good answer is asked again at repetition 1 where it needs
        confirming, and a Bad one (first or confirmed) moves the item on to its next
        question, as the phases do one by one."""
        confirm = confirmed or [self.confirm] * len(questions)
        state = [(0, 0) for _ in questions]  # (question, repetition) each item asks next
        while True:
            live = [k for k, (q, _) in enumerate(state) if q < len(questions[k])]
            left = cap - self.ledger.n_calls
            if not live or left <= 0:
                return
            views = [questions[k][state[k][0]](state[k][1]) for k in live]
            answers = self.ledger.ask_ahead(views, phase, left)
            for k, verdict in zip(live, answers):
                q, rep = state[k]
                if verdict is None:
                    state[k] = (len(questions[k]), 0)  # beyond the budget: stop here
                elif verdict.is_good and rep == 0 and confirm[k]:
                    state[k] = (q, 1)
                elif verdict.is_good:
                    state[k] = (len(questions[k]), 0)  # decided: Good
                else:
                    state[k] = (q + 1, 0)  # Bad: the next question, if any

    def _confirmed(self, make_view: Question, phase: str,
                   ahead: Callable[[], None] | None = None) -> Verdict:
        """Ask once (:meth:`_ask`); with ``confirm`` on, a Good answer must survive a second
        asking."""
        verdict = self._ask(make_view(0), phase, ahead)
        if verdict.is_good and self.confirm and self._left() > 0:
            verdict = self.ledger.ask_one(make_view(1), phase)
        return verdict

    def _note(self, members: np.ndarray, verdict: Verdict) -> None:
        """Remember the verdict that last admitted a group (keyed by its smallest row)."""
        self.verdicts[int(members.min())] = verdict

    # ---------------------------------------------------------------- views
    def _view(self, members: np.ndarray, repetition: int = 0) -> ClusterView:
        return make_view(members, self.texts, self.X, size=self.est.sample_size,
                         method="nearest", rng=self.gen, repetition=repetition)

    def _union_view(self, a: np.ndarray, b: np.ndarray, repetition: int = 0) -> ClusterView:
        return make_union_view(a, b, self.texts, self.X, per_side=self.est.union_side,
                               method="nearest", rng=self.gen, repetition=repetition)


class _Groups:
    """The merge phase's state: disjoint groups, their kNN links and cannot-links.

    A Bad verdict on a union counts against that pair, and the count is inherited by any
    group either side later joins (a cannot-link, as in constrained agglomerative
    clustering); a pair is open while its count is under :attr:`allowed_bad`.
    """

    def __init__(self, groups: list[np.ndarray], X: np.ndarray, edges: dict, n_near: int = 3) -> None:
        self.X = X
        self.n_near = n_near
        self.members = dict(enumerate(groups))
        self.sums = {g: X[m].sum(0) for g, m in self.members.items()}
        self.links: dict[int, dict[int, int]] = {g: {} for g in self.members}
        for (a, b), w in edges.items():
            self.links[a][b] = self.links[a].get(b, 0) + w
            self.links[b][a] = self.links[b].get(a, 0) + w
        self.cannot: dict[int, dict[int, int]] = {g: {} for g in self.members}  # Bad counts
        self.allowed_bad = 1
        self.next_id = len(groups)

    def bad(self, a: int, b: int) -> int:
        return self.cannot[a].get(b, 0)

    def open(self, a: int, b: int) -> bool:
        return a in self.members and b in self.members and self.bad(a, b) < self.allowed_bad

    def link_score(self, a: int, b: int) -> float:
        return self.links[a].get(b, 0) / np.sqrt(len(self.members[a]) * len(self.members[b]))

    def centroid_score(self, a: int, b: int) -> float:
        return float(unit(self.sums[a]) @ unit(self.sums[b]))

    def linked_pairs(self, g: int | None) -> list[tuple[int, int]]:
        """Pairs with a neighbour edge: all of them, or those of group ``g``."""
        if g is None:
            return [(a, b) for a in self.links for b in self.links[a] if a < b]
        return [(min(g, o), max(g, o)) for o in self.links[g]]

    def near_pairs(self, g: int | None) -> list[tuple[int, int]]:
        """Each group (or ``g``) with its ``n_near`` nearest open groups by centroid."""
        ids = np.array(list(self.members))
        C = np.array([unit(self.sums[i]) for i in ids])
        rows = ids if g is None else np.array([g])
        pairs = set()
        for r in rows:
            sims = C @ unit(self.sums[int(r)])
            taken = 0
            for o in ids[np.argsort(-sims)]:
                if taken == self.n_near:
                    break
                if o != r and self.open(int(r), int(o)):
                    pairs.add((min(int(r), int(o)), max(int(r), int(o))))
                    taken += 1
        return sorted(pairs)

    def join(self, a: int, b: int) -> int:
        g = self.next_id
        self.next_id += 1
        self.members[g] = np.concatenate([self.members.pop(a), self.members.pop(b)])
        self.sums[g] = self.sums.pop(a) + self.sums.pop(b)
        ca, cb = self.cannot.pop(a), self.cannot.pop(b)
        self.cannot[g] = {o: max(ca.get(o, 0), cb.get(o, 0)) for o in set(ca) | set(cb) if o not in (a, b)}
        for other, count in self.cannot[g].items():
            self.cannot[other].pop(a, None)
            self.cannot[other].pop(b, None)
            self.cannot[other][g] = count
        la, lb = self.links.pop(a), self.links.pop(b)
        self.links[g] = {}
        for other in (set(la) | set(lb)) - {a, b}:
            if other in self.members:
                w = la.get(other, 0) + lb.get(other, 0)
                self.links[g][other] = w
                self.links[other].pop(a, None)
                self.links[other].pop(b, None)
                self.links[other][g] = w
        return g

    def forbid(self, a: int, b: int) -> None:
        self.cannot[a][b] = self.cannot[b][a] = self.bad(a, b) + 1


# -------------------------------------------------------------------- helpers
def _kmeans(X: np.ndarray, k: int, rng) -> np.ndarray:
    return cluster(X, k, method="kmeans", random_state=int(rng.randint(2**31 - 1)))


def _ward_groups(X: np.ndarray, rows: np.ndarray, size: float) -> list[np.ndarray]:
    """Ward micro-clusters of ``rows`` with mean size ``size`` (Ward beat k-means here)."""
    if len(rows) == 0:
        return []
    k = max(1, min(len(rows), int(round(len(rows) / size))))
    if k == 1 or len(rows) < 3:
        return [rows]
    labels = cluster(X[rows], k, method="agglomerative")
    return [rows[labels == c] for c in range(labels.max() + 1) if (labels == c).any()]


def _group_edges(X: np.ndarray, owner: np.ndarray, k: int) -> dict[tuple[int, int], int]:
    """Count k-nearest-neighbour edges between groups (rows with owner -1 are skipped)."""
    rows = np.flatnonzero(owner >= 0)
    if len(rows) < 2:
        return {}
    nn = nearest_rows(X[rows], k)
    k = nn.shape[1]
    src = np.repeat(owner[rows], k)
    dst = owner[rows][nn].ravel()
    keep = src != dst
    pairs = np.stack([np.minimum(src, dst), np.maximum(src, dst)], 1)[keep]
    uniq, counts = np.unique(pairs, axis=0, return_counts=True)
    return {(int(a), int(b)): int(c) for (a, b), c in zip(uniq, counts)}
