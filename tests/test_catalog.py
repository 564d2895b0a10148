"""The intent catalog: open-set matching per role over exemplars, versioned entries, one space."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from dialin.models import CatalogIntent, EmbeddingSpaceError, IntentCatalog


def unit(*v: float) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


E1, E2, E3 = unit(1, 0, 0, 0), unit(0, 1, 0, 0), unit(0, 0, 1, 0)


def intent(iid: str, centroid, role="customer", label=None, exemplars=None, threshold=None,
           **kw) -> CatalogIntent:
    return CatalogIntent(intent_id=iid, label=label or iid, role=role, centroid=centroid,
                         size=kw.pop("size", 5), exemplars=exemplars, threshold=threshold, **kw)


def spread(center, n: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = np.asarray(center, np.float32) + noise * rng.standard_normal((n, len(center))).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_exemplars_match_members_and_leave_novelty_unassigned():
    """A row near an intent's members is its; a row between intents or far away is none."""
    cat = IntentCatalog("emb", match_threshold=0.0)
    a, b = spread(E1, 40, 0.1, 1), spread(E2, 40, 0.1, 2)
    cat.put(intent("a", E1, exemplars=a, threshold=None))
    cat.put(intent("b", E2, exemplars=b))
    X = np.vstack([spread(E1, 5, 0.03, 3), spread(E2, 5, 0.03, 4), unit(1, 1, 0, 0), E3])
    ids, scores = cat.match(X, ["customer"] * len(X))
    assert ids[:5] == ["a"] * 5 and ids[5:10] == ["b"] * 5
    assert ids[10] is None and ids[11] is None  # between both, and novel
    assert scores[0] > 0.9 and scores[11] < 0.2


def test_match_threshold_is_a_floor_and_the_centroid_rule_for_entries_without_exemplars():
    cat = IntentCatalog("emb", match_threshold=0.99)
    cat.put(intent("a", E1, exemplars=spread(E1, 40, 0.3, 1)))
    ids, _ = cat.match(spread(E1, 5, 0.3, 2), ["customer"] * 5)
    assert ids == [None] * 5  # typical members, but below the floor
    legacy = IntentCatalog("emb", match_threshold=0.9)
    legacy.put(intent("old", E1))
    ids, scores = legacy.match(np.vstack([unit(1, 0.1, 0, 0), unit(1, 1, 0, 0)]), ["customer"] * 2)
    assert ids == ["old", None] and scores[1] == pytest.approx(0.7071, abs=1e-3)




def test_match_searches_only_the_same_role():
    cat = IntentCatalog("emb", match_threshold=0.5)
    cat.put(intent("c", E1))
    cat.put(intent("a", E2, role="agent"))
    X = np.vstack([E1, E1, E2, E3])
    ids, scores = cat.match(X, ["customer", "agent", None, "nobody"])
    assert ids[0] == "c" and scores[0] == pytest.approx(1.0)
    assert ids[1] is None and scores[1] == pytest.approx(0.0, abs=1e-6)  # the agent intent is far
    assert ids[2] == "a"  # role None searches all roles
    assert ids[3] is None and np.isnan(scores[3])


def test_empty_catalog_matches_nothing():
    ids, scores = IntentCatalog("emb").match(np.vstack([E1]), ["customer"])
    assert ids == [None] and np.isnan(scores[0])


def test_infer_roles_defaults_then_follows_the_nearest_intent():
    cat = IntentCatalog("emb")
    assert cat.infer_roles(np.vstack([E2])) == ["customer"]
    cat.put(intent("c", E1))
    cat.put(intent("a", E2, role="agent"))
    assert cat.infer_roles(np.vstack([E2, unit(1, 0.1, 0, 0)])) == ["agent", "customer"]


def test_save_load_round_trip_and_refuse_another_embedder(tmp_path):
    cat = IntentCatalog("minilm-v1")
    cat.put(intent("zh", E1, label="订-酒店", examples=("我想订酒店",), judge_backend="h",
                   judge_confidence=0.9, exemplars=spread(E1, 8, 0.1, 0), threshold=0.8,
                   split_from="older"))
    cat.put(intent("b", E2, role="agent", size=7))
    cat.save(tmp_path)
    back = IntentCatalog.load(tmp_path, embedder="minilm-v1")
    fields = ("label", "role", "size", "examples", "judge_confidence", "threshold", "split_from")
    assert ({i.intent_id: tuple(getattr(i, f) for f in fields) for i in back.intents_.values()}
            == {i.intent_id: tuple(getattr(i, f) for f in fields) for i in cat.intents_.values()})
    np.testing.assert_array_equal(back.get("zh").exemplars, cat.get("zh").exemplars)
    assert back.get("b").exemplars is None
    ids, _ = back.match(np.vstack([E1]), ["customer"])
    assert back.get(ids[0]).label == "订-酒店"
    with pytest.raises(EmbeddingSpaceError, match="minilm-v1"):
        IntentCatalog.load(tmp_path, embedder="lsa-123")


def test_records_apply_in_version_order_and_tombstones_remove():
    a = intent("a", E1, exemplars=spread(E1, 4, 0.1, 0), threshold=0.7)
    a2 = intent("a", E1, version=2, size=10, exemplars=spread(E1, 6, 0.1, 1), threshold=0.75)
    other = IntentCatalog("emb")
    other.apply_record(a2.to_record("emb"))
    other.apply_record(a.to_record("emb"))  # an older version arriving late is ignored
    assert other.get(a.intent_id).version == 2
    with pytest.raises(EmbeddingSpaceError, match="built with embedder 'another', but this catalog uses 'emb'"):
        other.apply_record(a.to_record("another"))
    other.apply_record(None, a.intent_id)
    assert len(other) == 0
    back = CatalogIntent.from_record(a2.to_record("emb"))
    assert (back.size, back.threshold, back.exemplars.shape) == (10, 0.75, (6, 4))
    np.testing.assert_allclose(back.exemplars, a2.exemplars, rtol=1e-6)


def test_engine_catalog_does_not_import_faust_or_kafka():
    code = ("import sys, dialin.models; from dialin.models import IntentCatalog; "
            "bad = [m for m in ('faust', 'kafka', 'aiokafka', 'prometheus_client') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
