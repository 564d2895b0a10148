"""The §4.1.2 post-correction: merge clusters whose label embeddings are close."""

from __future__ import annotations

import numpy as np
import pytest

from dialin.models import merge_by_label


def _unit(deg: float) -> list[float]:
    r = np.deg2rad(deg)
    return [float(np.cos(r)), float(np.sin(r))]


LABELS = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, -1])
NAMES = ["inquire-card", "inquire-cards", "inquire-card_arrival", "report-fraud"]
# Label embeddings: 0~1 and 1~2 are close (cosine distance ~0.0076 at 7 degrees),
# 0 and 2 are not (14 degrees: ~0.030); 3 is far from everything.
EMB = np.array([_unit(0), _unit(7), _unit(14), _unit(90)])
CENTROIDS = np.array([_unit(0), _unit(10), _unit(20), _unit(45)])


def test_merges_are_transitive_and_go_into_the_larger_group():
    new, log = merge_by_label(LABELS, NAMES, EMB, CENTROIDS, threshold=0.01)
    # 0~1 and 1~2 qualify, 0~2 does not: all three still end together.
    # (0,1) joins first: 0 (3 members) absorbs 1; then 0+1 (5) absorbs 2 (4).
    assert set(new[:9].tolist()) == {0}
    assert new[9] == 3 and new[10] == -1
    assert len(log) == 2
    assert {e["from"] for e in log} | {e["into"] for e in log} == {0, 1, 2}
    for e in log:
        assert set(e) == {"into", "from", "pair", "label_distance", "centroid_similarity", "labels"}
        assert e["label_distance"] <= 0.01 and e["centroid_similarity"] >= 0.5
        assert e["labels"] == (NAMES[e["pair"][0]], NAMES[e["pair"][1]])


def test_threshold_is_respected_on_both_sides():
    d01 = 1 - np.cos(np.deg2rad(7))
    below, log_below = merge_by_label(LABELS, NAMES, EMB, CENTROIDS, threshold=d01 * 0.99)
    above, log_above = merge_by_label(LABELS, NAMES, EMB, CENTROIDS, threshold=d01 * 1.01)
    assert log_below == [] and np.array_equal(below, LABELS)
    assert len(log_above) == 2


def test_centroids_must_agree():
    far = np.array([_unit(0), _unit(180), _unit(0), _unit(45)])
    new, log = merge_by_label(LABELS, NAMES, EMB, far, threshold=0.01,
                              min_centroid_similarity=0.5)
    assert log == [] and np.array_equal(new, LABELS)


def test_mismatched_inputs_are_one_line_errors():
    with pytest.raises(ValueError, match="one label text, label embedding and centroid"):
        merge_by_label(LABELS, NAMES[:3], EMB, CENTROIDS)
    with pytest.raises(ValueError, match="labels go up to 3"):
        merge_by_label(LABELS, NAMES[:3], EMB[:3], CENTROIDS[:3])
    with pytest.raises(ValueError, match="cosine distance"):
        merge_by_label(LABELS, NAMES, EMB, CENTROIDS, threshold=-1)
