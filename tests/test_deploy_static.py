"""Static checks of ``deploy/`` and ``helm/`` with the tools operators use themselves.

Docker and Kubernetes do not run here, so every file is checked by its own linter or
schema: hadolint for Dockerfiles, compose-spec for the compose file, ``helm lint`` and
``helm template`` + kubernetes-validate (offline schemas) for the chart, promtool for the
Prometheus config, rules and rule unit tests. A missing tool fails the test (``make
tools`` installs them): a skipped check could never fail.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import compose_spec
import kubernetes_validate
import pytest
import yaml

from dialin.streams.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
CHART = ROOT / "helm" / "dialin"
PROMETHEUS = DEPLOY / "prometheus"
RULES = PROMETHEUS / "rules" / "dialin.rules.yml"
RULE_TESTS = PROMETHEUS / "tests" / "dialin.rules.test.yml"
KUBERNETES_VERSION = "1.34.0"
#: Kinds from CRDs (Prometheus Operator) that have no schema in kubernetes-validate.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
#: Every DIALIN_* variable a Settings field answers to.
SETTINGS_ENV = {f"DIALIN_{name.upper()}" for name in Settings.model_fields}
#: Chart value sets rendered in CI: the defaults and each file in helm/dialin/ci/.
VALUE_SETS = [None, *sorted(p.name for p in (CHART / "ci").glob("*.yaml"))]


def _tool(name: str) -> str:
    """Path of a required tool; fails (never skips) when ``make tools`` did not install it.

    Looked up in ``.tools/bin``, beside this interpreter (a tool from a PyPI wheel, such as
    hadolint, lands in the venv's ``bin``, which is not on PATH unless the venv is
    activated), then on PATH.
    """
    found = next((str(p) for p in (ROOT / ".tools" / "bin" / name, Path(sys.executable).parent / name)
                  if p.exists()), None) or shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: run `make tools` (deploy/install-tools.sh)")
    return found


def _run(*cmd: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def _dockerfiles() -> list[Path]:
    """Every Dockerfile in the repository (hidden folders and build outputs left out)."""
    skip = {"dialin-data", "build", "dist", "node_modules"}
    found = [p for p in ROOT.rglob("*Dockerfile*")
             if not p.name.endswith("dockerignore")
             and not any(part.startswith(".") or part in skip for part in p.relative_to(ROOT).parts)]
    return sorted(found)


# --- Dockerfiles ------------------------------------------------------------------


def test_there_is_a_worker_dockerfile():
    assert DEPLOY / "Dockerfile" in _dockerfiles()


@pytest.mark.parametrize("dockerfile", _dockerfiles(), ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfile_passes_hadolint(dockerfile):
    result = _run(_tool("hadolint"), str(dockerfile))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN cd /app && pip install flask\nCMD python app.py\n")
    result = _run(_tool("hadolint"), str(bad))
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged base image


# --- docker compose ---------------------------------------------------------------


def _compose_text() -> str:
    return (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")


def test_compose_file_validates():
    compose = compose_spec.PyCompose.from_yaml(_compose_text())
    compose.validate()
    assert {"kafka", "worker", "vllm", "prometheus", "grafana"} <= set(compose.service_names())


def test_compose_validator_rejects_a_misspelt_key():
    broken = _compose_text().replace("    depends_on:\n      kafka:", "    depends_onn:\n      kafka:", 1)
    with pytest.raises(ValueError, match="depends_onn"):
        compose_spec.PyCompose.from_yaml(broken).validate()


def test_compose_references_resolve():
    """Named volumes are declared, bind mounts and the Dockerfile exist, env names are settings."""
    spec = yaml.safe_load(_compose_text())
    declared = set(spec.get("volumes") or {})
    for name, service in spec["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if ":" not in mount:
                continue  # anonymous volume
            if source.startswith((".", "/")):
                assert (DEPLOY / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
        for key in service.get("environment") or {}:
            if key.startswith("DIALIN_"):
                assert key in SETTINGS_ENV, f"{name}: {key} is not a Settings field"
    build = spec["services"]["worker"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
    assert spec["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert spec["services"]["vllm"]["profiles"] == ["gpu"]


# --- Helm -------------------------------------------------------------------------


def _helm(*args: str) -> subprocess.CompletedProcess[str]:
    return _run(_tool("helm"), *args, cwd=CHART)


def _values_args(values: str | None) -> list[str]:
    return ["--values", str(CHART / "ci" / values)] if values else []


def _render(values: str | None, *extra: str) -> list[dict]:
    result = _helm("template", "rel", ".", "--namespace", "dialin", *_values_args(values), *extra)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def _worker(docs: list[dict]) -> dict:
    (worker,) = [d for d in _by_kind(docs, "Deployment") if d["metadata"]["name"] == "rel-dialin"]
    return worker["spec"]["template"]["spec"]["containers"][0]


def _env(container: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container.get("env", [])}


@pytest.mark.parametrize("values", VALUE_SETS, ids=str)
def test_helm_lint_is_clean(values):
    result = _helm("lint", ".", "--strict", *_values_args(values))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize("values", VALUE_SETS, ids=str)
def test_rendered_manifests_match_kubernetes_schemas(values):
    docs = _render(values)
    validated = 0
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["spec"]
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        validated += 1
    assert validated >= 4  # Deployment, Service, PodDisruptionBudget, ServiceAccount


def test_schema_validation_catches_a_misplaced_field():
    worker = _by_kind(_render(None), "Deployment")[0]
    worker["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pth"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("values", VALUE_SETS, ids=str)
def test_every_worker_variable_is_a_setting(values):
    env = _env(_worker(_render(values)))
    unknown = sorted(set(env) - SETTINGS_ENV)
    assert not unknown, f"chart sets variables Settings does not read: {unknown}"


def test_default_worker_probes_and_resources():
    docs = _render(None)
    worker = _worker(docs)
    assert worker["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert worker["ports"] == [{"name": "metrics", "containerPort": Settings().metrics_port, "protocol": "TCP"}]
    assert worker["resources"]["requests"] and worker["resources"]["limits"]
    env = _env(worker)
    assert env["DIALIN_KAFKA_BOOTSTRAP"]["value"] == "kafka:9092"
    assert env["DIALIN_KAFKA_SECURITY_PROTOCOL"]["value"] == "PLAINTEXT"
    assert "DIALIN_LLM_URL" not in env and "DIALIN_KAFKA_SASL_PASSWORD" not in env
    (pdb,) = _by_kind(docs, "PodDisruptionBudget")
    (service,) = _by_kind(docs, "Service")
    assert pdb["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert not _by_kind(docs, "ServiceMonitor")


def test_sasl_tls_values_take_credentials_from_secrets():
    docs = _render("sasl-tls-values.yaml")
    env = _env(_worker(docs))
    secret_refs = {name: item["valueFrom"]["secretKeyRef"] for name, item in env.items() if "valueFrom" in item}
    assert secret_refs["DIALIN_KAFKA_SASL_USERNAME"] == {"name": "kafka-credentials", "key": "username"}
    assert secret_refs["DIALIN_KAFKA_SASL_PASSWORD"] == {"name": "kafka-credentials", "key": "password"}
    assert secret_refs["DIALIN_KAFKA_BOOTSTRAP"] == {"name": "kafka-bootstrap", "key": "bootstrap"}
    assert secret_refs["DIALIN_LLM_API_KEY"] == {"name": "llm-api-key", "key": "api-key"}
    assert env["DIALIN_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
    assert env["DIALIN_KAFKA_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512"
    # the TLS files are the mounted Secret's keys
    mount = {m["name"]: m for m in _worker(docs)["volumeMounts"]}["kafka-tls"]
    assert mount["readOnly"] is True
    for var, key in [("CAFILE", "ca.crt"), ("CERTFILE", "tls.crt"), ("KEYFILE", "tls.key")]:
        assert env[f"DIALIN_KAFKA_SSL_{var}"]["value"] == f"{mount['mountPath']}/{key}"
    volumes = {v["name"]: v for v in _by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["kafka-tls"]["secret"]["secretName"] == "kafka-tls"


def test_vllm_values_add_a_gpu_server_the_worker_points_at():
    docs = _render("vllm-values.yaml")
    (service,) = [s for s in _by_kind(docs, "Service") if s["metadata"]["name"] == "rel-dialin-vllm"]
    (vllm,) = [d for d in _by_kind(docs, "Deployment") if d["metadata"]["name"] == "rel-dialin-vllm"]
    container = vllm["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["vllm", "serve"]
    assert container["args"][0] == "Qwen/Qwen2.5-7B-Instruct"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    port = service["spec"]["ports"][0]["port"]
    env = _env(_worker(docs))
    assert env["DIALIN_LLM_URL"]["value"] == f"http://rel-dialin-vllm:{port}/v1"
    assert env["DIALIN_LLM_MODEL"]["value"] == "Qwen/Qwen2.5-7B-Instruct"
    assert env["DIALIN_JUDGE"]["value"] == "vllm"
    (monitor,) = _by_kind(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_chart_ships_the_same_alert_rules_and_dashboard_as_deploy():
    """files/ links to deploy/, so the PrometheusRule and dashboard ConfigMap cannot drift."""
    docs = _render("vllm-values.yaml")
    (rule,) = _by_kind(docs, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES.read_text(encoding="utf-8"))
    (dashboard,) = _by_kind(docs, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard_json = DEPLOY / "grafana" / "dashboards" / "dialin.json"
    assert json.loads(dashboard["data"]["dialin.json"]) == json.loads(dashboard_json.read_text(encoding="utf-8"))


@pytest.mark.parametrize(("settings", "message"), [
    (["kafka.sasl.mechanism=PLAIN"], "needs kafka.securityProtocol SASL_PLAINTEXT or SASL_SSL"),
    (["kafka.securityProtocol=SASL_SSL"], "needs kafka.sasl.mechanism"),
    (["kafka.securityProtocol=TLS"], "kafka.securityProtocol must be one of"),
    (["kafka.securityProtocol=SASL_SSL", "kafka.sasl.mechanism=PLAIN"], "needs kafka.sasl.existingSecret"),
    (["kafka.tls.existingSecret=tls"], "needs kafka.securityProtocol SSL or SASL_SSL"),
])
def test_inconsistent_kafka_values_fail_with_one_clear_line(settings, message):
    args = [item for s in settings for item in ("--set", s)]
    result = _helm("template", "rel", ".", *args)
    assert result.returncode != 0
    assert message in result.stderr


def test_notes_render():
    result = _helm("install", "rel", ".", "--dry-run=client", "--namespace", "dialin",
                   *_values_args("vllm-values.yaml"))
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "rel-dialin-metrics" in notes and "Qwen/Qwen2.5-7B-Instruct" in notes


# --- Prometheus -------------------------------------------------------------------


def test_promtool_checks_the_config():
    result = _run(_tool("promtool"), "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_the_rules():
    result = _run(_tool("promtool"), "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass():
    result = _run(_tool("promtool"), "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_fail_when_a_threshold_changes(tmp_path):
    """The unit tests pin the thresholds: a loosened alert makes them fail."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    loosened = RULES.read_text(encoding="utf-8").replace("> 0.9", "> 0.99")
    (tmp_path / "rules" / RULES.name).write_text(loosened, encoding="utf-8")
    shutil.copy(RULE_TESTS, tmp_path / "tests" / RULE_TESTS.name)
    result = _run(_tool("promtool"), "test", "rules", str(tmp_path / "tests" / RULE_TESTS.name))
    assert result.returncode != 0
    assert "DialinBufferNearCap" in result.stdout + result.stderr


def test_every_alert_has_a_unit_test_that_fires_it():
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"]
              for rule in group["rules"] if "alert" in rule}
    fired = {case["alertname"] for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
             for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert alerts, "no alerts found"
    assert alerts == fired, f"alerts without a firing unit test: {sorted(alerts - fired)}"


def test_every_alert_links_its_runbook_section():
    operate = (ROOT / "docs" / "operate.md").read_text(encoding="utf-8")
    anchors = {re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
               for line in operate.splitlines() if line.startswith("#")}
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            runbook = rule["annotations"]["runbook_url"]
            assert runbook == f"docs/operate.md#{rule['alert'].lower()}"
            assert runbook.split("#")[1] in anchors, f"docs/operate.md has no section {rule['alert']}"
