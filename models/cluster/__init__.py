"""Clustering strategies and their parts: the LLM-in-the-loop engine itself.

``_budget`` (the default: a judge-call budget over an over-segmentation), ``_paper``
(Algorithm 1 of the paper), ``_roles`` (one fit per speaker role), ``_clusterers``
(k-means and friends), ``_merge`` (label-embedding merge), ``_sampling`` (what a judge
is shown), ``_ledger`` (judge calls and their cache), ``_intents`` (named intents from
labels). Public names are re-exported from :mod:`dialin.models`.
"""
