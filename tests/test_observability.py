"""The dashboard and the alert rules query only what the worker exports, and a real
Prometheus scrapes a real worker.

Every PromQL expression in ``deploy/grafana/dashboards/dialin.json`` and
``deploy/prometheus/rules/`` is parsed with a real PromQL parser (PyPI promql-parser)
and each metric it selects is checked against ``dialin.streams.service.metrics.REGISTRY``, with
the suffixes prometheus-client adds (``_total``, ``_bucket``, ``_sum``, ``_count``).
The live test starts the Debian ``prometheus`` binary on a loopback port, scrapes a
``dialin serve`` worker on the embedded broker, replays events and reads the ingest
counter back through Prometheus's HTTP API.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import promql_parser
import pytest
import yaml
from kafka_harness import settings_env, wait_for

from dialin.streams.tools.broker import free_port
from dialin.streams.service.metrics import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD_JSON = GRAFANA / "dashboards" / "dialin.json"
RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
SAMPLE = ROOT / "streams" / "samples" / "demo.jsonl"
FIT_SAMPLE = ROOT / "tests" / "data" / "banking77_sample.csv"
#: Series Prometheus makes itself, not the worker.
PROMETHEUS_SERIES = {"up"}
#: Grafana's built-in variables, replaced by a sample value so the query parses.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
#: Series names prometheus-client exposes for each metric type.
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
            "summary": ("_sum", "_count"), "gauge": ("",), "info": ("_info",)}


def _exported_names() -> set[str]:
    """Every series name the worker's registry exposes, whether or not it has samples yet."""
    names = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def _load_generator():
    """deploy/grafana/dashboard.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("dialin_dashboard", GRAFANA / "dashboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _panels(panels: list[dict]):
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])


def _dashboard_queries() -> dict[str, str]:
    dashboard = json.loads(DASHBOARD_JSON.read_text(encoding="utf-8"))
    return {f"panel {panel.get('title')!r} {target['refId']}": target["expr"]
            for panel in _panels(dashboard["panels"]) for target in panel.get("targets") or []}


def _rule_queries() -> dict[str, str]:
    queries = {}
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                queries[f"{path.name} {rule.get('alert') or rule.get('record')}"] = rule["expr"]
    return queries


def _selected_metrics(expr: str) -> set[str]:
    """Metric names of every vector selector in a PromQL expression."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    names: set[str] = set()

    def visit(node) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            name = node.name or next((m.value for m in node.matchers.matchers if m.name == "__name__"), None)
            assert name, f"selector without a metric name in {expr!r}"
            names.add(name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def _unknown_metrics(queries: dict[str, str]) -> dict[str, set[str]]:
    exported = _exported_names() | PROMETHEUS_SERIES
    found = {where: _selected_metrics(expr) - exported for where, expr in queries.items()}
    return {where: names for where, names in found.items() if names}


# --- consistency ------------------------------------------------------------------


def test_dashboard_json_is_generated_from_the_code():
    assert DASHBOARD_JSON.read_text(encoding="utf-8") == _load_generator().render(), (
        "deploy/grafana/dashboards/dialin.json is stale: run python deploy/grafana/dashboard.py")


def test_dashboard_covers_the_operators_questions():
    titles = {title.split(" ", 1)[1].rsplit(" ", 1)[0] for title in _dashboard_queries()}
    for needed in ["'Ingest rate by outcome'", "'Assignment ratio'", "'Buffer size and cap'",
                   "'Oldest buffered utterance'", "'Discovery runs by result'", "'Discovery run duration'",
                   "'Goodness per run'", "'LLM calls by task and outcome'", "'LLM latency'",
                   "'LLM error ratio'", "'Intents over time'"]:
        assert needed in titles


def test_dashboard_queries_only_exported_metrics():
    queries = _dashboard_queries()
    assert len(queries) >= 20
    assert _unknown_metrics(queries) == {}


def test_alert_rules_query_only_exported_metrics():
    queries = _rule_queries()
    assert len(queries) >= 8
    assert _unknown_metrics(queries) == {}


def test_the_check_catches_a_metric_the_worker_does_not_export():
    queries = {"typo": 'sum(rate(dialin_event_total{outcome="assigned"}[$__rate_interval]))',
               "unsuffixed counter": "rate(dialin_llm_calls[5m])",
               "histogram base name": "dialin_llm_request_duration_seconds > 1"}
    assert _unknown_metrics(queries) == {
        "typo": {"dialin_event_total"}, "unsuffixed counter": {"dialin_llm_calls"},
        "histogram base name": {"dialin_llm_request_duration_seconds"}}


def test_every_exported_metric_is_on_the_dashboard_or_in_an_alert():
    """A metric nobody looks at is either missing from the dashboard or should not exist."""
    used = set().union(*map(_selected_metrics, [*_dashboard_queries().values(), *_rule_queries().values()]))
    unused = {family.name for family in REGISTRY.collect()
              if not any(family.name + s in used for s in SUFFIXES.get(family.type, ("",)))}
    assert unused == set()


# --- live Prometheus --------------------------------------------------------------


def _prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if not found:
        pytest.fail("prometheus is not installed: run `make tools` (deploy/install-tools.sh)")
    return found


def _query(base: str, expr: str) -> list[dict]:
    response = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=5)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.fixture
def prometheus(tmp_path):
    """Start a real Prometheus; call it with scrape targets, get its base URL back."""
    started: list[subprocess.Popen] = []

    def start(targets: list[str]) -> str:
        port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in sorted(RULES_DIR.glob("*.yml"))],
            "scrape_configs": [{"job_name": "dialin", "static_configs": [{"targets": targets}]}],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [_prometheus_binary(), f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        started.append(proc)
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text(errors="replace")[-2000:]
            try:
                return httpx.get(f"{base}/-/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=60, message="prometheus to be ready")
        return base

    yield start
    for proc in started:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_prometheus_scrapes_the_worker_ingest_counter(prometheus, workers, kafka_settings):
    worker = workers.start({"DIALIN_EMBEDDER": "lsa", "DIALIN_EMBEDDER_FIT_FILE": str(FIT_SAMPLE),
                            "DIALIN_JUDGE": "heuristic", "DIALIN_NAMER": "keywords"})
    base = prometheus([f"127.0.0.1:{worker.metrics_port}"])

    env = {**os.environ, **settings_env(kafka_settings)}
    replay = subprocess.run(
        [sys.executable, "-c", "from dialin.streams.cli import main; main()", "replay", str(SAMPLE),
         "--limit", "120"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert replay.returncode == 0, replay.stderr

    def scraped_events() -> float:
        result = _query(base, 'sum(dialin_events_total{job="dialin"})')
        return float(result[0]["value"][1]) if result else 0.0

    wait_for(lambda: scraped_events() >= 120, timeout=180, message="Prometheus to see 120 ingested events")
    assert [float(r["value"][1]) for r in _query(base, 'up{job="dialin"}')] == [1.0]
    outcomes = {r["metric"]["outcome"] for r in _query(base, "dialin_events_total")}
    assert outcomes <= {"assigned", "buffered", "invalid", "duplicate"} and outcomes
    # the alert rules load and evaluate against live data without errors
    groups = httpx.get(f"{base}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert {rule["name"] for group in groups for rule in group["rules"]} >= {"DialinConsumerNotProgressing"}
    wait_for(lambda: all(rule.get("health") == "ok" for group in httpx.get(
        f"{base}/api/v1/rules", timeout=5).json()["data"]["groups"] for rule in group["rules"]),
        timeout=30, message="every rule evaluated with health ok")
