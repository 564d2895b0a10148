"""The intent catalog: stable ids, update/merge instead of duplicates, per-role matching, one space."""

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


def test_new_cluster_is_created_then_a_close_one_updates_it():
    cat = IntentCatalog("emb", update_threshold=0.8)
    [created] = cat.upsert_from_cluster(E1, "report-lost card", "customer", 10, ["lost card"], now="t0")
    assert created.status == "created" and created.version == 1
    [updated] = cat.upsert_from_cluster(unit(1, 0.2, 0, 0), "card-missing", "customer", 10,
                                        ["card gone"], now="t1")
    assert updated.intent_id == created.intent_id
    assert (updated.status, updated.version, updated.size) == ("updated", 2, 20)
    assert updated.label == "report-lost card"  # the label stays stable
    assert updated.examples[0] == "card gone" and "lost card" in updated.examples
    assert updated.created_at == "t0" and updated.updated_at == "t1"
    assert len(cat) == 1


def test_same_label_updates_even_when_centroids_differ():
    cat = IntentCatalog("emb")
    [a] = cat.upsert_from_cluster(E1, "Check-Balance", "customer", 5)
    [b] = cat.upsert_from_cluster(E2, "check balance", "customer", 5)
    assert b.intent_id == a.intent_id and b.status == "updated"


def test_other_role_or_far_centroid_creates_a_new_intent():
    cat = IntentCatalog("emb")
    [a] = cat.upsert_from_cluster(E1, "x", "customer", 5)
    [b] = cat.upsert_from_cluster(E1, "x", "agent", 5)
    [c] = cat.upsert_from_cluster(E3, "y", "customer", 5)
    assert len({a.intent_id, b.intent_id, c.intent_id}) == 3
    assert all(i.status == "created" for i in (a, b, c))


def test_a_cluster_bridging_two_intents_merges_them():
    cat = IntentCatalog("emb", update_threshold=0.6)
    [a] = cat.upsert_from_cluster(unit(1, 0.3, 0, 0), "a", "customer", 30)
    [b] = cat.upsert_from_cluster(unit(0.3, 1, 0, 0), "b", "customer", 10)
    assert a.intent_id != b.intent_id
    changed = cat.upsert_from_cluster(unit(1, 1, 0, 0), "ab", "customer", 5)
    target, gone = changed
    assert target.status == "updated" and target.size == 45
    assert gone.status == "merged" and gone.merged_into == target.intent_id
    assert {target.intent_id, gone.intent_id} == {a.intent_id, b.intent_id}
    assert [i.intent_id for i in cat.active()] == [target.intent_id]


def test_match_searches_only_the_same_role():
    cat = IntentCatalog("emb")
    [c] = cat.upsert_from_cluster(E1, "c", "customer", 5)
    [a] = cat.upsert_from_cluster(E2, "a", "agent", 5)
    X = np.vstack([E1, E1, E2, E3])
    ids, scores = cat.match(X, ["customer", "agent", None, "nobody"])
    assert ids[0] == c.intent_id and scores[0] == pytest.approx(1.0)
    assert ids[1] == a.intent_id and scores[1] == pytest.approx(0.0, abs=1e-6)
    assert ids[2] == a.intent_id  # role None searches all roles
    assert ids[3] is None and scores[3] == -1.0


def test_empty_catalog_matches_nothing():
    ids, scores = IntentCatalog("emb").match(np.vstack([E1]), ["customer"])
    assert ids == [None] and scores[0] == -1.0


def test_infer_roles_defaults_then_follows_the_nearest_intent():
    cat = IntentCatalog("emb")
    assert cat.infer_roles(np.vstack([E2])) == ["customer"]
    cat.upsert_from_cluster(E1, "c", "customer", 5)
    cat.upsert_from_cluster(E2, "a", "agent", 5)
    assert cat.infer_roles(np.vstack([E2, unit(1, 0.1, 0, 0)])) == ["agent", "customer"]


def test_save_load_round_trip_and_refuse_another_embedder(tmp_path):
    cat = IntentCatalog("minilm-v1")
    cat.upsert_from_cluster(E1, "订-酒店", "customer", 5, ["我想订酒店"], judge_backend="h",
                            judge_confidence=0.9)
    cat.upsert_from_cluster(E2, "b", "agent", 7)
    cat.save(tmp_path)
    back = IntentCatalog.load(tmp_path, embedder="minilm-v1")
    assert {i.intent_id: (i.label, i.role, i.size, i.examples, i.judge_confidence)
            for i in back.intents_.values()} == {
        i.intent_id: (i.label, i.role, i.size, i.examples, i.judge_confidence)
        for i in cat.intents_.values()}
    ids, _ = back.match(np.vstack([E1]), ["customer"])
    assert back.get(ids[0]).label == "订-酒店"
    with pytest.raises(EmbeddingSpaceError, match="minilm-v1"):
        IntentCatalog.load(tmp_path, embedder="lsa-123")


def test_records_apply_in_version_order_and_tombstones_remove():
    cat = IntentCatalog("emb")
    [a] = cat.upsert_from_cluster(E1, "a", "customer", 5)
    [a2] = cat.upsert_from_cluster(E1, "a", "customer", 5)
    other = IntentCatalog("emb")
    other.apply_record(a2.to_record("emb"))
    other.apply_record(a.to_record("emb"))  # an older version arriving late is ignored
    assert other.get(a.intent_id).version == 2
    with pytest.raises(EmbeddingSpaceError, match="built with embedder 'another', but this catalog uses 'emb'"):
        other.apply_record(a.to_record("another"))
    other.apply_record(None, a.intent_id)
    assert len(other) == 0
    assert CatalogIntent.from_record(a2.to_record("emb")).size == 10


def test_engine_catalog_does_not_import_faust_or_kafka():
    code = ("import sys, dialin.models; from dialin.models import IntentCatalog; "
            "bad = [m for m in ('faust', 'kafka', 'aiokafka', 'prometheus_client') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
