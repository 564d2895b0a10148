"""Static checks of ``deploy/`` and ``helm/`` with the tools operators use themselves.

Docker and Kubernetes do not run here, so every file is checked by its own linter or
schema: hadolint for Dockerfiles, compose-spec for the compose file, ``helm lint`` and
``helm template`` + kubernetes-validate (offline schemas) for the chart, promtool for the
Prometheus config, rules and rule unit tests. The review page's probe paths are asked of
the real ``dialin review`` (on the embedded broker), started with the chart's environment.
A missing tool fails the test (``make tools`` installs them): a skipped check could never
fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import compose_spec
import httpx
import kubernetes_validate
import pytest
import yaml

from dialin.streams.settings import Settings
from dialin.streams.tools.broker import free_port

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
    assert "review" in compose.service_names()


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


def test_compose_review_page_takes_its_tokens_from_the_shell_and_probes_its_own_port():
    review = yaml.safe_load(_compose_text())["services"]["review"]
    assert review["profiles"] == ["review"]  # off unless asked for
    assert review["command"] == ["review"]
    env = review["environment"]
    # No value in the file: passed through from the shell, never written here.
    assert env["DIALIN_REVIEW_TOKENS"] is None
    assert env["DIALIN_REVIEW_HOST"] == "0.0.0.0"
    port = env["DIALIN_REVIEW_PORT"]
    assert review["ports"] == [f"127.0.0.1:{port}:{port}"]  # the host's loopback only
    probe = " ".join(review["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/healthz" in probe
    assert review["deploy"]["resources"]["limits"]["memory"]
    worker = yaml.safe_load(_compose_text())["services"]["worker"]
    assert review["image"] == worker["image"] and review["build"] == worker["build"]


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


# --- Helm: the review page (review.enabled) -----------------------------------------


REVIEW_VALUES = "review-values.yaml"


def _review(docs: list[dict]) -> tuple[dict, dict]:
    """The review page's Deployment and its Service."""
    (deployment,) = [d for d in _by_kind(docs, "Deployment")
                     if d["metadata"]["name"] == "rel-dialin-review"]
    (service,) = [s for s in _by_kind(docs, "Service") if s["metadata"]["name"] == "rel-dialin-review"]
    return deployment, service


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("values", VALUE_SETS, ids=str)
def test_review_page_is_rendered_only_when_enabled(values):
    docs = _render(values)
    names = {d["metadata"]["name"] for d in docs}
    assert ("rel-dialin-review" in names) == (values == REVIEW_VALUES)


def test_values_hold_no_review_token():
    """Off by default, and a token can only come from a Secret (an empty name by default)."""
    review = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))["review"]
    assert review["enabled"] is False
    assert review["tokensSecret"] == {"name": "", "key": "tokens"}
    assert not {"tokens", "token"} & set(review)
    for values in VALUE_SETS:
        for doc in _render(values):
            assert doc["kind"] != "Secret"  # the chart never makes one for the tokens


def test_review_needs_its_token_secret_in_one_line():
    result = _helm("template", "rel", ".", "--set", "review.enabled=true")
    assert result.returncode != 0
    assert "review.enabled needs review.tokensSecret.name" in result.stderr


def test_review_page_deployment_service_probes_and_token():
    docs = _render(REVIEW_VALUES)
    deployment, service = _review(docs)
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["args"] == ["review"]
    env = _env(container)
    assert env["DIALIN_REVIEW_HOST"]["value"] == "0.0.0.0"
    # The tokens come from the Secret, never as a value.
    assert env["DIALIN_REVIEW_TOKENS"] == {
        "name": "DIALIN_REVIEW_TOKENS",
        "valueFrom": {"secretKeyRef": {"name": "dialin-review-tokens", "key": "tokens"}}}
    unknown = sorted(name for name in set(env) - SETTINGS_ENV if name.startswith("DIALIN_"))
    assert not unknown, f"the review page gets variables Settings does not read: {unknown}"
    # The page reads the workers' topics through the same Kafka connection.
    worker_env = _env(_worker(docs))
    for name, item in worker_env.items():
        if name.startswith(("DIALIN_TOPIC_", "DIALIN_KAFKA_", "DIALIN_APP_ID")):
            assert env[name] == item, name
    (port,) = container["ports"]
    assert port == {"name": "http", "containerPort": int(env["DIALIN_REVIEW_PORT"]["value"]),
                    "protocol": "TCP"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]["memory"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # Its Service reaches the page's pods and only them; the workers' Service, PDB and
    # Deployment never select the page's pods.
    labels = pod["metadata"]["labels"]
    assert service["spec"]["ports"] == [{"name": "http", "port": port["containerPort"],
                                         "targetPort": "http", "protocol": "TCP"}]
    assert _matches(service["spec"]["selector"], labels)
    assert _matches(deployment["spec"]["selector"]["matchLabels"], labels)
    worker_deployment = [d for d in _by_kind(docs, "Deployment") if d["metadata"]["name"] == "rel-dialin"][0]
    worker_labels = worker_deployment["spec"]["template"]["metadata"]["labels"]
    assert not _matches(service["spec"]["selector"], worker_labels)
    (metrics,) = [s for s in _by_kind(docs, "Service") if s["metadata"]["name"] == "rel-dialin-metrics"]
    (pdb,) = _by_kind(docs, "PodDisruptionBudget")
    for selector in (metrics["spec"]["selector"], pdb["spec"]["selector"]["matchLabels"],
                     worker_deployment["spec"]["selector"]["matchLabels"]):
        assert not _matches(selector, labels)


def test_review_page_uses_the_kafka_credentials_and_tls_of_the_workers():
    docs = _render("sasl-tls-values.yaml", "--values", str(CHART / "ci" / REVIEW_VALUES))
    deployment, _ = _review(docs)
    spec = deployment["spec"]["template"]["spec"]
    env = _env(spec["containers"][0])
    worker_env = _env(_worker(docs))
    for name in ("DIALIN_KAFKA_BOOTSTRAP", "DIALIN_KAFKA_SASL_USERNAME", "DIALIN_KAFKA_SASL_PASSWORD",
                 "DIALIN_KAFKA_SSL_CAFILE", "DIALIN_KAFKA_SSL_KEYFILE"):
        assert env[name] == worker_env[name], name
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["kafka-tls"]["readOnly"] is True
    assert {v["name"]: v for v in spec["volumes"]}["kafka-tls"]["secret"]["secretName"] == "kafka-tls"
    kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.slow
def test_review_probe_paths_answer_on_the_real_page(broker, tmp_path):
    """``dialin review`` started with the chart's environment (a free port, the test
    broker, a token for the Secret) answers the probes without a token, and the rest
    of the page only with one."""
    deployment, _ = _review(_render(REVIEW_VALUES))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    chart_env = {name: item["value"] for name, item in _env(container).items() if "value" in item}
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALIN_")}
    env.update(chart_env)
    env.update({"DIALIN_REVIEW_PORT": str(port), "DIALIN_KAFKA_BOOTSTRAP": broker.bootstrap,
                "DIALIN_REVIEW_TOKENS": '{"ana": "probe-test-token"}',
                "DIALIN_PII_REDACTION": "false",  # the redactor's engines: not what is tested
                "XDG_CACHE_HOME": str(tmp_path / "cache")})
    log = tmp_path / "review.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", "from dialin.streams.cli import main; main()",
                                 "review"], env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        ready = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"{url}{container['readinessProbe']['httpGet']['path']}", timeout=5)
                if ready.status_code == 200:
                    break
                assert ready.status_code == 503  # reading the topics
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        assert ready is not None and ready.status_code == 200, log.read_text()
        for probe in ("livenessProbe", "startupProbe", "readinessProbe"):
            res = httpx.get(f"{url}{container[probe]['httpGet']['path']}", timeout=5)
            assert res.status_code == 200 and res.text.strip() == "ok", (probe, res.status_code)
        # The probes open nothing else: the page and its API still need the token.
        assert httpx.get(f"{url}/api/state", timeout=5).status_code == 401
        assert httpx.get(f"{url}/", timeout=5).status_code == 401
        auth = {"Authorization": "Bearer probe-test-token"}
        assert httpx.get(f"{url}/api/state", headers=auth, timeout=5).json()["actor"] == "reviewer:ana"
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.slow
def test_review_pod_waits_for_the_workers_topics_and_creates_none(broker, tmp_path):
    """The init container, run with the chart's command and environment, blocks while the
    topics are missing (and asking for them creates none), and ends once a worker made them."""
    import asyncio

    from kafka.admin import KafkaAdminClient

    from dialin.streams.service.app import ensure_topics

    def ours() -> set[str]:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            return {t for t in admin.list_topics() if t.endswith(tag)}
        finally:
            admin.close()

    deployment, _ = _review(_render(REVIEW_VALUES))
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert init["command"][:2] == ["python", "-c"]
    (review,) = deployment["spec"]["template"]["spec"]["containers"]
    review_env = _env(review)
    assert all(review_env[name] == item for name, item in _env(init).items())
    tag = f"w{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALIN_")}
    env.update({name: item["value"] for name, item in _env(init).items() if "value" in item})
    env.update({"DIALIN_KAFKA_BOOTSTRAP": broker.bootstrap, "DIALIN_TOPIC_UPDATES": f"upd-{tag}",
                "DIALIN_TOPIC_CATALOG": f"cat-{tag}", "DIALIN_TOPIC_MEMORY": f"mem-{tag}"})
    settings = Settings(kafka_bootstrap=broker.bootstrap, topic_updates=f"upd-{tag}",
                        topic_catalog=f"cat-{tag}", topic_memory=f"mem-{tag}")
    proc = subprocess.Popen([sys.executable, *init["command"][1:]], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(8)
        assert proc.poll() is None, proc.communicate()[0]
        assert not ours()  # asking created none
        asyncio.run(ensure_topics(settings))  # what a worker does at start
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "waiting for topics" in out and out.strip().endswith(f"mem-{tag}, upd-{tag}")


def test_notes_say_how_to_reach_the_review_page():
    result = _helm("install", "rel", ".", "--dry-run=client", "--namespace", "dialin",
                   *_values_args(REVIEW_VALUES))
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "port-forward service/rel-dialin-review 8470" in notes
    assert "rel-dialin-review" not in _helm("install", "rel", ".", "--dry-run=client").stdout.split(
        "NOTES:", 1)[1]
