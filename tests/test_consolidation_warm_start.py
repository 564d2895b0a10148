"""``DIALIN_CONSOLIDATION_WARM_START``: a consolidation starts from the groups the last one
certified, through the service's own parts (the in-process harness of
``bench/stream_keepup.py``: ingest, the leader's discovery, the catalog and the stores)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from dialin.models import BudgetITLClustering
from conftest import shuffled



@pytest.fixture
def fits(monkeypatch):
    """Every discovery fit's estimator, with the prior labels it was given (None: cold)."""
    seen: list[tuple[BudgetITLClustering, np.ndarray | None]] = []
    fit = BudgetITLClustering.fit

    def spy(self, X, y=None, *, texts=None, prior_labels=None):
        fitted = fit(self, X, y, texts=texts, prior_labels=prior_labels)
        seen.append((fitted, None if prior_labels is None else np.asarray(prior_labels)))
        return fitted

    monkeypatch.setattr(BudgetITLClustering, "fit", spy)
    return seen


def test_consolidations_start_warm_and_decide_every_utterance(bench_module, english_sample,
                                                               fits, monkeypatch):
    keepup = bench_module("stream_keepup")
    monkeypatch.setenv("DIALIN_CONSOLIDATION_WARM_START", "true")
    texts = shuffled(english_sample.texts, 500, 1)
    result = asyncio.run(keepup.run_service(texts, chunk=50))
    assert result["lost"] == 0
    assert sum(i is not None for i in result["final"]) >= 0.9 * len(texts)
    warm = [(est, prior) for est, prior in fits if prior is not None]
    assert warm, "no consolidation started warm"
    for est, prior in warm:
        assert est.calls_by_phase_.get("recheck", 0) > 0  # the earlier groups were asked about
        assert (prior >= 0).sum() < len(prior)  # what arrived since is clustered anew
    # the first fit of all (a buffer run) and the first consolidation start cold
    assert fits[0][1] is None and len(warm) < len(fits) - 1


def test_consolidations_start_cold_by_default(bench_module, english_sample, fits):
    keepup = bench_module("stream_keepup")
    result = asyncio.run(keepup.run_service(shuffled(english_sample.texts, 300, 1), chunk=50))
    assert result["lost"] == 0 and len(fits) >= 3
    assert all(prior is None for _, prior in fits)
