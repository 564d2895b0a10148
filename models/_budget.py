"""Budgeted LLM-in-the-loop clustering: the engine's default strategy (work in progress).

Public contract (stable, used by the CLI and the service)::

    BudgetITLClustering(judge, namer=None, budget=0.3, max_calls=None,
                        random_state=None).fit(X, texts=None)
    -> labels_ (n,), intents_ (list[Intent]), log_ (list[dict]),
       n_judge_calls_ (int), calls_by_phase_ (dict[str, int])
"""

from __future__ import annotations
