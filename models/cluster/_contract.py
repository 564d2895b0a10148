"""The estimator contract every clustering strategy keeps: one fit signature, one result.

scikit-learn passes ``y`` second (``Pipeline.fit``, ``ClusterMixin.fit_predict``), so the
texts a judge reads are per-sample data passed by keyword:
``fit(X, y=None, *, texts=None)``. A clusterer has no use for ``y``; a second positional
argument is almost certainly texts written the old way (``fit(X, texts)``), and fitting
on placeholder texts would silently name every intent after ``utterance 17``, so it is
refused with a message that says what to write instead.

Every strategy sets the same fitted attributes (:data:`FITTED_ATTRIBUTES`), so callers
read them directly instead of through ``getattr`` with a default, and one parametrised
test (``tests/test_estimator_api.py``) holds every strategy to this list. Libraries:
scikit-learn (``ClusterMixin``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import ClusterMixin

#: Set by every strategy's ``fit``: integer labels per row (-1 = no certified intent),
#: the number of intents, the intents, the log (a list of dicts), judge calls and those
#: calls by phase.
FITTED_ATTRIBUTES = ("labels_", "n_clusters_", "intents_", "log_", "n_judge_calls_",
                     "calls_by_phase_")


def check_no_y(y: Any) -> None:
    """Refuse a ``y``: in a strategy's ``fit`` it can only be texts passed positionally."""
    if y is not None:
        raise TypeError("y is not used by a clustering strategy: pass the utterances by "
                        "keyword, fit(X, texts=texts), not fit(X, texts)")


class StrategyMixin(ClusterMixin):
    """``fit_predict`` that hands ``y`` to ``fit``: ``ClusterMixin``'s drops it unseen,
    which would turn ``fit_predict(X, texts)`` into a fit on placeholder texts."""

    def fit_predict(self, X, y=None, **kwargs) -> np.ndarray:
        return self.fit(X, y, **kwargs).labels_
