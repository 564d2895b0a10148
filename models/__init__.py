"""Dial-In's engine: LLM-in-the-loop intent clustering, usable without Kafka.

Public objects are re-exported here from their private modules (scikit-learn style).
"""

from ._catalog import CatalogIntent, EmbeddingSpaceError, IntentCatalog
from ._open_set import (OpenSetMatcher, Reconciliation, came_from, claims, exemplar_score,
                        new_intent_id, reconcile)
from ._base import (BAD, GOOD, ChatClient, ClusterView, Completion, Embedder, Intent, Judge, Namer,
                    Pruner, Verdict)
from ._io import InputError, Table, load_table
from .cluster._ledger import JudgeLedger
from .judges._oracle import OracleJudge, SampledOracleJudge
from .cluster._budget import BudgetITLClustering
from .cluster._kestimate import K_ESTIMATORS, estimate_n_intents
from .cluster._contract import FITTED_ATTRIBUTES
from .text._embedders import CachedEmbedder, LSAEmbedder, SentenceTransformerEmbedder, get_embedder
from .cluster._clusterers import CLUSTERERS, cluster
from ._metrics import ari, clustering_scores, goodness, nmi, semantic_diversity
from .judges._heuristic import HeuristicJudge, KeywordNamer
from .text._keywords import AGENT_ACTIONS, CUSTOMER_ACTIONS, action_of
from .cluster._sampling import SAMPLING_METHODS, make_union_view, make_view, sample_members
from .llm._accounting import LLMStats
from ._annotations import (
    Annotation,
    AnnotationError,
    AnnotationWarning,
    export_annotations,
    load_annotations,
)
from .llm._openai import OpenAIClient
from .llm._breaker import CircuitBreaker, LLMUnavailableError
from .llm._spend import (CAP_ACTIONS, CAP_REASONS, InMemorySpendLedger, SpendCap,
                         SpendCapReached, SpendCapStopped, SpendLedger, WindowSpend)
from .llm._responses import MemoryResponseLog, ResponseLog
from .llm._prompts import (PROMPT_VERSION, DecidedExample, DecidedExamples, load_prompt,
                           prompt_version)
from .text._language import detect_language
from .judges._pruning import HeuristicPruner
from .judges._llm import (LLMJudge, LLMNamer, LLMPruner, LLMWarning, OpenAIJudge, OpenAINamer,
                          VLLMJudge, VLLMNamer)
from .text._pii import Redactor
from .llm._vllm import VLLMClient
from .judges._voting import CrowdJudge, RepeatedJudge
from .cluster._intents import UNASSIGNED, NothingCertifiedWarning, build_intents
from .cluster._merge import merge_by_label
from .cluster._paper import LLMITLClustering, PruningWarning
from .cluster._roles import RoleAwareClustering, infer_roles

__all__ = [
    "LLMITLClustering",
    "FITTED_ATTRIBUTES",
    "OpenSetMatcher",
    "exemplar_score",
    "Reconciliation",
    "new_intent_id",
    "reconcile",
    "came_from",
    "claims",
    "PruningWarning",
    "RoleAwareClustering",
    "build_intents",
    "NothingCertifiedWarning",
    "UNASSIGNED",
    "infer_roles",
    "merge_by_label",
    "BudgetITLClustering",
    "K_ESTIMATORS",
    "estimate_n_intents",
    "AGENT_ACTIONS",
    "CLUSTERERS",
    "CUSTOMER_ACTIONS",
    "CachedEmbedder",
    "HeuristicJudge",
    "KeywordNamer",
    "LSAEmbedder",
    "SAMPLING_METHODS",
    "SentenceTransformerEmbedder",
    "action_of",
    "ari",
    "cluster",
    "clustering_scores",
    "get_embedder",
    "goodness",
    "make_union_view",
    "make_view",
    "nmi",
    "sample_members",
    "semantic_diversity",
    "PROMPT_VERSION",
    "Annotation",
    "AnnotationError",
    "AnnotationWarning",
    "export_annotations",
    "load_annotations",
    "CrowdJudge",
    "HeuristicPruner",
    "LLMJudge",
    "LLMNamer",
    "LLMPruner",
    "Redactor",
    "LLMStats",
    "LLMWarning",
    "CircuitBreaker",
    "LLMUnavailableError",
    "CAP_ACTIONS",
    "CAP_REASONS",
    "InMemorySpendLedger",
    "MemoryResponseLog",
    "DecidedExample",
    "DecidedExamples",
    "ResponseLog",
    "SpendCap",
    "SpendCapReached",
    "SpendCapStopped",
    "SpendLedger",
    "WindowSpend",
    "OpenAIClient",
    "OpenAIJudge",
    "OpenAINamer",
    "RepeatedJudge",
    "VLLMClient",
    "VLLMJudge",
    "VLLMNamer",
    "detect_language",
    "load_prompt",
    "prompt_version",
    "BAD",
    "CatalogIntent",
    "EmbeddingSpaceError",
    "IntentCatalog",
    "GOOD",
    "ChatClient",
    "ClusterView",
    "Completion",
    "Embedder",
    "InputError",
    "Intent",
    "Judge",
    "JudgeLedger",
    "Namer",
    "Pruner",
    "OracleJudge",
    "SampledOracleJudge",
    "Table",
    "Verdict",
    "load_table",
]
