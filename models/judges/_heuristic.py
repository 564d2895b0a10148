"""The offline, label-free judge and namer (``backend`` "heuristic" / "keywords").

:class:`HeuristicJudge` stands in for the paper's LLM_eval from embedding geometry
alone. Two statistics of a cluster, each turned into a percentile against reference
clusters that k-means finds in the same data (calibration happens in ``prepare``, so
the threshold adapts to each data set and embedding space):

* **tightness**: the mean pairwise cosine similarity of the members,
  ``(|sum x|^2 - n) / (n (n - 1))`` for unit rows. Unlike the mean cosine to the
  centroid it has no size bias (a small cluster's centroid is not pulled towards each
  member), so one threshold serves clusters of 5 and of 60. It is ranked against
  reference clusters of typical size (8-25).
* **neighbour share**: the share of the members' 10 nearest neighbours (FAISS
  exact inner-product search over the whole data set) that are members too. It tells a
  cluster that is a real island from one cut out of a continuum, but grows with size,
  so it is ranked against size-matched reference clusters (within a factor 1.5).

The cluster is Good when the mean of the two percentiles exceeds ``quantile``. How often
it agrees with the oracle's truth (one gold label covers >= 90%) on k-means clusters of
BANKING77 train is measured by ``bench/judge_agreement.py`` (``docs/benchmarks.md``);
``tests/test_heuristic.py`` checks it beats always answering the majority verdict.

A question about a union (a view with ``split``: "are A and B one intent?") is by
default judged like any cluster, on the members of both sides. With
``union_quantile`` set it is judged on the **link ratio** of the two sides instead:
edges of the 20-nearest-neighbour graph per ordered pair of members, between the
sides over within them (about 1 for two random halves of one blob whatever their
sizes, near 0 for separate clusters; a graph form of average linkage), ranked against
neighbouring sibling clusters of the reference partitions (sizes ~8 and ~15). Measured
inside ``BudgetITLClustering`` (budget 0.3, MiniLM): on the union questions the engine
really asks on BANKING77 test, the ratio ranks same-intent pairs above different-intent
pairs with AUC 0.80-0.84 where the single-cluster score gets 0.54-0.65. NMI on
BANKING77 test, seeds 0/1/2, off -> ``union_quantile=0.65``: 0.780/0.790/0.792 ->
0.803/0.806/0.807 (k-means told k=77: 0.783/0.801/0.800; 80-83 clusters instead of
95-100); BANKING77 train seed 0: 0.788 -> 0.787 (k-means 0.771; 283 clusters instead of
250). It is off by default because it hurts CrossWOZ val (LSA, per role): NMI 0.673 ->
0.654 (k-means 0.656); a lower ``union_quantile`` (0.5) keeps CrossWOZ at 0.657 but
loses BANKING77 test seed 1 (0.788). The right quantile depends on how densely the data
samples each intent, which a label-free judge cannot see. (Those figures are from
development on BANKING77 test; the value the factory sets for the budget strategy, with
the default budget, is chosen on tuning data only by ``bench/quality.py --only tune``.)

:class:`KeywordNamer` stands in for LLM_name: an "action-objective" label where the
action comes from small trigger lexicons (English regular expressions; Chinese
trigger words) and the objective from the cluster's most distinctive TF-IDF keywords
(scikit-learn ``TfidfVectorizer`` over ``simplemma`` lemmas; Chinese words segmented by
``jieba``), without repeated stems, in the order the members say them. How often the
nearest gold intent name to a label is the cluster's own, and the default of three
keywords, are measured by ``bench/names.py`` (``docs/benchmarks.md``, "Intent names").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from itertools import permutations

import numpy as np

from .._base import ClusterView, Judge, Namer, Verdict
from .._vectors import nearest_rows
from ..cluster._clusterers import cluster, kmeans_in_parts, split_rows
from ..text._keywords import dominant_action, keyword_tokens, keyword_vectorizer, same_stem
from ..text._language import detect_language_from_head

_K_NEIGHBOURS = 10  # neighbour share of one cluster
_K_LINKS = 20  # the graph that weighs the two sides of a union
_TOP_SIZE = 60  # the coarse reference partition; finer ones split each of its clusters
_REF_SIZES = (4, 8, 15, 30)
_PAIR_SIZES = (8, 15)  # reference unions: neighbouring siblings of these partitions
_MAX_TOP_GROUPS = 120  # bounds calibration time on large inputs
_TYPICAL = (8, 25)
_MAX_KEYWORDS = 6  # the namer orders its words by trying every order: 720 at six


class HeuristicJudge(Judge):
    """Good when a cluster is tighter and more self-contained than typical k-means
    clusters of this data set, and a union when its two sides are as linked as
    neighbouring pieces of typical clusters; label-free, deterministic, free of charge."""

    backend = "heuristic"
    # It costs nothing and errs more than an LLM, so it may spend more calls. Chosen with
    # union_quantile on tuning data only (BANKING77 train subsets, half of CrossWOZ val):
    # `python bench/quality.py --only tune`, docs/benchmarks.md.
    default_budget = 0.6
    deterministic = True

    def __init__(self, quantile: float = 0.5, union_quantile: float | None = None, min_size: int = 2,
                 random_state: int | None = 0) -> None:
        self.quantile = quantile
        self.union_quantile = union_quantile
        self.min_size = min_size
        self.random_state = random_state

    # -- calibration ------------------------------------------------------------
    def prepare(self, X: np.ndarray, texts: Sequence[str] | None = None) -> None:
        if not 0.0 < self.quantile < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {self.quantile}")
        if self.union_quantile is not None and not 0.0 < self.union_quantile < 1.0:
            raise ValueError(f"union_quantile must be None or in (0, 1), got {self.union_quantile}")
        if int(self.min_size) < 2:
            raise ValueError(f"min_size must be >= 2 (a pairwise statistic needs two members), got {self.min_size}")
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[0] == 0:
            raise ValueError(f"X must be a non-empty (n, d) array, got shape {X.shape}")
        self.X_ = X
        self.neighbours_ = (nearest_rows(X, max(_K_NEIGHBOURS, _K_LINKS)) if X.shape[0] > 1
                            else np.zeros((1, 0), np.int64))
        sizes, tight, share, links = [], [], [], []
        for size, parts in self._reference_partitions():
            parts = [m for m in parts if m.size >= 2]
            for m in parts:
                t, s = self._stats(m)
                sizes.append(m.size)
                tight.append(t)
                share.append(s)
            if size in _PAIR_SIZES and self.union_quantile is not None:
                links.extend(self._sibling_links(parts))
        self.ref_sizes_ = np.asarray(sizes, dtype=np.float64)
        self.ref_tightness_ = np.asarray(tight)
        self.ref_share_ = np.asarray(share)
        typical = (self.ref_sizes_ >= _TYPICAL[0]) & (self.ref_sizes_ <= _TYPICAL[1])
        base = self.ref_tightness_[typical] if typical.sum() >= 20 else self.ref_tightness_
        self.typical_tightness_ = np.sort(base)
        self.ref_links_ = np.sort(np.asarray(links, dtype=np.float64))

    def _reference_partitions(self):
        """``(size, clusters)``: a coarse k-means partition into parts of ~60, and each
        part split again into clusters of ~4..30 (k-means)."""
        X, n = self.X_, self.X_.shape[0]
        rng = np.random.RandomState(self.random_state)
        if n < 2 * _REF_SIZES[0]:
            yield n, [np.arange(n)]
            return
        k0 = max(1, n // _TOP_SIZE)
        top = kmeans_in_parts(X, k0, split_rows(X, rng), rng, n_redo=1) if k0 > 1 else np.zeros(n, np.int64)
        groups = [np.flatnonzero(top == c) for c in np.unique(top)]
        if len(groups) > _MAX_TOP_GROUPS:
            groups = [groups[i] for i in np.sort(rng.choice(len(groups), _MAX_TOP_GROUPS, replace=False))]
        yield _TOP_SIZE, groups
        for g in groups:
            for size in _REF_SIZES:
                k = round(g.size / size)
                if 2 <= k < g.size:
                    labels = cluster(X[g], k, "kmeans", random_state=rng)
                    yield size, [g[labels == c] for c in range(labels.max() + 1)]

    def _sibling_links(self, parts: list[np.ndarray]) -> list[float]:
        """Link ratios of every two sibling clusters joined by at least one edge."""
        out = []
        for i, a in enumerate(parts):
            for b in parts[i + 1:]:
                ratio, cross = self._link_ratio(a, b)
                if cross > 0:
                    out.append(ratio)
        return out

    # -- statistics -------------------------------------------------------------
    def _stats(self, m: np.ndarray) -> tuple[float, float]:
        n = m.size
        total = self.X_[m].astype(np.float64).sum(axis=0)
        tightness = (total @ total - n) / (n * (n - 1))
        kk = min(_K_NEIGHBOURS, self.neighbours_.shape[1], n - 1)
        share = float(np.isin(self.neighbours_[m, :kk], m).mean()) if kk > 0 else 1.0
        return float(tightness), share

    def _link_ratio(self, a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
        """How densely the two sides link to each other, relative to inside themselves.

        Edges of the ``_K_LINKS``-nearest-neighbour graph, as a density per ordered
        pair of members: between the sides over within them (pooled). It is about 1
        for two random halves of one blob, whatever their sizes, and near 0 for two
        separate clusters: a graph form of average linkage.
        """
        nb = self.neighbours_[:, :_K_LINKS]
        ab = int(np.isin(nb[a], b).sum()) + int(np.isin(nb[b], a).sum())
        within = int(np.isin(nb[a], a).sum()) + int(np.isin(nb[b], b).sum())
        pairs_within = a.size * (a.size - 1) + b.size * (b.size - 1)
        cross = ab / (2.0 * a.size * b.size)
        if within == 0 or pairs_within == 0:
            return (1.0 if ab else 0.0), ab
        return cross / (within / pairs_within), ab

    def _score(self, m: np.ndarray) -> float:
        tightness, share = self._stats(m)
        p_tight = np.searchsorted(self.typical_tightness_, tightness, side="right") / len(self.typical_tightness_)
        # Size-matched reference for the neighbour share; widen to the 20 nearest sizes.
        logs = np.log(self.ref_sizes_)
        near = np.abs(logs - np.log(m.size)) <= np.log(1.5)
        if near.sum() < 20:
            near = np.argsort(np.abs(logs - np.log(m.size)), kind="stable")[:20]
        ref = self.ref_share_[near]
        p_share = float(np.mean(ref <= share))
        return (p_tight + p_share) / 2.0

    def _union_score(self, a: np.ndarray, b: np.ndarray) -> float:
        """Percentile of the sides' link ratio among neighbouring reference siblings."""
        ratio, _ = self._link_ratio(a, b)
        if self.ref_links_.size == 0:
            return ratio
        return float(np.searchsorted(self.ref_links_, ratio, side="right") / self.ref_links_.size)

    # -- judging ----------------------------------------------------------------
    def cache_key(self, view: ClusterView) -> tuple:
        # The verdict depends on the member sets only, never on which texts were sampled;
        # a union question is the pair of its sides, in either order.
        sides = _sides(view)
        if len(sides) == 2 and self.union_quantile is not None:
            return (frozenset(tuple(s.tolist()) for s in sides), view.repetition)
        return (tuple(sorted(view.members)), view.repetition)

    def judge(self, views: Sequence[ClusterView]) -> list[Verdict]:
        if not hasattr(self, "X_"):
            raise RuntimeError("HeuristicJudge.judge called before prepare(X, texts)")
        out = []
        for view in views:
            sides = _sides(view)
            m = np.concatenate(sides) if sides else np.zeros(0, np.int64)
            if m.size and (m.min() < 0 or m.max() >= self.X_.shape[0]):
                bad = m.max() if m.max() >= self.X_.shape[0] else m.min()
                raise IndexError(f"cluster member {bad} is outside the prepared data")
            if m.size < max(int(self.min_size), 2):
                # Too small to measure coherence: say Bad, unsure. Tiny clusters are
                # trivially "coherent" and must not win the good/bad count.
                out.append(Verdict(good=False, confidence=0.0, backend=self.backend))
                continue
            if len(sides) == 2 and self.union_quantile is not None:
                score, q = self._union_score(*sides), float(self.union_quantile)
            else:
                score, q = self._score(m), float(self.quantile)
            confidence = min(1.0, abs(score - q) / max(q, 1.0 - q))
            out.append(Verdict(good=bool(score > q), confidence=float(confidence), backend=self.backend))
        return out


def _sides(view: ClusterView) -> list[np.ndarray]:
    """The distinct members of each side: two arrays for a union question, else one."""
    members = np.asarray(view.members, dtype=np.int64)
    if 0 < view.split < members.size:
        a = np.unique(members[: view.split])
        b = np.setdiff1d(members[view.split:], a)
        if b.size:
            return [a, b]
        return [a]
    return [np.unique(members)] if members.size else []


# --------------------------------------------------------------------------------
# Keyword namer
# --------------------------------------------------------------------------------


class KeywordNamer(Namer):
    """Label-free "action-objective" names: an action from trigger words, an objective
    from the keywords that are most over-represented in the cluster (TF-IDF lift).

    Keywords are lemmas (``lemmatize``), so "card" and "cards" are one; a keyword that
    shares a stem with the action or with a keyword already taken is skipped
    ("inquire-recognize_recognise" cannot happen); the objective's words come in the
    order most members say them ("exchange_rate", not "rate_exchange"), each spelled as
    the members most often spell it. A cluster with no content word over-represented is
    named by its most distinctive words of any kind ("confirm-yes_okay"), never "misc".

    Word order: each text votes for the order it says two keywords in, and the order with
    the most votes wins (Kemeny's; so every two neighbouring words of a label come in the
    order most texts holding both say them). With ``order_by_stem`` a keyword's place in
    a text is where the text first says it or a word of the same stem ("verification"
    places "verify", as a reader would); without, only where it says the keyword itself.

    ``neighbours`` (0: off) scores each word against the cluster's ``neighbours``
    nearest clusters (cosine of centroids in ``X``, else of TF-IDF means) as well as
    against the whole data set (the reference is the mean of the two), as BERTopic's
    c-TF-IDF scores a topic against the others. It is off because on the tuning data it
    names fewer intents right: a neighbour is often another part of the same intent,
    so the words it shares are the intent's own.

    ``max_keywords`` (3) and the defaults above were measured with ``bench/names.py``.
    Five words named the most intents right on the tuning data (BANKING77 train subsets)
    but fewer than three on held-out BANKING77 test, and read longer, so three stay.
    """

    backend = "keywords"

    def __init__(self, lang: str = "auto", max_keywords: int = 3, lemmatize: bool = True,
                 order_by_stem: bool = True, neighbours: int = 0) -> None:
        self.lang = lang
        self.max_keywords = max_keywords
        self.lemmatize = lemmatize
        self.order_by_stem = order_by_stem
        self.neighbours = neighbours

    def prepare(self, X: np.ndarray | None, texts: Sequence[str]) -> None:
        if self.lang not in ("auto", "en", "zh"):
            raise ValueError(f"lang must be 'auto', 'en' or 'zh', got {self.lang!r}")
        if not 1 <= int(self.max_keywords) <= _MAX_KEYWORDS:
            raise ValueError(f"max_keywords must be in 1..{_MAX_KEYWORDS} (a name, not a sentence), "
                             f"got {self.max_keywords}")
        if int(self.neighbours) < 0:
            raise ValueError(f"neighbours must be >= 0, got {self.neighbours}")
        self.texts_ = [str(t) for t in texts]
        if not self.texts_:
            raise ValueError("KeywordNamer.prepare needs at least one text")
        if X is not None and len(X) != len(self.texts_):
            raise ValueError(f"X has {len(X)} rows but there are {len(self.texts_)} texts")
        self.X_ = None if X is None else np.asarray(X)  # read only with ``neighbours``
        self.lang_ = detect_language_from_head(self.texts_) if self.lang == "auto" else self.lang
        vec = keyword_vectorizer(self.lang_, lemmatize=bool(self.lemmatize))
        try:
            self.tfidf_ = vec.fit_transform(self.texts_).tocsr()
            self.terms_ = vec.get_feature_names_out()
        except ValueError:  # only stop words: no vocabulary at all
            self.tfidf_, self.terms_ = None, np.array([], dtype=object)
        self.mean_ = (np.asarray(self.tfidf_.mean(axis=0)).ravel() if self.tfidf_ is not None
                      else np.zeros(0))
        self._any_word_df: Counter[str] | None = None  # built only if a cluster needs it

    def _tokens(self, i: int) -> tuple[tuple[str, str], ...]:
        """``(as written, key)`` per keyword of text ``i``, the keys the vectorizer used."""
        tokens = keyword_tokens(self.texts_[i], self.lang_)
        return tokens if self.lemmatize or self.lang_ == "zh" else tuple((w, w) for w, _ in tokens)

    def _references(self, clusters: list[np.ndarray]) -> list[np.ndarray | None]:
        """Per cluster, the TF-IDF profile its words are scored against: the data set's
        mean, or with ``neighbours`` the mean of that and of its nearest clusters' means."""
        k = min(int(self.neighbours), len(clusters) - 1)
        if self.tfidf_ is None or k < 1 or any(rows.size == 0 for rows in clusters):
            return [None] * len(clusters)
        means = np.vstack([np.asarray(self.tfidf_[rows].mean(axis=0)) for rows in clusters])
        centres = (np.vstack([self.X_[rows].mean(axis=0, dtype=np.float64) for rows in clusters])
                   if self.X_ is not None else means.copy())
        centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
        similar = centres @ centres.T
        np.fill_diagonal(similar, -np.inf)
        nearest = np.argsort(-similar, axis=1, kind="stable")[:, :k]
        return list((self.mean_ + means[nearest].mean(axis=1)) / 2.0)

    def _keywords(self, rows: np.ndarray, action: str | None,
                  reference: np.ndarray | None = None, limit: int | None = None) -> list[str]:
        """Up to ``limit`` (default ``max_keywords``) keys by lift over ``reference`` (the
        data set's mean when None), none sharing a stem with another or the action."""
        if self.tfidf_ is None or rows.size == 0:
            return []
        limit = int(self.max_keywords) if limit is None else int(limit)
        if rows.size == self.tfidf_.shape[0]:
            lift = self.mean_.copy()  # the whole data set: its most weighty words
        else:
            base = self.mean_ if reference is None else reference
            lift = np.asarray(self.tfidf_[rows].mean(axis=0)).ravel() - base
        taken: list[str] = []
        for i in np.argsort(-lift, kind="stable"):
            if lift[i] <= 0 or len(taken) == limit:
                break
            key = str(self.terms_[i])
            if not any(same_stem(key, k) for k in taken + ([action] if action else [])):
                taken.append(key)
        return taken

    def _any_words(self, rows: np.ndarray, action: str | None) -> list[str]:
        """The cluster's most distinctive words of any kind (stop words too) by document
        frequency in the cluster minus in the data set: for clusters without keywords."""
        if self._any_word_df is None:
            self._any_word_df = Counter(w for t in self.texts_ for w in set(_words(t, self.lang_)))
        inside = Counter(w for i in rows for w in set(_words(self.texts_[i], self.lang_)))
        n, size = len(self.texts_), max(rows.size, 1)
        ranked = sorted(inside, key=lambda w: (-(inside[w] / size - self._any_word_df[w] / n), -inside[w], w))
        taken: list[str] = []
        for word in ranked:
            if len(taken) == int(self.max_keywords):
                break
            if not any(same_stem(word, k) for k in taken + ([action] if action else [])):
                taken.append(word)
        return taken

    def _choose(self, rows: np.ndarray, action: str | None,
                reference: np.ndarray | None = None) -> list[str]:
        """The keys the objective says, in any order: the top ``max_keywords`` by lift.
        (``bench/names.py`` overrides it to measure other choices of the same words.)"""
        return self._keywords(rows, action, reference)

    def _objective(self, rows: np.ndarray, action: str | None,
                   reference: np.ndarray | None = None) -> list[str]:
        """The objective's words: keywords (else any distinctive words) in the members'
        order, each as the members most often write it."""
        keys = self._choose(rows, action, reference)
        if keys:
            written: dict[str, Counter[str]] = {k: Counter() for k in keys}
            first: list[dict[str, int]] = []
            for i in rows:
                seen: dict[str, int] = {}
                for pos, (word, key) in enumerate(self._tokens(int(i))):
                    if key in written:
                        written[key][word] += 1
                    places = ([k for k in keys if same_stem(key, k)] if self.order_by_stem
                              else [key] if key in written else [])
                    for k in places:
                        seen.setdefault(k, pos)
                first.append(seen)
            keys = _in_spoken_order(keys, first)
            return [written[k].most_common(1)[0][0] if written[k] else k for k in keys]
        words = self._any_words(rows, action)
        if words:
            first = [{w: p for p, w in reversed(list(enumerate(_words(self.texts_[int(i)], self.lang_))))}
                     for i in rows]
            return _in_spoken_order(words, first)
        digits = any(ch.isdigit() for i in rows for ch in self.texts_[int(i)])
        if self.lang_ == "zh":
            return ["数字" if digits else "符号"]
        return ["number" if digits else "symbol"]

    def _label(self, action: str | None, words: list[str]) -> str:
        objective = "_".join(words)
        if self.lang_ != "zh":
            objective = re.sub(r"[^a-z0-9_]+", "_", objective.lower()).strip("_") or "symbol"
        return f"{action}-{objective}" if action else objective

    def name(self, views: Sequence[ClusterView]) -> list[str]:
        if not hasattr(self, "texts_"):
            raise RuntimeError("KeywordNamer.name called before prepare(X, texts)")
        clusters = []
        for view in views:
            rows = np.unique(np.asarray(view.members, dtype=np.int64))
            if rows.size and (rows[0] < 0 or rows[-1] >= len(self.texts_)):
                raise IndexError("cluster member is outside the prepared texts")
            clusters.append(rows)
        out = []
        for view, rows, reference in zip(views, clusters, self._references(clusters)):
            texts = [self.texts_[i] for i in rows] if rows.size else list(view.texts)
            action = dominant_action(texts, self.lang_)
            out.append(self._label(action, self._objective(rows, action, reference)))
        return out


def _words(text: str, language: str) -> list[str]:
    """Every word of ``text``, stop words included (English lower case; jieba for Chinese)."""
    if language == "zh":
        import jieba

        return [w for w in jieba.lcut(text) if w.strip() and not re.fullmatch(r"\W+", w)]
    return re.findall(r"[a-z]+", text.lower())


def _in_spoken_order(words: list[str], first: Sequence[dict[str, int]]) -> list[str]:
    """``words`` in the order the texts say them: each text holding two of them votes
    for the order it puts them in (``first``: per text, each word's first position), and
    the order with the most votes wins (Kemeny; ties keep the given, lift, order)."""
    ahead = {(a, b): sum(1 for seen in first if a in seen and b in seen and seen[a] < seen[b])
             for a in words for b in words if a != b}
    # permutations() yields the given order first, and max() keeps the first best.
    return list(max(permutations(words),
                    key=lambda order: sum(ahead[order[i], order[j]]
                                          for i in range(len(order)) for j in range(i + 1, len(order)))))
