"""Base clusterers: n labels, the asked-for count, seeded determinism, sane quality."""

from __future__ import annotations

import numpy as np
import pytest

from dialin.models import CLUSTERERS, cluster, nmi


@pytest.mark.parametrize("method", CLUSTERERS)
def test_returns_one_label_per_row_and_the_right_count(method, english_sample, english_lsa):
    labels = cluster(english_lsa, 20, method=method, random_state=0)
    assert labels.shape == (len(english_sample.texts),) and labels.dtype == np.int64
    assert set(labels.tolist()) == set(range(20))
    # Far better than chance on 20 real intents (chance NMI is about 0.1 here).
    assert nmi(english_sample.labels, labels) > 0.4


@pytest.mark.parametrize("method", CLUSTERERS)
def test_seeded_runs_repeat(method, english_lsa):
    X = english_lsa[:200]
    np.testing.assert_array_equal(cluster(X, 7, method, random_state=3), cluster(X, 7, method, random_state=3))


@pytest.mark.parametrize("method", CLUSTERERS)
def test_n_clusters_is_clipped_to_the_data(method, english_lsa):
    X = english_lsa[:6]
    assert cluster(X, 50, method).tolist() == list(range(6))
    assert cluster(X, 0, method).tolist() == [0] * 6
    assert cluster(X[:0], 3, method).shape == (0,)


def test_separated_blobs_are_found_exactly():
    rng = np.random.default_rng(0)
    centres = np.eye(8, 16, dtype=np.float32)
    X = np.repeat(centres, 25, axis=0) + rng.normal(0, 0.02, (200, 16)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    truth = np.repeat(np.arange(8), 25)
    for method in CLUSTERERS:
        assert nmi(truth, cluster(X, 8, method, random_state=1)) == pytest.approx(1.0)


def test_bad_input_gets_a_clear_error(english_lsa):
    with pytest.raises(ValueError, match="unknown clustering method 'dbscan'"):
        cluster(english_lsa, 3, method="dbscan")
    with pytest.raises(ValueError, match="2-d"):
        cluster(english_lsa[0], 3)
    bad = english_lsa[:10].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        cluster(bad, 3)


def test_single_threaded_limits_the_pools_inside_nested_calls_and_restores_them():
    """The engine's numeric work runs on one thread (models/_threads.py), nested calls
    included, and the pools are given back after; the reused controller is cheap."""
    import timeit

    from threadpoolctl import threadpool_info

    from dialin.models._threads import single_threaded

    def threads() -> set[int]:
        return {i["num_threads"] for i in threadpool_info()}

    before = threads()
    seen: dict[str, set[int]] = {}

    @single_threaded
    def inner():
        seen["inner"] = threads()

    @single_threaded
    def outer():
        seen["outer before"] = threads()
        inner()
        seen["outer after"] = threads()

    outer()
    assert seen == {"outer before": {1}, "inner": {1}, "outer after": {1}}
    assert threads() == before
    # A limit made per call rescanned every loaded library (ms per call with torch loaded).
    per_call = timeit.timeit(single_threaded(lambda: None), number=200) / 200
    assert per_call < 0.0005, f"single_threaded costs {per_call * 1000:.2f} ms per call"
