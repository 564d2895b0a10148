"""Judges (is this cluster one intent?), namers and pruners that need no LLM server.

``_heuristic`` (the free offline judge and keyword namer), ``_oracle`` (benchmarks
only: it knows the gold labels), ``_voting`` (repeated and crowd judges), ``_pruning``
(how many clusters to keep). The LLM-backed ones live in :mod:`dialin.models.llm`.
Public names are re-exported from :mod:`dialin.models`.
"""
