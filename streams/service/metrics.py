"""Every Prometheus metric the worker exports, defined once (prometheus-client).

The Grafana dashboard and the alert rules in ``deploy/`` query only these names; a
test parses their PromQL and checks each name against this registry, so they cannot
drift. Labels never carry utterance text.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS = Counter(
    "dialin_events", "Inbound utterance events by outcome (assigned, buffered, invalid, duplicate).",
    ["outcome"], registry=REGISTRY,
)
BUFFER_UTTERANCES = Gauge(
    "dialin_buffer_utterances", "Utterances waiting in the unassigned buffer (exported by the "
    "leader as it reads each batch of the buffer topic, before the cap trims it).",
    registry=REGISTRY,
)
BUFFER_PEAK = Gauge(
    "dialin_buffer_peak_utterances", "Largest size of the unassigned buffer this worker has "
    "read as leader since it started (the high-water mark of dialin_buffer_utterances).",
    registry=REGISTRY,
)
BUFFER_OLDEST_AGE = Gauge(
    "dialin_buffer_oldest_age_seconds", "Age of the oldest buffered utterance.", registry=REGISTRY,
)
BUFFER_CAP = Gauge(
    "dialin_buffer_cap_utterances", "Configured cap of the unassigned buffer.", registry=REGISTRY,
)
BUFFER_AGED_OUT = Counter(
    "dialin_buffer_aged_out", "Utterances dropped from the buffer by age or cap (also published).",
    ["reason"], registry=REGISTRY,
)
DISCOVERY_RUNS = Counter(
    "dialin_discovery_runs", "Discovery runs by result (ok, certified_nothing: the judge "
    "called no cluster Good, failed).", ["result"], registry=REGISTRY,
)
DISCOVERY_UNCERTIFIED = Counter(
    "dialin_discovery_uncertified_utterances", "Utterances a discovery run fitted that no Good "
    "verdict covers; they stay in the buffer (no intent is published for them).", registry=REGISTRY,
)
DISCOVERY_SECONDS = Histogram(
    "dialin_discovery_duration_seconds", "Wall time of one discovery run.",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800), registry=REGISTRY,
)
DISCOVERY_GOODNESS = Gauge(
    "dialin_discovery_goodness_ratio", "Good clusters over judged clusters in the last run.",
    registry=REGISTRY,
)
CLUSTERS_JUDGED = Counter(
    "dialin_clusters_judged", "Cluster verdicts by verdict (good, bad, invalid).",
    ["verdict"], registry=REGISTRY,
)
JUDGE_CALLS = Counter(
    "dialin_judge_calls", "Judge calls spent by discovery phase.", ["phase"], registry=REGISTRY,
)
INTENTS = Counter(
    "dialin_intent_updates", "Intent updates published by status (created, updated, merged, retired).",
    ["status"], registry=REGISTRY,
)
CATALOG_INTENTS = Gauge(
    "dialin_catalog_intents", "Intents in the catalog.", registry=REGISTRY,
)
LLM_CALLS = Counter(
    "dialin_llm_calls", "LLM requests by task (judge, name, prune) and outcome (ok, invalid, error, cached).",
    ["task", "outcome"], registry=REGISTRY,
)
LLM_SECONDS = Histogram(
    "dialin_llm_request_duration_seconds", "LLM request latency by task.", ["task"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60), registry=REGISTRY,
)
LLM_TOKENS = Counter(
    "dialin_llm_tokens", "LLM tokens by task and kind (prompt, completion).",
    ["task", "kind"], registry=REGISTRY,
)
EMBED_SECONDS = Histogram(
    "dialin_embedding_batch_duration_seconds", "Wall time to embed one micro-batch.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10), registry=REGISTRY,
)
ENCODER_RESTARTS = Counter(
    "dialin_encoder_restarts", "Times the encoder's processes were started again after one "
    "died (killed for memory, say); each time one batch is embedded again.", registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "dialin_consumer_lag", "End offset minus committed offset, per partition.",
    ["topic", "partition"], registry=REGISTRY,
)
CONSUMER_STALLED = Gauge(
    "dialin_consumer_stalled",
    "1 while a partition has lag but its committed offset has not moved for 3 lag intervals.",
    ["topic", "partition"], registry=REGISTRY,
)
READY = Gauge(
    "dialin_ready", "1 when the worker is connected to Kafka and its catalog is loaded.",
    registry=REGISTRY,
)
PII_REDACTIONS = Counter(
    "dialin_pii_redactions", "PII values replaced before text left the process (LLM prompts, "
    "published examples), by entity (PHONE, EMAIL, CARD, CN_ID, ...).",
    ["entity"], registry=REGISTRY,
)


LLM_FALLBACKS = Counter(
    "dialin_llm_fallbacks", "LLM questions the spend cap refused, answered by the offline judge, "
    "keyword namer or heuristic pruner instead, by task (judge, name, prune) and reason "
    "(call_cap, token_cap).", ["task", "reason"], registry=REGISTRY,
)
LLM_CAP_STREAK = Gauge(
    "dialin_llm_spend_cap_streak", "Consecutive clock hours, up to the current one, in which an "
    "LLM spend cap (DIALIN_LLM_MAX_CALLS_PER_HOUR / _TOKENS_PER_HOUR) was reached; the current "
    "hour counts once the cap is reached in it. 0 without caps.", registry=REGISTRY,
)


def observe_llm_fallback(task: str, reason: str, n: int) -> None:
    """The spend cap's ``on_fallback`` hook: questions answered offline, by task and reason."""
    LLM_FALLBACKS.labels(task, reason).inc(n)


def observe_llm_call(task: str, outcome: str, seconds: float, prompt_tokens: int | None,
                     completion_tokens: int | None) -> None:
    """The ``on_call`` hook of the LLM backends: one request into the LLM metrics."""
    LLM_CALLS.labels(task, outcome).inc()
    if outcome != "cached":
        LLM_SECONDS.labels(task).observe(seconds)
    LLM_TOKENS.labels(task, "prompt").inc(prompt_tokens or 0)
    LLM_TOKENS.labels(task, "completion").inc(completion_tokens or 0)
MEMORY_UTTERANCES = Gauge(
    "dialin_memory_utterances", "Assigned utterances the leader remembers for consolidation.",
    registry=REGISTRY,
)
REASSIGNMENTS = Counter(
    "dialin_reassignments", "Assignments changed after the first one, by cause (consolidation, "
    "merge, split).", ["cause"], registry=REGISTRY,
)
REASSIGNMENTS_DEFERRED = Counter(
    "dialin_reassignments_deferred", "Reassignments a consolidation left for the next one: the "
    "utterance's input offset was not committed yet, so a redelivery could still overwrite it.",
    registry=REGISTRY,
)
CONSOLIDATIONS_DEFERRED = Counter(
    "dialin_consolidations_deferred", "Ticks where a due consolidation waited because the input's "
    "consumer lag was above DIALIN_CONSOLIDATION_MAX_LAG.", registry=REGISTRY,
)
CONSOLIDATIONS = Counter(
    "dialin_consolidations", "Discovery runs that re-fitted the memory with the buffer.",
    registry=REGISTRY,
)

# --- intent lifecycle, decisions, volume (issue 15) ---------------------------------
DISCOVERY_BLOCKED = Counter(
    "dialin_discovery_blocked_clusters", "Certified clusters not proposed because their "
    "utterances fall in a rejected intent's region", registry=REGISTRY)
DECISIONS = Counter(
    "dialin_decisions", "Reviewers' decisions read by the leader, by action and result "
    "(applied, stale: expected_version was not the intent's, invalid: unknown intent or "
    "target, nothing to split)", ["action", "result"], registry=REGISTRY)
LIFECYCLE_EVENTS = Counter(
    "dialin_intent_events", "Intent events published, by event", ["event"], registry=REGISTRY)
CANDIDATES_WAITING = Gauge(
    "dialin_candidates_waiting", "Candidate intents waiting for the activation rule or a "
    "reviewer", registry=REGISTRY)
CANDIDATE_OLDEST_AGE = Gauge(
    "dialin_candidate_oldest_age_seconds", "Age of the oldest candidate intent (0: none)",
    registry=REGISTRY)
NEW_INTENT_WINDOW_MAX = Gauge(
    "dialin_new_intent_window_max", "The largest count of first assignments, in the last "
    "closed volume window, of any intent created in the last 24 hours", registry=REGISTRY)
