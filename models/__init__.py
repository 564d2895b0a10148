"""Dial-In's engine: LLM-in-the-loop intent clustering, usable without Kafka.

Public objects are re-exported here from their private modules (scikit-learn style).
"""

from ._catalog import CatalogIntent, EmbeddingSpaceError, IntentCatalog
from ._base import BAD, GOOD, ClusterView, Embedder, Intent, Judge, Namer, Verdict
from ._io import InputError, Table, load_table
from ._ledger import JudgeLedger
from ._oracle import OracleJudge

__all__ = [
    "BAD",
    "CatalogIntent",
    "EmbeddingSpaceError",
    "IntentCatalog",
    "GOOD",
    "ClusterView",
    "Embedder",
    "InputError",
    "Intent",
    "Judge",
    "JudgeLedger",
    "Namer",
    "OracleJudge",
    "Table",
    "Verdict",
    "load_table",
]
