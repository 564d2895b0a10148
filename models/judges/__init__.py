"""Judges (is this cluster one intent?), namers and pruners.

``_heuristic`` (the free offline judge and keyword namer), ``_oracle`` (benchmarks
only: it knows the gold labels), ``_voting`` (repeated and crowd judges), ``_pruning``
(how many clusters to keep, without an LLM), ``_llm`` (the LLM judge, namer and pruner
over any :class:`~dialin.models.ChatClient`: caching, retries, breaker and accounting;
the clients themselves live in :mod:`dialin.models.llm`).
Public names are re-exported from :mod:`dialin.models`.
"""
