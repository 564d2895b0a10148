"""Intent-name benchmark (issue 14): do the offline labels read as the intents they name?

Writes the section ``names`` of ``docs/benchmarks.md``. Per data set and seed it fits the
offline default of ``dialin discover`` exactly as the factory builds it from default
settings (budget strategy, heuristic judge, keyword namer; per role on CrossWOZ, whose
turns carry their role), then names the clusters of that one fit with each namer
compared, the same way the estimator does (``prepare`` on the fit's texts, one ``name``
call for every cluster, per role where the fit was per role):

* ``keywords``: the shipped :class:`~dialin.models.KeywordNamer` (the run checks that
  its labels are the ones the fit itself produced),
* ``baseline``: the keyword selection of the namer before issue 14, frozen here
  (:class:`BaselineNamer`: words as written, top lift in lift order, ``misc`` when
  none), so the "before" figure stays reproducible; it shares today's action lexicons,
* ablations: the shipped namer with one choice changed: 2, 4, 5 or 6 keywords instead
  of three; the exact-word order (a keyword placed in a member only where it says that
  very word, so "verification" does not place "verify"; with it the namer is the one
  issue 14 first shipped, shown in the main table too); no lemmas
  (``KeywordNamer(lemmatize=False)``); and the
  contrastive idea it does not ship (words scored against the 3 nearest clusters too,
  ``KeywordNamer(neighbours=3)``), and the embedding-guided choice it does not ship
  (:class:`PhraseNamer`, English only: of the five top keywords, the one to three whose
  phrase MiniLM puts nearest the cluster's members and least near another cluster, as
  KeyBERT and BERTopic's ``KeyBERTInspired`` re-rank keywords by embedding).

The measures (functions below, checked by ``tests/test_names.py``):

* **name accuracy** (English only; MiniLM reads English): the share of discovered
  intents whose label's nearest gold intent name is the cluster's majority gold intent,
  label and gold names embedded by MiniLM with ``-`` and ``_`` read as spaces. The gold
  names are a yardstick only: no namer reads them.
* **repeated stems**: labels two of whose words share a stem (:func:`shares_stem`, a
  rule of its own, independent of the namer's lemmatiser: ``recognize``/``recognise``,
  ``service``/``services``, ``card``/``cards``, and a Chinese word inside another).
* **misc**: labels that say ``misc`` or ``其他``.
* **form**: labels that read ``action-objective`` (``动作-对象``): a known action, a dash,
  one or more objective words joined by ``_``.
* **word order**: among labels with two or more objective words that co-occur in their
  members, the share whose order is the one most member utterances use.
* **members' mean** (English; a reference, not a namer): the share of intents whose
  members' mean embedding, read as if it were a label, has the majority gold intent's name
  nearest. No label drawn from what the members say is likely to do much better.

Tuning data: the BANKING77 train subsets named in ``bench/_data.py`` and the tuning half
of CrossWOZ val; held out: BANKING77 test and the other half. Embeddings: MiniLM for
English (cached in ``.bench-cache``), LSA fitted on the texts for CrossWOZ. Libraries:
numpy, and through :mod:`dialin.models` sentence-transformers (MiniLM) and scikit-learn.

Usage::

    python bench/names.py                          # every set, seeds 0 1 2, writes the section
    python bench/names.py --only tune --reuse-fits # iterate on the namer (no doc written)

The namers see what the engine hands them: ``prepare`` gets the fit's embeddings (also
with ``--reuse-fits``), ``name`` every cluster of the fit (per role) at once.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
from _data import TUNING_SUBSETS, banking77, crosswoz, train_subsets
from _doc import markers, provenance, write_section

from dialin.models import ClusterView, KeywordNamer, Namer, action_of
from dialin.models.text._language import CJK_RANGES as _CJK

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
CACHE = ROOT / ".bench-cache"
FITS = CACHE / "names-fits"
TUNING, HELD_OUT = "tuning", "held out"
#: The namers compared: before issue 14, the shipped one, and the shipped one with one
#: choice changed (ablations); the exact-word order is the namer issue 14 first shipped.
PREVIOUS = "keywords, exact-word order"
CONTRAST = "keywords, 3 nearest clusters"
PHRASE = "keywords, phrase nearest the members"
NAMERS = ("baseline", "keywords", PREVIOUS, "keywords, 2 words", "keywords, 4 words", "keywords, 5 words",
          "keywords, 6 words", "keywords, no lemmas", CONTRAST, PHRASE)
#: Namers that read MiniLM phrase embeddings against the fit's own: English sets only.
ENGLISH_ONLY = (PHRASE,)
MAIN = NAMERS[:3]
#: Intents listed per namer in the section's sample.
SAMPLE = 14

_FORM = re.compile(rf"^(?P<action>[^-]+)-(?P<objective>[A-Za-z0-9{_CJK}]+(?:_[A-Za-z0-9{_CJK}]+)*)$")
_MISC = frozenset({"misc", "其他"})


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------- the measures
def words_of(label: str) -> list[str]:
    """The words of a label: ``-``, ``_`` and spaces separate them, lower case."""
    return [w for w in re.split(r"[-_\s]+", str(label).strip().lower()) if w]


def objective_words(label: str) -> list[str]:
    """The words after the action (all of them when the label has no known action)."""
    _, _, rest = str(label).strip().lower().partition("-")
    return words_of(rest) if rest and action_of(label) is not None else words_of(label)


def _is_cjk(word: str) -> bool:
    return bool(re.search(f"[{_CJK}]", word))


def shares_stem(a: str, b: str) -> bool:
    """Whether two words of a label say the same thing twice.

    English: equal, or the same first five letters (``recognize``/``recognise``,
    ``charge``/``charged``), or for a short word, the other is it plus at most three
    letters (``card``/``cards``, ``top``/``topped``). Chinese: one word inside the other.
    Deliberately cruder than any lemmatiser: it flags near-repeats a reader would see.
    """
    a, b = a.lower(), b.lower()
    if a == b:
        return True
    if _is_cjk(a) or _is_cjk(b):
        return a in b or b in a
    short, long = sorted((a, b), key=len)
    if len(short) >= 5:
        return short[:5] == long[:5]
    return long.startswith(short) and len(long) - len(short) <= 3


def repeats_a_stem(label: str) -> bool:
    words = words_of(label)
    return any(shares_stem(w, v) for i, w in enumerate(words) for v in words[i + 1:])


def says_misc(label: str) -> bool:
    return bool(_MISC & set(words_of(label)))


def has_form(label: str) -> bool:
    """``action-objective``: a known action, a dash, ``_``-joined objective words."""
    m = _FORM.match(str(label).strip())
    return bool(m) and action_of(m["action"]) == m["action"]


def _first_position(text: str, word: str) -> int | None:
    if _is_cjk(word):
        at = text.find(word)
        return None if at < 0 else at
    for i, token in enumerate(re.findall(r"[a-z]+", text)):
        # A token shorter than three letters is read as the word only when it is the word:
        # "a" would otherwise stand for "app" or "ago", "to" for "top".
        if token == word or (len(token) >= 3 and shares_stem(token, word)):
            return i
    return None


def order_agrees(label: str, texts: Sequence[str]) -> bool | None:
    """Whether the label's objective words come in the order most ``texts`` use.

    For each adjacent pair of objective words, the texts holding both vote for the order
    they come in; None when the label has one word or no text holds any pair.
    """
    words = objective_words(label)
    votes = []
    for a, b in zip(words, words[1:]):
        ahead = behind = 0
        for text in texts:
            low = text.lower()
            pa, pb = _first_position(low, a), _first_position(low, b)
            if pa is not None and pb is not None and pa != pb:
                ahead += pa < pb
                behind += pa > pb
        if ahead or behind:
            votes.append(ahead >= behind)
    return all(votes) if votes else None


def spaced(name: str) -> str:
    """A label or gold intent name as words: ``-`` and ``_`` read as spaces."""
    return " ".join(words_of(name))


def name_accuracy(labels: Sequence[str], majority: Sequence[str], gold_names: Sequence[str],
                  encode: Callable[[list[str]], np.ndarray]) -> list[bool]:
    """Per label: is the gold name nearest to it (cosine of ``encode``) its cluster's
    majority gold intent? ``encode`` returns unit rows."""
    return nearest_is_majority(encode([spaced(label) for label in labels]), majority, gold_names, encode)


def nearest_is_majority(vectors: np.ndarray, majority: Sequence[str], gold_names: Sequence[str],
                        encode: Callable[[list[str]], np.ndarray]) -> list[bool]:
    """Per row of ``vectors``: is the gold name whose ``encode`` embedding is nearest (the
    largest dot product; the row's norm does not change which) its majority gold intent?"""
    gold = list(gold_names)
    nearest = np.argmax(vectors @ encode([spaced(g) for g in gold]).T, axis=1)
    return [gold[j] == m for j, m in zip(nearest, majority)]


# --------------------------------------------------------------- the baseline namer
class BaselineNamer(Namer):
    """The keyword namer before issue 14 (commit d780f8f), frozen for the "before" row:
    surface words (no lemmas), the top-lift keywords in lift order, ``misc`` when none."""

    backend = "baseline"

    def __init__(self, max_keywords: int = 2) -> None:
        self.max_keywords = max_keywords

    def prepare(self, X: np.ndarray | None, texts: Sequence[str]) -> None:
        from dialin.models.text._keywords import keyword_vectorizer
        from dialin.models.text._language import detect_language_from_head

        self.texts_ = [str(t) for t in texts]
        self.lang_ = detect_language_from_head(self.texts_)
        vec = keyword_vectorizer(self.lang_, lemmatize=False)
        try:
            self.tfidf_ = vec.fit_transform(self.texts_).tocsr()
            self.terms_ = vec.get_feature_names_out()
            self.mean_ = np.asarray(self.tfidf_.mean(axis=0)).ravel()
        except ValueError:
            self.tfidf_ = None

    def name(self, views: Sequence[ClusterView]) -> list[str]:
        from dialin.models.text._keywords import dominant_action

        out = []
        for view in views:
            rows = np.unique(np.asarray(view.members, dtype=np.int64))
            objective = ""
            if self.tfidf_ is not None and rows.size:
                lift = np.asarray(self.tfidf_[rows].mean(axis=0)).ravel() - self.mean_
                if rows.size == self.tfidf_.shape[0]:
                    lift = self.mean_.copy()
                top = [i for i in np.argsort(-lift, kind="stable")[: self.max_keywords] if lift[i] > 0]
                objective = "_".join(str(self.terms_[i]) for i in top)
            if self.lang_ != "zh":
                objective = re.sub(r"[^a-z0-9_]+", "_", objective.lower()).strip("_")
            objective = objective or ("其他" if self.lang_ == "zh" else "misc")
            action = dominant_action([self.texts_[i] for i in rows], self.lang_)
            out.append(f"{action}-{objective}" if action else objective)
        return out


# --------------------------------------------------------------- the embedding-guided namer
class PhraseNamer(KeywordNamer):
    """The keyword namer choosing its words by embedding (not shipped; an ablation).

    Of the ``candidates`` top keywords by lift, it takes the one to ``max_keywords`` whose
    phrase (the action, then the words) ``encode`` puts nearest the cluster's members (the
    cosine to their mean embedding) less ``contrast`` times its cosine to the nearest other
    cluster's mean, as KeyBERT re-ranks keywords by embedding. It needs the encoder that
    embedded the members: the shipped namer has none (the service's fits run in a process
    without the model), and it encodes about 25 phrases per cluster.
    """

    backend = "keywords, phrase"

    def __init__(self, encode: Callable[[list[str]], np.ndarray], candidates: int = 5,
                 contrast: float = 0.25) -> None:
        super().__init__()
        self.encode = encode
        self.candidates = candidates
        self.contrast = contrast

    def _references(self, clusters: list[np.ndarray]) -> list[np.ndarray | None]:
        """The parent's references; first the clusters' unit mean embeddings, which
        :meth:`_choose` scores phrases against (``name`` calls this once per batch)."""
        if self.X_ is None:
            raise ValueError("PhraseNamer needs the members' embeddings (prepare(X, texts))")
        centres = np.vstack([self.X_[rows].mean(axis=0) for rows in clusters])
        self.centres_ = centres / np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
        return super()._references(clusters)

    def _choose(self, rows: np.ndarray, action: str | None,
                reference: np.ndarray | None = None) -> list[str]:
        words = self._keywords(rows, action, reference, limit=self.candidates)
        if len(words) < 2:
            return words
        at = int(np.argmax(self.centres_ @ self.X_[rows].mean(axis=0)))  # this cluster's own centre
        own, others = self.centres_[at], np.delete(self.centres_, at, axis=0)
        choices = [c for size in range(1, int(self.max_keywords) + 1) for c in combinations(words, size)]
        E = np.asarray(self.encode([" ".join(([action] if action else []) + list(c)) for c in choices]))
        score = E @ own - (self.contrast * (E @ others.T).max(axis=1) if len(others) else 0.0)
        return list(choices[int(np.argmax(score))])


def make_namer(name: str, encode: Callable[[list[str]], np.ndarray] | None = None) -> Namer:
    """The namer called ``name`` in :data:`NAMERS`; ``keywords`` as the factory builds it;
    ``encode`` (MiniLM, unit rows) for :data:`PHRASE`."""
    from dialin.streams.factory import build_namer
    from dialin.streams.settings import Settings

    if name == "baseline":
        return BaselineNamer()
    if name == "keywords":
        return build_namer(Settings(namer="keywords"))
    if name == "keywords, no lemmas":
        return KeywordNamer(lemmatize=False)
    if name == PREVIOUS:
        return KeywordNamer(order_by_stem=False)
    if name == CONTRAST:
        return KeywordNamer(neighbours=3)
    if name == PHRASE:
        if encode is None:
            raise ValueError(f"{PHRASE!r} needs an encoder")
        return PhraseNamer(encode)
    return KeywordNamer(max_keywords=int(name.split(", ")[1].split()[0]))


# --------------------------------------------------------------- data and fits
@dataclass
class DataSet:
    name: str
    split: str  # TUNING or HELD_OUT
    language: str
    texts: list[str]
    y: np.ndarray
    roles: list[str] | None = None
    X: np.ndarray | None = field(default=None, repr=False)


def data_sets(data: Path, only: str | None) -> list[DataSet]:
    out = []
    if only in (None, "tune"):
        texts, y = banking77(data, "train")
        for name, rows in train_subsets(y):
            if name in TUNING_SUBSETS:
                out.append(DataSet(f"BANKING77 train, {name}", TUNING, "en", [texts[i] for i in rows], y[rows]))
        t, yz, roles = crosswoz(data, "tune")
        out.append(DataSet("CrossWOZ val, tuning half", TUNING, "zh", t, yz, roles))
    if only in (None, "held-out"):
        texts, y = banking77(data, "test")
        out.append(DataSet("BANKING77 test", HELD_OUT, "en", texts, y))
        t, yz, roles = crosswoz(data, "held-out")
        out.append(DataSet("CrossWOZ val, held-out half", HELD_OUT, "zh", t, yz, roles))
    return out


def embed(ds: DataSet) -> np.ndarray:
    from dialin.models import CachedEmbedder, get_embedder

    if ds.X is None:
        emb = (get_embedder("lsa").fit(ds.texts) if ds.language == "zh"
               else CachedEmbedder(get_embedder("minilm"), str(CACHE)))
        ds.X = emb.encode(ds.texts)
    return ds.X


@dataclass
class Fit:
    """One fit of the offline default: its labels, the groups it named apart (one per
    role, else one), the labels its own namer gave, and the fit's seconds."""

    labels: np.ndarray
    groups: list[np.ndarray]  # rows named together (one namer preparation each)
    names: dict[int, str]  # cluster id -> label from the fit
    seconds: float


def fit(ds: DataSet, seed: int, reuse: bool) -> Fit:
    """The offline default as ``dialin discover`` builds it, on ``ds`` with ``seed``."""
    import json

    from dialin.streams.factory import build_estimator, build_judge, build_namer
    from dialin.streams.settings import Settings

    path = FITS / f"{re.sub(r'[^A-Za-z0-9]+', '-', ds.name)}-{seed}.json"
    if reuse and path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        return Fit(np.asarray(saved["labels"]), [np.asarray(g) for g in saved["groups"]],
                   {int(k): v for k, v in saved["names"].items()}, saved["seconds"])
    X = embed(ds)
    settings = Settings(random_state=seed, embedder="lsa" if ds.language == "zh" else "minilm")
    judge = build_judge(settings)
    est = build_estimator(settings, judge, build_namer(settings), role_aware=ds.roles is not None)
    started = time.perf_counter()
    if ds.roles is not None:
        est.fit(X, texts=ds.texts, roles=ds.roles)
        roles = np.asarray(est.roles_, dtype=object)
        groups = [np.flatnonzero([r == role for r in roles]) for role in est.estimators_]
    else:
        est.fit(X, texts=ds.texts)
        groups = [np.arange(len(ds.texts))]
    seconds = time.perf_counter() - started
    out = Fit(np.asarray(est.labels_), groups, {it.intent_id: it.label for it in est.intents_}, seconds)
    FITS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"labels": out.labels.tolist(), "groups": [g.tolist() for g in groups],
                                "names": out.names, "seconds": seconds}), encoding="utf-8")
    return out


def rename(ds: DataSet, result: Fit, namer: Namer) -> tuple[dict[int, str], float]:
    """Name the fit's clusters with ``namer`` as the estimator does: prepared on each
    group's texts, one call for the group's clusters. Returns labels and seconds."""
    names: dict[int, str] = {}
    started = time.perf_counter()
    for rows in result.groups:
        local = result.labels[rows]
        ids = [int(c) for c in np.unique(local) if c >= 0]
        if not ids:
            continue
        texts = [ds.texts[i] for i in rows]
        namer.prepare(None if ds.X is None else ds.X[rows], texts)
        views = []
        for c in ids:
            members = np.flatnonzero(local == c)
            views.append(ClusterView(members=tuple(int(m) for m in members),
                                     texts=tuple(texts[int(m)] for m in members[:20])))
        names.update(zip(ids, namer.name(views)))
    return names, time.perf_counter() - started


# --------------------------------------------------------------- one run, scored
@dataclass
class Scored:
    n_intents: int
    accuracy: float | None
    repeated: float
    misc: float
    form: float
    order: float | None
    seconds: float  # naming
    fit_seconds: float
    rows: list[tuple[str, str, bool | None, int]]  # label, majority gold, right?, size
    purity: list[float]  # per intent, the share of its members in its majority gold intent
    same_neighbour: float | None  # share of intents whose nearest intent has their majority gold intent
    mean_accuracy: float | None  # share of intents whose members' mean embedding has their gold name nearest


def score(ds: DataSet, result: Fit, names: dict[int, str], seconds: float,
          encode: Callable[[list[str]], np.ndarray] | None) -> Scored:
    ids = sorted(names)
    labels = [names[c] for c in ids]
    members = [np.flatnonzero(result.labels == c) for c in ids]
    counts = [Counter(ds.y[m].tolist()).most_common(1)[0] for m in members]
    majority = [gold for gold, _ in counts]
    right: list[bool | None] = [None] * len(ids)
    accuracy = None
    if ds.language == "en" and encode is not None and ids:
        right = list(name_accuracy(labels, majority, sorted(set(ds.y.tolist())), encode))
        accuracy = float(np.mean(right))
    orders = [order_agrees(label, [ds.texts[i] for i in m]) for label, m in zip(labels, members)]
    decided = [o for o in orders if o is not None]
    n = max(len(ids), 1)
    return Scored(
        n_intents=len(ids),
        accuracy=accuracy,
        repeated=sum(map(repeats_a_stem, labels)) / n, misc=sum(map(says_misc, labels)) / n,
        form=sum(map(has_form, labels)) / n, order=float(np.mean(decided)) if decided else None,
        seconds=seconds, fit_seconds=result.seconds, rows=[(lab, maj, r, m.size) for lab, maj, r, m in zip(labels, majority, right, members)],
        purity=[n / m.size for (_, n), m in zip(counts, members)],
        same_neighbour=same_neighbour(ds.X, members, majority),
        mean_accuracy=(members_mean_accuracy(ds.X, members, majority, sorted(set(ds.y.tolist())), encode)
                       if ds.language == "en" and encode is not None and ds.X is not None and ids else None))


def members_mean_accuracy(X: np.ndarray, members: list[np.ndarray], majority: list[str],
                          gold_names: Sequence[str], encode: Callable[[list[str]], np.ndarray]) -> float:
    """The share of intents whose members' mean embedding (``X``: the MiniLM rows the
    measure reads labels with), taken as a label, has its majority gold intent's name
    nearest: what the members' own content says, as the measure reads it."""
    centres = np.vstack([X[m].mean(axis=0) for m in members])
    return float(np.mean(nearest_is_majority(centres, majority, gold_names, encode)))


def same_neighbour(X: np.ndarray | None, members: list[np.ndarray], majority: list[str]) -> float | None:
    """The share of intents whose nearest other intent (cosine of centroids in ``X``) has
    the same majority gold intent: how often a neighbour is another part of one intent."""
    if X is None or len(members) < 2:
        return None
    centres = np.vstack([X[m].mean(axis=0) for m in members])
    centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    similar = centres @ centres.T
    np.fill_diagonal(similar, -np.inf)
    return float(np.mean([majority[i] == majority[j] for i, j in enumerate(np.argmax(similar, axis=1))]))


def minilm_encoder() -> Callable[[list[str]], np.ndarray]:
    from dialin.models import CachedEmbedder, get_embedder

    emb = CachedEmbedder(get_embedder("minilm"), str(CACHE))
    return lambda texts: np.asarray(emb.encode(texts), dtype=np.float64)


# --------------------------------------------------------------- report
def pct(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "—"
    mean, low, high = f"{np.mean(known):.0%}", f"{min(known):.0%}", f"{max(known):.0%}"
    return mean if low == high else f"{mean} ({low}-{high})"


def table(results: dict[str, dict[str, list[Scored]]], sets: list[DataSet]) -> str:
    lines = ["| data | namer | intents | name accuracy | repeated stems | misc | form | natural order "
             "| naming s (fit s) |", "|---|---|---|---|---|---|---|---|---|"]
    for ds in sets:
        for namer, runs in results[ds.name].items():
            if namer not in MAIN:
                continue
            lines.append(
                f"| {ds.name} ({ds.split}) | {namer} | {np.mean([r.n_intents for r in runs]):.0f} "
                f"| {pct([r.accuracy for r in runs])} | {pct([r.repeated for r in runs])} "
                f"| {pct([r.misc for r in runs])} | {pct([r.form for r in runs])} "
                f"| {pct([r.order for r in runs])} | {np.mean([r.seconds for r in runs]):.2f} "
                f"({np.mean([r.fit_seconds for r in runs]):.1f}) |")
    return "\n".join(lines)


def ablations(results: dict[str, dict[str, list[Scored]]], sets: list[DataSet]) -> str:
    """Name accuracy / repeated stems / natural order of every namer on the English sets."""
    english = [ds for ds in sets if ds.language == "en"]
    lines = ["| namer | " + " | ".join(f"{ds.name} ({ds.split})" for ds in english) + " |",
             "|---|" + "---|" * len(english)]
    for namer in NAMERS:
        if all(namer in results[ds.name] for ds in english):
            cells = [" / ".join(pct([getattr(r, key) for r in results[ds.name][namer]])
                                for key in ("accuracy", "repeated", "order")) for ds in english]
            lines.append(f"| {namer} | " + " | ".join(cells) + " |")
    if all("keywords" in results[ds.name] for ds in english):
        cells = [pct([r.mean_accuracy for r in results[ds.name]["keywords"]]) + " / — / —" for ds in english]
        lines.append("| members' mean embedding (a reference: no label) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sample(results: dict[str, dict[str, list[Scored]]], ds: DataSet) -> str:
    """The largest intents of the first seed, each namer's label beside the other's."""
    runs = {namer: rs[0] for namer, rs in results[ds.name].items() if namer in MAIN}
    first = next(iter(runs.values()))
    order = sorted(range(len(first.rows)), key=lambda i: -first.rows[i][3])[:SAMPLE]
    head = "| size | majority gold intent | " + " | ".join(runs) + " |"
    lines = [head, "|" + "---|" * (2 + len(runs))]
    for i in order:
        cells = []
        for scored in runs.values():
            label, _, right, _ = scored.rows[i]
            cells.append(f"`{label}`" + ("" if right is None else " ✓" if right else " ✗"))
        lines.append(f"| {first.rows[i][3]} | {first.rows[i][1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reading(results: dict[str, dict[str, list[Scored]]], sets: list[DataSet]) -> str:
    """What the tables say about the goal (75% name accuracy on BANKING77 test), from them."""
    def mean(ds: DataSet, namer: str, key: str) -> float:
        return float(np.mean([getattr(r, key) for r in results[ds.name][namer]]))

    test = next(ds for ds in sets if ds.name == "BANKING77 test")
    tuning = [ds for ds in sets if ds.language == "en" and ds.split == TUNING]
    ran = [n for n in NAMERS if n in results[test.name]]
    tune = {n: {key: np.mean([mean(ds, n, key) for ds in tuning])
                for key in ("accuracy", "order", "repeated", "mean_accuracy")} for n in ran}
    after, before, previous = (mean(test, n, "accuracy") for n in ("keywords", "baseline", PREVIOUS))
    verdict = ("meets" if after >= 0.75 else "falls short of") + " the goal of 75%"
    counts = ", ".join(f"{n.split(', ')[1]} {tune[n]['accuracy']:.0%}"
                       for n in ran if re.fullmatch(r"keywords, \d words", n))
    # Mixed clusters: among the shipped namer's intents on BANKING77 test, all seeds.
    runs = results[test.name]["keywords"]
    right = np.array([row[2] for r in runs for row in r.rows], dtype=bool)
    mixed = np.array([p < 0.5 for r in runs for p in r.purity])
    limits = (f"{mixed.mean():.0%} of the discovered intents of BANKING77 test are clusters whose majority "
              f"intent holds under half of their members; they are named right {right[mixed].mean():.0%} of "
              f"the time, the others {right[~mixed].mean():.0%}, and they are {mixed[~right].mean():.0%} of "
              "the intents named wrong") if mixed.any() and (~mixed).any() else ""
    five = "keywords, 5 words"
    english = tuning + [test]
    dense = max(tuning, key=lambda ds: mean(ds, "keywords", "same_neighbour"))
    neighbours = ", ".join(f"for {mean(ds, 'keywords', 'same_neighbour'):.0%} of the intents of {ds.name}"
                           for ds in english)
    longest = max(results[test.name][five][0].rows, key=lambda row: row[3])  # its largest intent
    return (f"Reading: on held-out BANKING77 test the shipped namer names {after:.0%} of the discovered "
            f"intents so that their nearest gold name is their own (before issue 14: {before:.0%}; as issue 14 "
            f"first shipped it: {previous:.0%}), which {verdict}. On the tuning sets it reaches "
            f"{tune['keywords']['accuracy']:.0%} with three keywords ({counts}). Five words named the most "
            f"intents right on the tuning sets, but on held-out BANKING77 test {mean(test, five, 'accuracy'):.0%} "
            f"against {after:.0%} with three, and they read longer (`{longest[0]}` for {longest[1]}), so the count "
            "stays at three: the gain did not hold off the data it was measured on. Word order: a keyword is "
            "placed in a member where the member first says it or a word of its stem (\"verification\" "
            f"places \"verify\"), which gives natural order {tune['keywords']['order']:.0%} on the tuning sets "
            f"and {mean(test, 'keywords', 'order'):.0%} on BANKING77 test (placed only where the very word is "
            f"said: {tune[PREVIOUS]['order']:.0%} and {mean(test, PREVIOUS, 'order'):.0%}). Scoring words against "
            "the three nearest clusters as well as the whole data set (BERTopic's c-TF-IDF against a "
            f"neighbourhood) names {tune[CONTRAST]['accuracy']:.0%} right on the tuning sets, so it is not "
            f"shipped, though on held-out BANKING77 test it names {mean(test, CONTRAST, 'accuracy'):.0%}: it "
            "helps where a cluster's nearest clusters are other intents and hurts where they are other parts of "
            f"its own, whose words are the intent's. The nearest cluster shares the majority intent {neighbours}; "
            f"on {dense.name} the contrast names {mean(dense, CONTRAST, 'accuracy'):.0%} against "
            f"{mean(dense, 'keywords', 'accuracy'):.0%}. Choosing the words by embedding (`{PHRASE}`: of the "
            "five top keywords, the one to three whose phrase MiniLM puts nearest the cluster's members and "
            f"least near another cluster) names {tune[PHRASE]['accuracy']:.0%} right on the tuning sets and "
            f"{mean(test, PHRASE, 'accuracy'):.0%} on held-out BANKING77 test; it is not shipped because the "
            "namer would need the encoder, which the service's discovery fits do not have (they run in a "
            "process without the model, and a second copy of it costs about 700 MB). What limits it (see "
            "the sample below): the members' mean embedding itself, read as a label, has its majority "
            f"intent's name nearest for {mean(test, 'keywords', 'mean_accuracy'):.0%} of the intents of "
            f"BANKING77 test ({tune['keywords']['mean_accuracy']:.0%} on the tuning sets), so what the "
            "members say, as this measure reads it, names about as many intents right as the goal asks "
            f"before any word is chosen; {limits}; and the keywords are words the members say, not the analyst's category "
            "(`why_verify_identity` turns on \"why\", a stop word to keywords; `transfer_timing` on "
            "\"timing\", where members say \"how long\"), while many gold names differ from a neighbour by "
            "one such word. Lemmas are there for the repeated-stem rule, not "
            f"for accuracy (*no lemmas*: {tune['keywords, no lemmas']['accuracy']:.0%} right, "
            f"{tune['keywords, no lemmas']['repeated']:.0%} repeated stems on the tuning sets). Natural order "
            "reads a word of one or two letters in a member as a label word only when it is that word (before, "
            "\"a\" counted as \"app\" or \"ago\"), so every row's order column is remeasured. The `baseline` "
            "runs on today's action lexicons, whose Chinese triggers issue 14 extended (\"客气\", \"推荐菜有\", "
            "\"没有\"), so its CrossWOZ form column is not the figure from before issue 14.")


def section(results, sets: list[DataSet], seeds: list[int]) -> str:
    start, end = markers("names")
    en = next(ds for ds in sets if ds.name == "BANKING77 test")
    zh = next(ds for ds in sets if ds.name.startswith("CrossWOZ") and ds.split == HELD_OUT)
    return f"""{start}
## Intent names (issue 14): do the offline labels read as the intents?

Produced by `bench/names.py`: the offline default of `dialin discover`
(budget strategy, heuristic judge, keyword namer, default settings; per role on CrossWOZ)
fitted once per seed ({', '.join(map(str, seeds))}); each namer names the clusters of that same fit.
`baseline` is the keyword namer before issue 14; `keywords` the shipped one; `{PREVIOUS}`
the keyword namer as issue 14 first shipped it (words placed in a member only where it
says that very word). **Name
accuracy**: the share of discovered intents whose label's nearest gold intent name (MiniLM
cosine, `-` and `_` read as spaces) is the cluster's majority gold intent (English only;
the gold names are a yardstick, read by no namer). **Repeated stems**: two words of a label
share a stem (`recognize`/`recognise`, `card`/`cards`, a Chinese word inside another).
**Form**: `action-objective` (`动作-对象`) with a known action. **Natural order**: among
labels with two or more objective words that co-occur in their members, the share in the
order most members use. Mean over seeds (range). Naming seconds: `prepare` and `name`
for every cluster of one fit, beside the fit's own seconds. Rows marked *tuning* are the
data the namer's choices were made on; *held out* was only measured. {provenance()}

{table(results, sets)}

Each choice of the shipped namer undone in turn (three keywords, order by stem, lemmas),
and two ideas it does not ship (`{CONTRAST}`; `{PHRASE}`, which reads MiniLM), on the
English sets (name accuracy / repeated stems / natural order; the same fits):

{ablations(results, sets)}

{reading(results, sets)}

The largest intents of BANKING77 test, seed {seeds[0]} (✓: the label's nearest gold name is the majority intent):

{sample(results, en)}

CrossWOZ val, held-out half, seed {seeds[0]}:

{sample(results, zh)}
{end}"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--namer", choices=NAMERS, nargs="+", default=list(NAMERS),
                    help="namers to compare on the same fits (baseline: before issue 14)")
    ap.add_argument("--only", choices=["tune", "held-out"], default=None,
                    help="one half of the data; the doc section is written only when both run")
    ap.add_argument("--reuse-fits", action="store_true",
                    help="reuse the clusterings saved by an earlier run (to iterate on a namer)")
    args = ap.parse_args()
    if not (args.data / "banking77" / "test.csv").exists():
        print(f"bench: no data at {args.data} (pass --data DIR holding banking77/ and crosswoz/)",
              file=sys.stderr)
        sys.exit(2)
    sets = data_sets(args.data, args.only)
    encode = minilm_encoder()
    results: dict[str, dict[str, list[Scored]]] = {}
    for ds in sets:
        results[ds.name] = {n: [] for n in args.namer if n not in ENGLISH_ONLY or ds.language == "en"}
        embed(ds)  # the namers get the embeddings the engine hands them
        for seed in args.seeds:
            result = fit(ds, seed, args.reuse_fits)
            for namer_name in results[ds.name]:
                names, seconds = rename(ds, result, make_namer(namer_name, encode))
                if namer_name == "keywords" and names != result.names and not args.reuse_fits:
                    raise AssertionError(f"{ds.name} seed {seed}: renaming differs from the fit's own labels")
                scored = score(ds, result, names, seconds, encode)
                results[ds.name][namer_name].append(scored)
                log(f"{ds.name} seed {seed} {namer_name}: {scored.n_intents} intents, accuracy "
                    f"{pct([scored.accuracy])}, repeated {scored.repeated:.0%}, misc {scored.misc:.0%}, "
                    f"form {scored.form:.0%}, order {pct([scored.order])}, naming {seconds:.2f}s")
    print(table(results, sets))
    print("\n" + ablations(results, sets))
    for ds in sets:
        if ds.name == "BANKING77 test" or (ds.language == "zh" and ds.split == HELD_OUT):
            print(f"\n{ds.name}, seed {args.seeds[0]}\n{sample(results, ds)}")
    if args.only is None:
        write_section(DOC, "names", section(results, sets, args.seeds))
        log(f"wrote section 'names' of {DOC}")


if __name__ == "__main__":
    main()
