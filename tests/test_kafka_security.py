"""Kafka security (issue 7, item 7): TLS for real, SASL as far as a test can reach.

TLS: the embedded broker listens on a plain port and advertises a TLS port on which
Debian's ``stunnel4`` terminates TLS with a certificate from this test's own CA. The
worker, ``dialin replay`` and ``dialin watch`` run over it; with a CA that did not sign
the server's certificate, replay/watch/serve fail with one line, not a traceback.
stunnel4 comes from ``deploy/install-tools.sh``; without it these tests FAIL (never skip).

SASL: the embedded broker cannot require authentication, so the tests check that every
client the project builds (faust worker, the worker's aiokafka admin/readers/lag probe,
replay's kafka-python producer, watch's consumer) is given the mechanism and credentials.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kafka_harness import WorkerFactory, wait_for

from dialin.streams.tools.broker import EmbeddedBroker, answers_metadata, free_port
from dialin.streams.tools.children import die_with_parent
from dialin.streams.settings import Settings
from dialin.streams.tools.supervise import metric

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "from dialin.streams.cli import main; main()"]
ENV = {"DIALIN_EMBEDDER": "lsa", "DIALIN_EMBEDDER_FIT_FILE": str(ROOT / "tests/data/banking77_sample.csv"),
       "DIALIN_DISCOVERY_MIN_UTTERANCES": "1000000", "DIALIN_DISCOVERY_MAX_AGE_SECONDS": "1e9",
       "DIALIN_DISCOVERY_IDLE_SECONDS": "0",
       "DIALIN_BATCH_SECONDS": "0.2"}


# --- a CA, a server certificate, and a TLS terminator -------------------------------------------

def _ca(name: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _server_cert(ca_key, ca_cert):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(
                ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def _write_pem(path: Path, cert=None, key=None) -> str:
    from cryptography.hazmat.primitives import serialization

    data = b""
    if cert is not None:
        data += cert.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        data += key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    path.write_bytes(data)
    return str(path)


class TLSBroker:
    """Embedded broker on a plain port, advertised on the TLS port stunnel4 serves."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.plain_port, self.tls_port = free_port(), free_port()
        ca_key, ca_cert = _ca("dialin test CA")
        key, cert = _server_cert(ca_key, ca_cert)
        self.cafile = _write_pem(folder / "ca.pem", cert=ca_cert)
        self.server_pem = _write_pem(folder / "server.pem", cert=cert, key=key)
        self.wrong_cafile = _write_pem(folder / "other-ca.pem", cert=_ca("some other CA")[1])
        self.bootstrap = f"127.0.0.1:{self.tls_port}"
        self._procs: list[subprocess.Popen] = []

    def start(self) -> TLSBroker:
        binary = shutil.which("stunnel4") or shutil.which("stunnel")
        assert binary, "stunnel4 is not installed: run `bash deploy/install-tools.sh` (make tools)"
        conf = self.folder / "stunnel.conf"
        conf.write_text(f"foreground = yes\npid =\ndebug = 4\n[kafka]\naccept = 127.0.0.1:{self.tls_port}\n"
                        f"connect = 127.0.0.1:{self.plain_port}\ncert = {self.server_pem}\n")
        log = open(self.folder / "tls.log", "ab")  # noqa: SIM115 - closed with the processes
        self._log = log
        broker = EmbeddedBroker(self.plain_port, advertised_url=f"tcp://127.0.0.1:{self.tls_port}")
        for cmd in (broker.command(), [binary, str(conf)]):  # both die with pytest, even on kill -9
            self._procs.append(subprocess.Popen(cmd, stdout=log, stderr=log, preexec_fn=die_with_parent()))
        try:
            wait_for(lambda: self._answers(), 30, 0.3, "the broker to answer over TLS")
        except BaseException:
            self.stop()
            raise
        return self

    def settings(self, cafile: str | None = None) -> Settings:
        tag = uuid.uuid4().hex[:8]
        return Settings(kafka_bootstrap=self.bootstrap, kafka_security_protocol="SSL",
                        kafka_ssl_cafile=cafile or self.cafile, app_id=f"tls-{tag}",
                        topic_utterances=f"utt-{tag}", topic_assignments=f"asg-{tag}",
                        topic_updates=f"upd-{tag}", topic_dlq=f"dlq-{tag}", topic_buffer=f"buf-{tag}",
                        topic_catalog=f"cat-{tag}", topic_partitions=2)

    def _answers(self) -> bool:
        for proc in self._procs:
            assert proc.poll() is None, (self.folder / "tls.log").read_text(errors="replace")[-2000:]
        return answers_metadata(self.bootstrap, security_protocol="SSL", ssl_cafile=self.cafile)

    def stop(self) -> None:
        for proc in self._procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._log.close()


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory):
    broker = TLSBroker(tmp_path_factory.mktemp("tls")).start()
    yield broker
    broker.stop()


def env_of(settings: Settings) -> dict[str, str]:
    names = ("kafka_bootstrap", "kafka_security_protocol", "kafka_ssl_cafile", "app_id",
             "topic_utterances", "topic_assignments", "topic_updates", "topic_dlq", "topic_buffer",
             "topic_catalog", "topic_partitions")
    return {f"DIALIN_{n.upper()}": str(getattr(settings, n)) for n in names}


def cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("DIALIN_")}
    return subprocess.run(CLI + args, env={**full, **env}, capture_output=True, text=True,
                          timeout=timeout)


# --- TLS for real -----------------------------------------------------------------------------

@pytest.mark.slow
def test_worker_replay_and_watch_run_over_tls(tls_broker, tmp_path):
    s = tls_broker.settings()
    env = env_of(s)
    worker = WorkerFactory(s, tmp_path)
    try:
        w = worker.start({**env, **ENV})
        lines = [json.dumps({"call_id": f"c{i}", "text": f"my card {i} was declined"}) for i in range(20)]
        (tmp_path / "in.jsonl").write_text("\n".join(lines + ["not json"]) + "\n")
        run = cli(["replay", str(tmp_path / "in.jsonl")], env)
        assert run.returncode == 0, run.stderr
        wait_for(lambda: metric(w.metrics(), "dialin_events_total") >= 21, 120,
                 message="the worker to take every event over TLS")
        assert metric(w.metrics(), "dialin_events_total", outcome="invalid") == 1
        # watch reads the updates topic over TLS: put one update there (replay --topic)
        update = {"intent_id": "i-1", "label": "report-declined_card", "role": "customer", "version": 1,
                  "status": "created", "size": 20, "examples": [], "created_at": "x", "updated_at": "x"}
        (tmp_path / "upd.jsonl").write_text(json.dumps(update) + "\n")
        assert cli(["replay", str(tmp_path / "upd.jsonl"), "--topic", s.topic_updates], env).returncode == 0
        run = cli(["watch", "--from-beginning", "--json", "--max", "1", "--timeout", "60"], env)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout.strip())["label"] == "report-declined_card"
    finally:
        worker.close()


@pytest.mark.slow
def test_an_untrusted_certificate_fails_in_one_line(tls_broker, tmp_path):
    env = env_of(tls_broker.settings(cafile=tls_broker.wrong_cafile))
    (tmp_path / "in.jsonl").write_text('{"call_id": "c", "text": "hello"}\n')
    runs = {"replay": cli(["replay", str(tmp_path / "in.jsonl")], env),
            "watch": cli(["watch", "--timeout", "20"], env),
            "serve": cli(["serve", "--metrics-port", str(free_port())], {**env, **ENV,
                         "DIALIN_DATA_DIR": str(tmp_path / "d")}, timeout=180)}
    for name, run in runs.items():
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        assert run.returncode != 0, name
        assert "Traceback" not in run.stderr and len(errors) == 1, (name, run.stderr[-1500:])
        assert "certificate" in errors[0].lower(), (name, errors[0])


# --- SASL: every client is built with the mechanism and credentials ------------------------------

class Recorder:
    """Stands in for a client class: records its keyword arguments, then refuses to run."""

    def __init__(self, calls: list, name: str) -> None:
        self.calls, self.name = calls, name

    def __call__(self, *args, **kwargs):
        self.calls.append((self.name, kwargs))
        raise RuntimeError("recorded")


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_every_client_gets_the_sasl_mechanism_and_credentials(monkeypatch, tmp_path, protocol, mechanism):
    import aiokafka
    import aiokafka.admin
    import kafka

    from dialin.streams.service import app as app_module
    from dialin.streams.service.buffer import TopicFollower
    from dialin.streams.tools.replay import make_producer
    from dialin.streams.tools.watch import make_consumer

    ca = _write_pem(tmp_path / "ca.pem", cert=_ca("sasl CA")[1])
    s = Settings(kafka_security_protocol=protocol, kafka_sasl_mechanism=mechanism,
                 kafka_sasl_username="svc-dialin", kafka_sasl_password="pa55",
                 kafka_ssl_cafile=ca if protocol == "SASL_SSL" else None, data_dir=str(tmp_path),
                 kafka_bootstrap=f"127.0.0.1:{free_port()}")  # nothing listens: no TLS pre-check
    calls: list = []
    monkeypatch.setattr(aiokafka, "AIOKafkaConsumer", Recorder(calls, "aiokafka consumer"))
    monkeypatch.setattr(aiokafka.admin, "AIOKafkaAdminClient", Recorder(calls, "aiokafka admin"))
    monkeypatch.setattr(kafka, "KafkaProducer", Recorder(calls, "replay producer"))
    monkeypatch.setattr(kafka, "KafkaConsumer", Recorder(calls, "watch consumer"))

    async def worker_clients() -> None:
        for start in (TopicFollower(s, "t", lambda k, v: None).start(),
                      app_module.LagProbe(s)._client(), app_module.ensure_topics(s)):
            with pytest.raises(RuntimeError, match="recorded"):
                await start

    asyncio.run(worker_clients())
    for build in (make_producer, make_consumer):
        with pytest.raises(RuntimeError, match="recorded"):
            build(s)
    names = [name for name, _ in calls]
    assert sorted(names) == sorted(["aiokafka consumer", "aiokafka consumer", "aiokafka admin",
                                    "replay producer", "watch consumer"])
    for name, kwargs in calls:
        assert kwargs["security_protocol"] == protocol, name
        assert (kwargs["sasl_mechanism"], kwargs["sasl_plain_username"],
                kwargs["sasl_plain_password"]) == (mechanism, "svc-dialin", "pa55"), name
        if protocol == "SASL_SSL":
            assert kwargs.get("ssl_context") is not None or kwargs.get("ssl_cafile") == ca, name

    faust_app = app_module.build_faust_app(s)  # the faust worker's own consumer and producer
    creds = faust_app.conf.broker_credentials
    assert (creds.username, creds.password, creds.mechanism.value) == ("svc-dialin", "pa55", mechanism)
    assert creds.protocol.value == protocol
    assert (creds.ssl_context is not None) == (protocol == "SASL_SSL")
