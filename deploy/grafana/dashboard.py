"""The Dial-In Grafana dashboard, built with Grafana's typed SDK (grafana-foundation-sdk).

Why code and not hand-edited JSON: panels, units and queries are reviewed as code, and
``tests/test_observability.py`` regenerates the JSON and compares it with the committed
``dashboards/dialin.json`` (which Grafana provisions), so the two cannot drift; the same
test parses every query and checks each metric against ``dialin.streams.service.metrics``.

Regenerate after a change::

    python deploy/grafana/dashboard.py            # writes dashboards/dialin.json
    python deploy/grafana/dashboard.py --check    # exit 1 when the JSON is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "dialin.json"
UID = "dialin-overview"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"


def _query(expr: str, legend: str, ref_id: str = "A") -> prometheus.Dataquery:
    """One Prometheus target; legends use Grafana's ``{{label}}`` templating."""
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref_id).datasource(DATASOURCE)


def _series(title: str, description: str, unit: str, *queries: tuple[str, str],
            span: int = 12, max_value: float | None = None) -> timeseries.Panel:
    """A time-series panel with one target per (expr, legend) pair."""
    panel = (
        timeseries.Panel().title(title).description(description).unit(unit)
        .min(0).span(span).height(8).datasource(DATASOURCE)
    )
    if max_value is not None:
        panel = panel.max(max_value)
    for index, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + index)))
    return panel


def _stat(title: str, description: str, unit: str, expr: str) -> stat.Panel:
    """A single-number panel for the current state (catalog size, ready workers)."""
    return (
        stat.Panel().title(title).description(description).unit(unit)
        .span(6).height(4).datasource(DATASOURCE).with_target(_query(expr, ""))
    )


def _quantiles(metric: str, by: str) -> list[tuple[str, str]]:
    """p50 and p95 of a histogram, split by ``by`` (empty for one line per quantile)."""
    group = f"{by}, le" if by else "le"
    legend = f"{{{{{by}}}}} " if by else ""
    return [
        (f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[{RATE}])))", f"{legend}p{int(q * 100)}")
        for q in (0.5, 0.95)
    ]


def build() -> dashboard.Dashboard:
    """The dashboard builder: one row each for ingest, buffer, discovery, LLM and intents."""
    return (
        dashboard.Dashboard("Dial-In: intent discovery")
        .uid(UID)
        .description("Ingest, unassigned buffer, discovery runs, LLM calls and the intent catalog of the Dial-In worker.")
        .tags(["dialin", "generated"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_row(dashboard.Row("Overview"))
        .with_panel(_stat("Ready workers", "Workers connected to Kafka with the catalog loaded.", "none",
                          "sum(dialin_ready)"))
        .with_panel(_stat("Intents in catalog", "Current size of the intent catalog.", "none",
                          "max(dialin_catalog_intents)"))
        .with_panel(_stat("Consumer lag", "Messages not yet processed, all partitions.", "short",
                          "sum(max by (topic, partition) (dialin_consumer_lag))"))
        .with_panel(_stat("Buffered utterances", "Utterances waiting for discovery, all workers.", "short",
                          "sum(dialin_buffer_utterances)"))
        .with_row(dashboard.Row("Ingest"))
        .with_panel(_series(
            "Ingest rate by outcome", "Inbound utterance events per second: assigned to a known intent, "
            "buffered for discovery, dead-lettered as invalid, or dropped as duplicate.", "ops",
            (f"sum by (outcome) (rate(dialin_events_total[{RATE}]))", "{{outcome}}"),
        ))
        .with_panel(_series(
            "Assignment ratio", "Share of accepted events matched to a known intent; it rises as the "
            "catalog covers the traffic.", "percentunit",
            (f'sum(rate(dialin_events_total{{outcome="assigned"}}[{RATE}])) '
             f'/ sum(rate(dialin_events_total{{outcome=~"assigned|buffered"}}[{RATE}]))', "assigned"),
            max_value=1,
        ))
        .with_panel(_series(
            "Consumer lag by partition", "End offset minus committed offset; steady growth means the "
            "workers do not keep up (add partitions and workers).", "short",
            ("max by (topic, partition) (dialin_consumer_lag)", "{{topic}}/{{partition}}"),
        ))
        .with_panel(_series(
            "Embedding batch latency", "Wall time to embed one micro-batch.", "s",
            *_quantiles("dialin_embedding_batch_duration_seconds", ""),
        ))
        .with_panel(_series(
            "Encoder restarts", "Times a worker's encoder processes were started again after one "
            "died (killed for memory, say), in the last hour: raise the memory limit or lower "
            "DIALIN_ENCODER_PROCESSES.", "short",
            ("sum by (instance) (increase(dialin_encoder_restarts_total[1h]))", "{{instance}}"),
        ))
        .with_row(dashboard.Row("Unassigned buffer"))
        .with_panel(_series(
            "Buffer size and cap", "Utterances waiting for discovery (exported by the leader, which "
            "reads the whole buffer), its high-water mark, and the cap.", "short",
            ("dialin_buffer_utterances", "{{instance}}"),
            ("dialin_buffer_peak_utterances", "{{instance}} peak"),
            ("max(dialin_buffer_cap_utterances)", "cap"),
            span=8,
        ))
        .with_panel(_series(
            "Oldest buffered utterance", "Age of the oldest utterance in each worker's buffer.", "s",
            ("dialin_buffer_oldest_age_seconds", "{{instance}}"),
            span=8,
        ))
        .with_panel(_series(
            "Dropped from buffer", "Utterances aged out or pushed out by the cap, per second.", "ops",
            (f"sum by (reason) (rate(dialin_buffer_aged_out_total[{RATE}]))", "{{reason}}"),
            span=8,
        ))
        .with_row(dashboard.Row("Discovery"))
        .with_panel(_series(
            "Discovery runs by result", "Runs started by the buffer size or age trigger.", "short",
            (f"sum by (result) (increase(dialin_discovery_runs_total[{RATE}]))", "{{result}}"),
            span=8,
        ))
        .with_panel(_series(
            "Discovery run duration", "Wall time of one discovery run.", "s",
            *_quantiles("dialin_discovery_duration_seconds", ""),
            span=8,
        ))
        .with_panel(_series(
            "Goodness per run", "Good clusters over judged clusters in the last run (the paper's "
            "goodness ratio).", "percentunit",
            ("dialin_discovery_goodness_ratio", "{{instance}}"),
            span=8, max_value=1,
        ))
        .with_panel(_series(
            "Cluster verdicts", "Judge verdicts per cluster: good, bad, or an unparseable answer.", "short",
            (f"sum by (verdict) (increase(dialin_clusters_judged_total[{RATE}]))", "{{verdict}}"),
            span=8,
        ))
        .with_panel(_series(
            "Judge calls by phase", "Judge calls spent per discovery phase (the LLM budget).", "short",
            (f"sum by (phase) (increase(dialin_judge_calls_total[{RATE}]))", "{{phase}}"),
            span=8,
        ))
        .with_panel(_series(
            "Utterances left uncertified", "Fitted utterances no Good verdict covers: no intent is "
            "published for them and they stay in the buffer.", "short",
            (f"sum(increase(dialin_discovery_uncertified_utterances_total[{RATE}]))", "uncertified"),
            span=8,
        ))
        .with_row(dashboard.Row("LLM"))
        .with_panel(_series(
            "LLM calls by task and outcome", "Requests to the OpenAI-compatible server (vLLM) per second.", "reqps",
            (f"sum by (task, outcome) (rate(dialin_llm_calls_total[{RATE}]))", "{{task}} {{outcome}}"),
            span=8,
        ))
        .with_panel(_series(
            "LLM latency", "Request latency by task.", "s",
            *_quantiles("dialin_llm_request_duration_seconds", "task"),
            span=8,
        ))
        .with_panel(_series(
            "LLM error ratio", "Failed requests (after the client's retries) over uncached requests.",
            "percentunit",
            (f'sum by (task) (rate(dialin_llm_calls_total{{outcome="error"}}[{RATE}])) '
             f'/ sum by (task) (rate(dialin_llm_calls_total{{outcome!="cached"}}[{RATE}]))', "{{task}}"),
            span=8, max_value=1,
        ))
        .with_panel(_series(
            "LLM tokens", "Tokens per second by task and kind.", "short",
            (f"sum by (task, kind) (rate(dialin_llm_tokens_total[{RATE}]))", "{{task}} {{kind}}"),
            span=12,
        ))
        .with_panel(_series(
            "LLM spend-cap fallbacks", "Questions the offline judge or namer answered because "
            "an hourly LLM cap was reached (DIALIN_LLM_MAX_*_PER_HOUR), and the hours in a row "
            "the cap was hit.", "short",
            (f"sum by (task, reason) (increase(dialin_llm_fallbacks_total[{RATE}]))",
             "{{task}} {{reason}}"),
            ("max(dialin_llm_spend_cap_streak)", "hours at the cap in a row"),
            span=12,
        ))
        .with_panel(_series(
            "PII redactions by entity", "Values replaced before text left the process "
            "(LLM prompts, published intent examples).", "short",
            (f"sum by (entity) (increase(dialin_pii_redactions_total[{RATE}]))", "{{entity}}"),
            span=24,
        ))
        .with_row(dashboard.Row("Intents"))
        .with_panel(_series(
            "Intents over time", "Size of the intent catalog.", "short",
            ("max(dialin_catalog_intents)", "intents"),
        ))
        .with_panel(_series(
            "Intent updates by status", "Published intent updates: created, updated, merged, retired.", "short",
            (f"sum by (status) (increase(dialin_intent_updates_total[{RATE}]))", "{{status}}"),
        ))
        .with_panel(_series(
            "Reassignments by cause", "Assignments re-published because a consolidation moved "
            "the utterance (consolidation, merge, split); each is a new version for subscribers.",
            "short",
            (f"sum by (cause) (increase(dialin_reassignments_total[{RATE}]))", "{{cause}}"),
            (f"sum(increase(dialin_consolidations_total[{RATE}]))", "consolidations"),
            (f"sum(increase(dialin_reassignments_deferred_total[{RATE}]))",
             "deferred (input not committed)"),
            (f"sum(increase(dialin_consolidations_deferred_total[{RATE}]))",
             "consolidation waited (input lag)"),
        ))
        .with_panel(_series(
            "Remembered utterances", "Assigned utterances the leader keeps for consolidation "
            "(DIALIN_MEMORY_CAP bounds it).", "short",
            ("max(dialin_memory_utterances)", "remembered"),
        ))
        .with_row(dashboard.Row("Review and lifecycle"))
        .with_panel(_series(
            "Candidates waiting", "Candidate intents waiting for the activation rule or a "
            "reviewer (assigned, marked as candidates).", "short",
            ("max(dialin_candidates_waiting)", "candidates"),
        ))
        .with_panel(_series(
            "Oldest candidate", "How long the oldest candidate has waited (alert "
            "DialinCandidatesWaitTooLong).", "s",
            ("max(dialin_candidate_oldest_age_seconds)", "oldest"),
        ))
        .with_panel(_series(
            "Intent events", "Lifecycle events published: created, activated, renamed, merged, "
            "split, rejected, retired (by the rules, the engine or a reviewer).", "short",
            (f"sum by (event) (increase(dialin_intent_events_total[{RATE}]))", "{{event}}"),
        ))
        .with_panel(_series(
            "Reviewers' decisions", "Decisions read from intent-decisions by action and result "
            "(stale: decided on an older version, nothing changed).", "short",
            (f"sum by (action, result) (increase(dialin_decisions_total[{RATE}]))",
             "{{action}} {{result}}"),
            (f"sum(increase(dialin_discovery_blocked_clusters_total[{RATE}]))",
             "clusters blocked (rejected before)"),
        ))
        .with_panel(_series(
            "Fastest new intent", "The largest per-window count of first assignments of an "
            "intent created in the last 24 hours (alert DialinNewIntentGrowingFast; the id is "
            "on intent-volume).", "short",
            ("max(dialin_new_intent_window_max)", "utterances per window"),
        ))
    )


def render() -> str:
    """The dashboard as the JSON text Grafana provisions (stable key order, trailing newline)."""
    return JSONEncoder(sort_keys=True, indent=2).encode(build().build()) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the JSON, or with ``--check`` report whether the committed file is current."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if dashboards/dialin.json is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is stale: run python deploy/grafana/dashboard.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
