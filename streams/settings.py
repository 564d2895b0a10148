"""All configuration of Dial-In in one typed place (pydantic-settings, env ``DIALIN_*``).

The engine in ``dialin.models`` takes plain constructor arguments and never reads the
environment; this module and :mod:`dialin.streams.factory` are the only places that
know both configuration and classes. Use :func:`get_settings`, never a module-level
instance, so tests and the CLI can change the environment first.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The names a setting chooses from: the CLI builds its option choices from these
#: (``typing.get_args``), so a new judge, namer or strategy needs no second list there.
JudgeName = Literal["heuristic", "openai", "vllm"]
NamerName = Literal["keywords", "openai", "vllm"]
StrategyName = Literal["budget", "paper"]


class Settings(BaseSettings):
    """Every ``DIALIN_*`` setting; field ``kafka_bootstrap`` is env ``DIALIN_KAFKA_BOOTSTRAP``."""

    model_config = SettingsConfigDict(env_prefix="DIALIN_", env_file=None, extra="ignore")

    # --- engine -----------------------------------------------------------------
    embedder: str = Field("minilm", description="minilm | lsa | a sentence-transformers name or path")
    embedding_cache_dir: str | None = Field(None, description="on-disk embedding cache folder")
    judge: JudgeName = "heuristic"
    namer: NamerName = "keywords"
    strategy: StrategyName = "budget"
    judge_budget: float | None = Field(
        None, gt=0, description="judge calls per utterance per discovery run; unset: the judge's "
        "default (0.3 for LLM judges, 0.6 for the free offline heuristic), except in the "
        "service with an LLM judge (discovery_llm_judge_budget)")
    discovery_llm_judge_budget: float = Field(
        0.5, gt=0, description="the judge budget of the service's discovery runs and "
        "consolidations with an LLM judge while judge_budget is unset: the service fits small "
        "runs, where an intent new traffic brings needs the merge questions a budget of 0.3 "
        "runs out of (held-back intents found at a call center's pace: bench/stream_keepup.py "
        "--judge simulated-llm); dialin discover keeps the judge's 0.3")
    k_hint: Annotated[int, Field(ge=1)] | Literal["auto", "off"] = Field(
        "off", description="the budget strategy's anchor on how many intents one fit holds: "
        "auto (a label-free estimate of its input, so a small discovery run of many intents "
        "does not collapse into a few broad ones, but a small run of a few intents is "
        "over-split, the more so with an LLM judge, whose merges it stops at the estimate), "
        "off, or a number >= 1")
    merge_threshold: float = Field(0.15, ge=0, le=2, description="label-embedding cosine distance θ")
    random_state: int = 0

    # --- LLM (OpenAI-compatible server such as `vllm serve`) -------------------------
    llm_url: str | None = None
    llm_model: str | None = None
    llm_api_key: SecretStr = SecretStr("EMPTY")
    llm_timeout: float = 30.0
    llm_max_retries: int = 3
    llm_concurrency: int = 16
    judge_lookahead: int = Field(
        8, ge=1, description="how many questions of a discovery fit's growth and merge an LLM "
        "judge is asked at once (its client sends them concurrently, so a fit waits about one "
        "round trip per batch); 1 asks one at a time. Judges that answer locally (the offline "
        "heuristic) always ask one at a time")

    # --- Kafka ------------------------------------------------------------------
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_utterances: str = "utterances"
    topic_assignments: str = "intent-assignments"
    topic_updates: str = "intent-updates"
    topic_dlq: str = "utterances-dlq"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None

    # --- service ----------------------------------------------------------------
    app_id: str = "dialin"
    data_dir: str = "./dialin-data"
    metrics_port: int = 9464
    match_threshold: float = Field(
        0.6, description="floor on the open-set score (mean cosine to the intent's nearest "
        "exemplars) to assign to a known intent; each intent's own threshold applies above it")
    match_neighbors: int = Field(10, ge=1, description="exemplars consulted per utterance")
    match_vote_share: float = Field(
        0.7, gt=0, le=1, description="share of the consulted exemplars that must be one intent's")
    match_exemplars: int = Field(64, ge=1, description="member embeddings kept per intent")
    match_quantile: float = Field(
        0.05, ge=0, le=1, description="an intent's threshold: this quantile of its own "
        "exemplars' leave-one-out score")
    # Continuous batching of the ingest agent: a batch is what arrived while the embedder
    # was busy, so it grows with the load up to batch_size (sentence-transformers sorts each
    # call's texts by length before its inner batches of 16, so a larger batch pads less).
    batch_size: int = Field(256, ge=1, description="most utterances embedded in one call; "
                            "under load batches grow up to it by themselves")
    batch_seconds: float = Field(
        0.01, gt=0, description="once the embedder is free, how long the agent waits for more "
        "utterances before embedding what has arrived (adds at most this to the latency)")
    fetch_max_wait_ms: int = Field(
        100, ge=1, le=60000, description="longest the worker's Kafka consumer lets the broker "
        "hold a fetch (faust's own 1500 put a 0.5 s floor under latency on the embedded broker)")
    discovery_min_utterances: int = 200
    discovery_max_age_seconds: float = 600.0
    discovery_interval_seconds: float = 5.0
    discovery_idle_seconds: float = Field(
        30.0, ge=0, description="when no utterance arrived for this long, what arrived since "
        "the last run is examined at once (a buffer run or a consolidation); 0: never")
    buffer_cap: int = 20000
    buffer_max_age_seconds: float = 86400.0
    # --- worker internals (appended by the streaming worker) -----------------------
    topic_buffer: str = Field("dialin-buffer", description="internal compacted topic of unassigned utterances")
    topic_catalog: str = Field("dialin-catalog", description="internal compacted topic of the intent catalog")
    topic_partitions: int = Field(4, ge=1, description="partitions of topics the worker creates")
    embedder_fit_file: str | None = Field(
        None, description="CSV/JSONL to fit the lsa embedder on once (saved in data_dir/lsa)")
    topic_memory: str = Field(
        "dialin-memory", description="internal compacted topic of assigned utterances kept "
        "for consolidation")
    memory_cap: int = Field(6000, ge=0, description="assigned utterances the leader remembers")
    memory_min_per_intent: int = Field(
        20, ge=0, description="remembered utterances no intent is trimmed below")
    consolidation_growth: float = Field(
        0.25, gt=0, description="a consolidation runs when the memory gained this share of "
        "its size at the last one")
    consolidation_warm_start: bool = Field(
        False, description="a consolidation starts from the groups the last one certified "
        "(each asked about once, kept when still Good) and clusters only the rest, instead of "
        "re-fitting the whole memory: fewer judge calls while the memory grows, lower "
        "quality, and no more new intents found (bench/stream_keepup.py --warm); budget "
        "strategy only")
    consolidation_split_check: Literal["auto", "on", "off"] = Field(
        "auto", description="before a consolidation splits a known intent in two clusters that "
        "each hold mostly its members, ask the judge whether they are one intent (a Good union "
        "keeps the intent whole): on, off, or auto (on with an LLM judge, off with the offline "
        "heuristic, whose union test reads the geometry the re-fit cut; "
        "bench/stream_keepup.py --split-check)")
    consolidation_interval_seconds: float = Field(
        900.0, ge=0, description="once the memory is full, at most one consolidation this often")
    rename_overlap: float = Field(
        0.7, ge=0, le=1, description="a consolidation re-names an intent the engine named "
        "(event renamed, actor engine) when fewer than this share of its members are members "
        "it was named for and the namer now names it otherwise; 0: engine names never change")
    consolidation_max_lag: int = Field(
        2000, ge=0, description="a due consolidation waits while the input's consumer lag "
        "(all partitions) is above this: under overload the cores go to ingestion first")
    discovery_min_cluster_size: int = Field(3, ge=1, description="smaller clusters stay buffered")
    discovery_process: bool = Field(
        True, description="fit discovery in a process of its own at a lower CPU priority, so a "
        "fit does not hold the event loop up (the offline judge and namer only: an LLM judge "
        "or namer fits on a thread of the worker)")
    dedup_window: int = Field(100000, ge=0, description="recent utterance_ids remembered per worker")
    kafka_session_timeout_seconds: float = Field(
        10.0, gt=0, description="consumer-group session timeout: how soon a dead worker's partitions move")
    lag_interval_seconds: float = Field(10.0, gt=0, description="how often consumer lag is exported")
    stop_delay_seconds: float = Field(
        2.0, ge=0, description="after SIGTERM, /readyz answers 503 this long before the drain begins")
    # --- threads (appended by the latency work, issue 17) ---------------------------
    embed_threads: int = Field(
        0, ge=0, description="threads the worker's embedder encodes with; 0: every core the "
        "process may run on (matching and publishing run on other threads)")
    encoder_processes: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="processes the worker embeds in, so its other threads (event loop, "
        "matching, discovery) do not slow the encoder down; each gets its share of the embed "
        "threads and a large batch is cut between them; 0: on a thread of the worker; auto: "
        "one per embed thread, up to 2")
    # --- PII (appended by the redaction work, issue 7) ------------------------------
    pii_redaction: bool = Field(
        True, description="redact PII from utterances sent to an LLM and from published examples")
    pii_entities: list[str] = Field(
        ["PHONE", "EMAIL", "CARD", "CN_ID"],
        description='what to redact, a JSON list (DIALIN_PII_ENTITIES=\'["PHONE","EMAIL"]\'); '
                    "also IBAN, IP, US_SSN")
    # --- LLM spend caps (appended by the spend-cap work, issue 16) ---------------------
    llm_max_calls_per_hour: int | None = Field(
        None, ge=0, description="LLM requests per clock hour (UTC), retries included, shared "
        "by the judge, namer and pruner of a process and kept across restarts; unset: no cap")
    llm_max_tokens_per_hour: int | None = Field(
        None, ge=0, description="LLM tokens (the server's usage) per clock hour; the requests "
        "in flight when it is reached may pass it; unset: no cap")
    llm_cap_action: Literal["fallback", "wait"] = Field(
        "fallback", description="at a cap: fallback (the offline judge and namer answer the "
        "rest) or wait (for the next hour)")
    topic_llm_spend: str = Field(
        "dialin-llm-spend", description="internal compacted topic of the LLM spend of the "
        "current hour")

    # --- intent lifecycle, decisions, volume (issue 15, parts 1, 3, 4) -----------------
    topic_events: str = Field(
        "intent-events", description="append-only history of every intent event (key = "
        "intent_id): a subscriber can rebuild everything from it")
    topic_decisions: str = Field(
        "intent-decisions", description="compacted topic of reviewers' decisions (key = "
        "decision_id), applied by the leader")
    topic_volume: str = Field(
        "intent-volume", description="per-intent assignment counts per tumbling window "
        "(key = intent_id)")
    activation_min_size: int = Field(
        20, ge=0, description="a candidate is activated by the rule once it has this many "
        "members")
    activation_min_growth: int = Field(
        0, ge=0, description="... and gained this many assignments in the last "
        "activation_window_seconds (0: no growth needed)")
    activation_window_seconds: float = Field(
        3600.0, gt=0, description="the window the activation rule's growth is counted over")
    activation_min_confidence: float = Field(
        0.0, ge=0, le=1, description="... and its judge confidence is at least this (an "
        "intent the judge gave no confidence passes)")
    retire_after_seconds: float = Field(
        0.0, ge=0, description="an intent no utterance was assigned to for this long is "
        "retired by the rule (0: never)")
    decision_examples: int = Field(
        6, ge=0, description="decided clusters (most recent, same language) shown to the "
        "LLM judge and namer as few-shot examples")
    volume_window_seconds: float = Field(
        300.0, gt=0, description="tumbling window of the per-intent counts on topic_volume")
    # --- review page (appended by the review work, issue 15 part 2) ---------------------
    review_host: str = Field(
        "127.0.0.1", description="address `dialin review` binds to; beyond loopback it needs "
        "review_tokens")
    review_port: int = Field(8470, ge=0, le=65535, description="port of `dialin review`")
    review_tokens: dict[str, SecretStr] = Field(
        default_factory=dict, description='reviewers allowed when the page is bound beyond '
        'loopback, a JSON object name -> token (DIALIN_REVIEW_TOKENS=\'{"ana":"..."}\'); the '
        "name is the actor of their decisions")
    # --- LLM response log (appended by the replay work, issue 16 part 2) ----------------
    topic_llm_responses: str = Field(
        "dialin-llm-responses", description="internal compacted topic of every LLM answer "
        "by prompt hash, the first one kept: what `dialin rediscover` replays")

@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return Settings()
