"""``dialin broker|replay|watch|demo`` on the real embedded broker: exit codes and output."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import KafkaProducer
from kafka_harness import records_of, settings_env, wait_for
from typer.testing import CliRunner

from dialin.streams.tools.broker import answers_metadata, free_port
from dialin.streams.cli import app
from dialin.streams.tools.demo import SUMMARY_KEYS
from dialin.streams.settings import get_settings

runner = CliRunner()
CLI = [sys.executable, "-c", "from dialin.streams.cli import main; main()"]


@pytest.fixture
def cli_env(kafka_settings, monkeypatch):
    """The CLI's settings point at this test's broker and topics."""
    for name, value in settings_env(kafka_settings).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield kafka_settings
    get_settings.cache_clear()


def test_replay_sends_jsonl_lines_as_they_are(cli_env, tmp_path):
    lines = [b'{"call_id": "c1", "turn": 0, "text": "hello"}', b"not json at all",
             b'{"call_id": "c2", "text": "\xe4\xbd\xa0\xe5\xa5\xbd"}', b"\xff\xfe not utf-8",
             b'{"call_id": 3, "text": "numeric id"}']
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines[:2]) + b"\n\n" + b"\r\n".join(lines[2:]) + b"\n")
    result = runner.invoke(app, ["replay", str(path)])
    assert result.exit_code == 0, result.output
    assert "sent 5 records" in result.stderr
    got = records_of(cli_env, cli_env.topic_utterances)
    assert sorted(r.value for r in got) == sorted(lines)
    keys = {r.value: r.key for r in got}
    assert keys[lines[0]] == b"c1" and keys[lines[2]] == b"c2"
    assert keys[lines[1]] is None and keys[lines[4]] is None  # no string call_id, no key


def test_replay_converts_csv_rows_and_respects_limit(cli_env, tmp_path):
    path = tmp_path / "calls.csv"
    path.write_text("utterance,speaker,category\nI lost my card,customer,lost\n"
                    "我想订一家酒店,agent,hotel\nwhere is my refund,customer,refund\n", encoding="utf-8")
    result = runner.invoke(app, ["replay", str(path), "--text-field", "utterance",
                                 "--role-field", "speaker", "--limit", "2", "--rate", "100"])
    assert result.exit_code == 0, result.output
    events = sorted((r.data for r in records_of(cli_env, cli_env.topic_utterances)),
                    key=lambda e: e["call_id"])
    assert events == [
        {"call_id": "calls-0", "turn": 0, "text": "I lost my card", "role": "customer"},
        {"call_id": "calls-1", "turn": 0, "text": "我想订一家酒店", "role": "agent"},
    ]


@pytest.mark.parametrize(("content", "args", "expected"), [
    (None, [], "no such file"),
    ("text\n", [], "no rows"),
    ("body\nhello\n", [], "no text field 'text'"),
    ("text\nhi\n", ["--rate", "-1"], "--rate"),
])
def test_replay_bad_input_is_one_line_error(cli_env, tmp_path, content, args, expected):
    path = tmp_path / "in.csv"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    result = runner.invoke(app, ["replay", str(path), *args])
    assert result.exit_code == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_replay_to_an_unreachable_broker_fails_cleanly(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"call_id": "c", "text": "x"}\n', encoding="utf-8")
    result = runner.invoke(app, ["replay", str(path), "--bootstrap", f"127.0.0.1:{free_port()}"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: Kafka at 127.0.0.1:")
    assert len(result.stderr.strip().splitlines()) == 1


def _publish_updates(settings, values):
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    for key, value in values:
        producer.send(settings.topic_updates, key=key, value=value)
    producer.flush()
    producer.close()


UPDATES = [
    {"intent_id": "i-1", "label": "report-lost card", "role": "customer", "version": 1,
     "status": "created", "size": 12},
    {"intent_id": "i-2", "label": "预订-酒店", "role": "customer", "version": 1, "status": "created",
     "size": 7},
    {"intent_id": "i-2", "label": "预订-酒店", "role": "customer", "version": 2, "status": "merged",
     "merged_into": "i-1", "size": 0},
]


def test_watch_prints_updates_and_skips_tombstones(cli_env):
    values = [(u["intent_id"].encode(), json.dumps(u, ensure_ascii=False).encode()) for u in UPDATES]
    _publish_updates(cli_env, values[:2] + [(b"i-9", None)] + values[2:])
    result = runner.invoke(app, ["watch", "--from-beginning", "--max", "3", "--timeout", "60"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("created") and "i-1 v1 [customer] report-lost card (size 12)" in lines[0]
    assert "预订-酒店 -> i-1 (size 0)" in lines[2] and lines[2].startswith("merged")
    as_json = runner.invoke(app, ["watch", "--from-beginning", "--max", "3", "--timeout", "60", "--json"])
    assert [json.loads(line) for line in as_json.stdout.strip().splitlines()] == UPDATES


def test_watch_follows_new_updates_only_by_default(cli_env):
    _publish_updates(cli_env, [(b"i-1", json.dumps(UPDATES[0]).encode())])
    wait_for(lambda: records_of(cli_env, cli_env.topic_updates), 30, message="the first update")
    result = runner.invoke(app, ["watch", "--timeout", "2"])
    assert result.exit_code == 0 and result.stdout == ""


def test_broker_command_runs_in_the_foreground_and_refuses_a_busy_port(broker):
    port = free_port()
    # Ctrl-C as a terminal sends it: a suite started in the background by a shell without
    # job control inherits SIGINT ignored, and so would the command (it then ran on).
    proc = subprocess.Popen([*CLI, "broker", "--port", str(port)], stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for(lambda: answers_metadata(f"127.0.0.1:{port}"), 60, message="the broker command")
        busy = subprocess.run([*CLI, "broker", "--port", str(broker.port)], capture_output=True,
                              text=True, timeout=60)
        assert busy.returncode == 2 and "already in use" in busy.stderr
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:  # say what the command was doing
            proc.kill()
            pytest.fail(f"still running 30 s after SIGINT; its stderr: {proc.communicate()[1][-2000:]}")
        assert code == 0
        assert "broker ready on 127.0.0.1:" in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


def children(pid: int) -> set[int]:
    """Process ids of ``pid``'s children now (Linux ``/proc``)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found.update(int(c) for c in task.read_text().split())
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's reaper may be slow or absent in a container)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def signal_and_check_gone(proc: subprocess.Popen, sig: signal.Signals, exit_code: int, port: int,
                          pids: set[int]) -> None:
    """Send ``sig``: ``proc`` exits with ``exit_code`` (or is killed), ``port`` is free, and
    none of ``pids`` (its children) is still running."""
    proc.send_signal(sig)
    assert proc.wait(60) == (-signal.SIGKILL if sig == signal.SIGKILL else exit_code)
    wait_for(lambda: not port_open(port), 30, 0.2, f"port {port} to be free after {sig.name}")
    wait_for(lambda: not any(running(pid) for pid in pids), 30, 0.2, f"children {pids} to exit")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=lambda s: s.name)
def test_broker_command_leaves_no_broker_behind(sig):
    """``kill``, systemd, a closed terminal or ``kill -9``: the tansu child goes with it."""
    port = free_port()
    proc = subprocess.Popen([*CLI, "broker", "--port", str(port)], stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: answers_metadata(f"127.0.0.1:{port}"), 60, message="the broker command")
        tansu = children(proc.pid)
        assert tansu and all(running(pid) for pid in tansu)
        signal_and_check_gone(proc, sig, 0, port, tansu)
    finally:
        proc.kill()
        proc.wait()


def test_demo_stops_on_a_signal_that_lands_inside_kafka_python(tmp_path, monkeypatch):
    """kafka-python runs its event loop on the calling thread while it bootstraps and logs
    and drops whatever a task raises, so a SIGTERM landing there once let ``dialin demo``
    run on and exit 0 (seen in CI). Here the signal is sent from inside that loop, every
    time, while the replay's producer bootstraps."""
    import os
    import time

    import kafka.net.manager

    import dialin.streams.tools.demo as demo_module

    build_transport = kafka.net.manager.KafkaConnectionManager._build_transport
    replay = demo_module.replay
    armed, sent = [], []

    def armed_replay(*args, **kwargs):
        armed.append(True)
        return replay(*args, **kwargs)

    async def signalled_build(self, node, timeout_at=None):
        if armed:
            armed.clear()
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the signal lands here, in a kafka-python task
        return await build_transport(self, node, timeout_at=timeout_at)

    monkeypatch.setattr(kafka.net.manager.KafkaConnectionManager, "_build_transport", signalled_build)
    monkeypatch.setattr(demo_module, "replay", armed_replay)
    sample = tmp_path / "mini.jsonl"
    sample.write_text(json.dumps({"call_id": "c1", "text": "cancel my card"}) + "\n", encoding="utf-8")
    started = time.monotonic()
    result = runner.invoke(app, ["demo", "--input", str(sample), "--rate", "1"])
    assert sent, "the signal was never sent"
    assert result.exit_code == 1, result.output
    assert "stopped by SIGTERM before the end" in result.output
    assert "Traceback" not in result.output and time.monotonic() - started < 60


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_demo_stopped_midway_leaves_no_process_behind(sig, tmp_path):
    sample = tmp_path / "mini.jsonl"
    sample.write_text("".join(json.dumps({"call_id": f"c{i}", "text": f"cancel my card {i}"}) + "\n"
                              for i in range(20)), encoding="utf-8")
    proc = subprocess.Popen([*CLI, "demo", "--input", str(sample), "--rate", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        lines = iter(proc.stderr.readline, "")
        first = next(lines)  # "broker on 127.0.0.1:PORT; starting a worker ..."
        port = int(first.split("127.0.0.1:", 1)[1].split(";", 1)[0])
        assert next(lines).startswith("worker ready")  # broker and worker both up
        started = children(proc.pid)
        assert len(started) == 2 and all(running(pid) for pid in started)
        signal_and_check_gone(proc, sig, 1, port, started)  # broker and worker gone
    finally:
        proc.kill()
        proc.wait()


def test_demo_rejects_a_missing_input_before_starting_anything(tmp_path):
    result = runner.invoke(app, ["demo", "--input", str(tmp_path / "nope.jsonl"), "--json"])
    assert result.exit_code == 2
    assert "no such file" in result.stderr and result.stdout == ""


@pytest.mark.slow
def test_demo_json_prints_exactly_one_consistent_summary(tmp_path):
    sample = tmp_path / "mini.jsonl"
    lines = [json.dumps({"call_id": f"c{i}", "turn": 0, "role": "customer",
                         "text": f"I want to {verb} my {thing}"})
             for i, (verb, thing) in enumerate((v, t) for v in ("cancel", "renew", "upgrade")
                                               for t in ("card", "plan", "account", "order"))]
    sample.write_text("\n".join([*lines, "{broken", '{"call_id": "x"}']) + "\n", encoding="utf-8")
    proc = subprocess.run([*CLI, "demo", "--input", str(sample), "--json", "--timeout", "300"],
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)  # exactly one JSON document, nothing else on stdout
    assert tuple(summary) == SUMMARY_KEYS
    assert summary["events_in"] == len(lines) + 2
    assert summary["invalid"] == 2 and summary["valid"] == len(lines)
    assert summary["assigned"] + summary["buffered"] == summary["valid"]
    assert "broker on 127.0.0.1:" in proc.stderr


def test_demo_counts_a_run_that_certified_nothing_as_a_run():
    from dialin.streams.tools.demo import _runs

    def runs(**by_result: float) -> dict:
        return {("dialin_discovery_runs_total", frozenset({("result", r)})): v
                for r, v in by_result.items()}

    assert _runs(runs(ok=2.0, certified_nothing=3.0, failed=1.0)) == 6.0
    assert _runs(runs(certified_nothing=1.0)) == 1.0  # the demo stops waiting for it


# --- the CLI's wiring: explicit registration, one set of exit codes ---------------------------

def test_each_command_module_registers_its_commands_and_never_imports_the_cli_back():
    import ast

    import typer

    from dialin.streams.cli import engine, service

    for module, names in ((engine, ["evaluate", "discover"]),
                          (service, ["broker", "replay", "watch", "serve", "demo"])):
        fresh = typer.Typer()
        module.register(fresh)
        assert [c.callback.__name__ for c in fresh.registered_commands] == names
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        back = [node.lineno for node in ast.walk(tree)  # ``from . import app``: the old cycle
                if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is None]
        assert back == [], (module.__name__, back)


@pytest.mark.usefixtures("clean_settings")
def test_engine_and_service_commands_exit_alike_for_the_same_mistake(tmp_path):
    missing = str(tmp_path / "none.csv")
    nowhere = f"127.0.0.1:{free_port()}"
    mistakes = {
        "an input file that is not there": (["discover", missing, "--text-field", "text"],
                                            ["replay", missing, "--bootstrap", nowhere]),
        "an option value out of range": (["discover", missing, "--text-field", "text",
                                          "--judge-budget", "-1"],
                                         ["replay", missing, "--rate", "-1"]),
        "an unknown option": (["discover", missing, "--text-field", "text", "--nope"],
                              ["replay", missing, "--nope"]),
    }
    for kind, (engine_args, service_args) in mistakes.items():
        codes = [runner.invoke(app, args).exit_code for args in (engine_args, service_args)]
        assert codes == [2, 2], (kind, codes)
