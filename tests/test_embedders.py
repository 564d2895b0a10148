"""Embedders: unit rows, lazy loading, LSA persistence without pickle, the cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from dialin.models import (
    CachedEmbedder,
    Embedder,
    LSAEmbedder,
    SentenceTransformerEmbedder,
    get_embedder,
)


class CountingEmbedder(Embedder):
    """A real (tiny) embedder that records what it was asked to embed."""

    name = "counting"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts):
        self.seen.extend(texts)
        X = np.array([[len(t) + 1.0, sum(map(ord, t)) % 97 + 1.0] for t in texts], dtype=np.float32)
        return X / np.linalg.norm(X, axis=1, keepdims=True) if len(X) else np.zeros((0, 2), np.float32)


def test_minilm_gives_unit_float32_rows_and_loads_lazily(english_sample):
    emb = SentenceTransformerEmbedder(batch_size=16)
    assert emb.name == "minilm" and getattr(emb, "model_", None) is None
    X = emb.encode(english_sample.texts[:40])
    assert X.dtype == np.float32 and X.shape == (40, 384)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    # Paraphrases sit closer than unrelated intents.
    a, b, c = emb.encode(["My card has not arrived yet", "When will my card arrive?", "What is the exchange rate?"])
    assert a @ b > a @ c
    assert emb.encode([]).shape == (0, 384)


def test_lsa_unit_rows_and_clipped_dimension(english_sample):
    emb = LSAEmbedder(n_components=1000).fit(english_sample.texts[:50])
    assert emb.n_components == 1000 and emb.n_components_ <= 50
    X = emb.encode(english_sample.texts[:10])
    assert X.dtype == np.float32 and X.shape == (10, emb.n_components_)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    tiny = LSAEmbedder().fit(["ab", "cd", "ef"])
    assert tiny.encode(["ab"]).shape[1] == tiny.n_components_ >= 1


def test_lsa_works_for_chinese(chinese_sample):
    emb = LSAEmbedder(n_components=64).fit(chinese_sample.texts)
    X = emb.encode(["请问这家餐馆的电话是多少？", "餐馆的电话是多少？", "谢谢，再见"])
    assert X[0] @ X[1] > X[0] @ X[2]


def test_lsa_needs_fit_and_validates():
    with pytest.raises(NotFittedError, match="not fitted"):
        LSAEmbedder().encode(["x"])
    with pytest.raises(ValueError, match="non-empty"):
        LSAEmbedder().fit(["", "  "])
    with pytest.raises(ValueError, match="n_components"):
        LSAEmbedder(n_components=0).fit(["a b", "c d"])
    assert LSAEmbedder().name == "lsa-unfitted"


def test_lsa_save_load_round_trip_is_exact_and_pickle_free(tmp_path, english_sample):
    emb = LSAEmbedder(n_components=32).fit(english_sample.texts)
    emb.save(tmp_path / "lsa")
    assert sorted(p.name for p in (tmp_path / "lsa").iterdir()) == ["components.npy", "idf.npy", "lsa.json"]
    meta = json.loads((tmp_path / "lsa" / "lsa.json").read_text(encoding="utf-8"))
    assert meta["name"] == emb.name and "scikit-learn" in meta["versions"]
    back = LSAEmbedder.load(tmp_path / "lsa")
    assert back.name == emb.name and back.name.startswith("lsa-")
    np.testing.assert_array_equal(back.encode(english_sample.texts), emb.encode(english_sample.texts))
    assert get_embedder(str(tmp_path / "lsa")).name == emb.name
    # A different fit is a different space, with a different name.
    assert LSAEmbedder(n_components=32).fit(english_sample.texts[:100]).name != emb.name


def test_lsa_load_reports_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no saved LSA embedder"):
        LSAEmbedder.load(tmp_path)


def test_cache_embeds_each_text_once_across_instances(tmp_path):
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner, tmp_path / "cache")
    first = cached.encode(["a", "bb", "a"])
    assert inner.seen == ["a", "bb"]
    second = cached.encode(["bb", "ccc", "a"])
    assert inner.seen == ["a", "bb", "ccc"]
    np.testing.assert_array_equal(second[0], first[1])
    np.testing.assert_array_equal(second[2], first[0])
    # A new process (new wrapper, same folder) reads the same rows without embedding.
    again = CachedEmbedder(inner, tmp_path / "cache").encode(["ccc", "a"])
    assert inner.seen == ["a", "bb", "ccc"]
    np.testing.assert_array_equal(again, inner.encode(["ccc", "a"]))
    assert cached.name == "counting" and cached.encode([]).shape == (0, 2)


def test_cache_keys_by_embedding_space(tmp_path, english_sample):
    texts = english_sample.texts[:40]
    a = CachedEmbedder(LSAEmbedder(n_components=8), tmp_path).fit(texts)
    b = CachedEmbedder(LSAEmbedder(n_components=16), tmp_path).fit(texts)
    assert a.encode(texts[:3]).shape[1] == 8
    assert b.encode(texts[:3]).shape[1] == 16  # not served the other space's rows


def test_get_embedder_by_name(tmp_path):
    assert isinstance(get_embedder("minilm"), SentenceTransformerEmbedder)
    assert isinstance(get_embedder("lsa"), LSAEmbedder)
    other = get_embedder("some/model-path")
    assert isinstance(other, SentenceTransformerEmbedder) and other.name == "some/model-path"
    wrapped = get_embedder("minilm", cache_dir=str(tmp_path))
    assert isinstance(wrapped, CachedEmbedder) and wrapped.name == "minilm"
    with pytest.raises(ValueError, match="non-empty"):
        get_embedder("")
