"""Bounded soak: one worker under sustained load above its throughput, then recovery.

Usage: OMP_NUM_THREADS=1 python bench/soak.py [--minutes 3] [--cap 300] [--overload 2]
       [--rate R] [--every 5] [--out docs/benchmarks.md]

Why this shape (issue 7, item 4): the claim to prove is that overload turns into lag
in Kafka, not into memory in the process. So, on loopback only (the embedded broker
and one ``dialin serve`` child, as the end-to-end tests start it):

1. calibrate: a burst of ``--calibrate`` utterances produced at once gives the
   worker's throughput T on this machine now (unless ``--rate`` is given);
2. overload: produce at ``--overload`` x T for ``--minutes``, sampling every
   ``--every`` seconds the worker's RSS (``/proc/PID/status`` VmRSS, with its child
   processes: the encoders and the discovery fit), its ``dialin_buffer_utterances``,
   ``dialin_consumer_lag`` (end offset minus committed, summed over partitions),
   processed events and aged-out entries;
3. recover: stop producing and time until the backlog (produced minus processed) and
   the exported lag are both zero;
4. account: the worker must still be alive, and every produced utterance_id must be
   assigned, buffered or dead-lettered (aged out), read from the topics with
   :func:`dialin.streams.tools.tally.read_tally`.

The buffer cap is small (``--cap``) and the buffer age limit short (``--max-age``) so
both age-out paths run. Every loop has a deadline; the script stops by itself. The
buffer figure is the leader's own high-water mark (``dialin_buffer_peak_utterances``:
the size as it reads each batch of the buffer topic, before the cap trims it), next to
the largest sampled value. The result goes into ``docs/benchmarks.md`` between
``<!-- soak:start -->`` and ``<!-- soak:end -->``, and the proof paragraph of
``docs/guarantees.md`` ("Back-pressure and memory") between ``<!-- soak-proof:start -->``
and ``<!-- soak-proof:end -->``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

from dialin.streams.tools.broker import EmbeddedBroker, free_port
from dialin.streams.tools.replay import replay
from dialin.streams.settings import Settings
from dialin.streams.tools.supervise import WorkerProcess, metric
from dialin.streams.tools.tally import read_tally

from _doc import markers, write_section
from _procfs import rss_mb
from throughput import events, load_texts

ROOT = Path(__file__).resolve().parents[1]
START, END = markers("soak")
PROOF_START, PROOF_END = markers("soak-proof")


def processed(samples) -> float:
    """Inbound events the worker has finished, whatever their outcome."""
    return metric(samples, "dialin_events_total")


class Producer(threading.Thread):
    """Replays ``records`` at ``rate`` per second in the background, counting sends."""

    def __init__(self, records: list, settings: Settings, rate: float) -> None:
        super().__init__(daemon=True)
        self.records, self.settings, self.rate = records, settings, rate
        self.sent = 0
        self.stats = None

    def _count(self, n: int) -> None:
        self.sent = n

    def run(self) -> None:
        self.stats = replay(iter(self.records), self.settings, rate=self.rate, on_send=self._count)


def wait_until(condition, timeout: float, what: str, worker: WorkerProcess) -> float:
    """Seconds until ``condition()`` holds; exit with a message at the deadline or if the worker dies."""
    started = time.monotonic()
    while not condition():
        if not worker.alive:
            sys.exit(f"worker died while waiting for {what}: {worker.log_tail(1)}")
        if time.monotonic() - started > timeout:
            sys.exit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)
    return time.monotonic() - started


def sample(worker: WorkerProcess, t0: float, produced: int, phase: str) -> dict:
    m = worker.metrics()
    return {"t": round(time.monotonic() - t0, 1), "phase": phase, "produced": produced,
            "processed": int(processed(m)), "lag": int(metric(m, "dialin_consumer_lag")),
            "buffer": int(metric(m, "dialin_buffer_utterances")),
            "buffer_peak": int(metric(m, "dialin_buffer_peak_utterances")),
            "aged_out": int(metric(m, "dialin_buffer_aged_out_total")),
            "rss_mb": round(rss_mb(worker.pid), 1), "alive": worker.alive}


def run(args: argparse.Namespace) -> dict:
    texts = load_texts(args.data, "train", 10**6) + load_texts(args.data, "test", 10**6)
    with tempfile.TemporaryDirectory(prefix="dialin-soak-") as tmp, \
            EmbeddedBroker(free_port(), log_path=Path(tmp) / "broker.log") as broker:
        settings = Settings(kafka_bootstrap=broker.bootstrap, kafka_security_protocol="PLAINTEXT",
                            app_id="dialin-soak")
        env = {"DIALIN_KAFKA_BOOTSTRAP": broker.bootstrap, "DIALIN_APP_ID": settings.app_id,
               "DIALIN_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT", "DIALIN_DATA_DIR": f"{tmp}/worker",
               "DIALIN_BUFFER_CAP": str(args.cap), "DIALIN_BUFFER_MAX_AGE_SECONDS": str(args.max_age),
               "DIALIN_DISCOVERY_MIN_UTTERANCES": str(args.min_utterances),
               "DIALIN_DISCOVERY_INTERVAL_SECONDS": "2", "DIALIN_LAG_INTERVAL_SECONDS": "2"}
        if args.embedder:
            env["DIALIN_EMBEDDER"] = args.embedder
        worker = WorkerProcess(env, metrics_port=free_port(), log_path=f"{tmp}/worker.log")
        try:
            worker.start().wait_ready(600)
            rss_ready = rss_mb(worker.pid)
            n_cal = args.calibrate
            print(f"calibrating: {n_cal} utterances at once ...", file=sys.stderr)
            replay(iter(events(texts[:n_cal], "cal")), settings)
            cal_seconds = wait_until(lambda: processed(worker.metrics()) >= n_cal, 900,
                                     "the calibration burst", worker)
            throughput = n_cal / cal_seconds
            rate = args.rate or args.overload * throughput
            n_load = int(rate * args.minutes * 60)
            pool = texts[n_cal:] or texts
            load = events([pool[i % len(pool)] for i in range(n_load)], "soak")
            print(f"  {throughput:.0f}/s; producing {n_load} at {rate:.0f}/s for {args.minutes} min",
                  file=sys.stderr)

            rows = []
            producer = Producer(load, settings, rate)
            t0 = time.monotonic()
            producer.start()
            while producer.is_alive() and time.monotonic() - t0 < args.minutes * 60 + 120:
                rows.append(sample(worker, t0, n_cal + producer.sent, "load"))
                print(json.dumps(rows[-1]), file=sys.stderr)
                if not worker.alive:
                    break
                time.sleep(args.every)
            producer.join(60)
            if producer.is_alive() or producer.stats is None:
                sys.exit("the producer did not finish")
            produced = n_cal + producer.stats.sent
            stopped_at = time.monotonic()
            deadline = stopped_at + args.recover_timeout
            recovered_at = None
            while worker.alive and time.monotonic() < deadline:
                rows.append(sample(worker, t0, produced, "recover"))
                print(json.dumps(rows[-1]), file=sys.stderr)
                if rows[-1]["processed"] >= produced and rows[-1]["lag"] == 0:
                    recovered_at = time.monotonic()
                    break
                time.sleep(args.every)
            # one more lag interval, so the exported lag is read after the last commit
            time.sleep(3)
            rows.append(sample(worker, t0, produced, "end"))
            alive = worker.alive
            expected = {f"cal-{i}" for i in range(n_cal)} | {f"soak-{i}" for i in range(n_load)}
            wait_until(lambda: read_tally(settings).accepted >= expected, 120,
                       "every utterance accounted for on the topics", worker)
            tally = read_tally(settings)
            final_metrics = worker.metrics()
        finally:
            exit_code = worker.stop()
    by_reason = {r: int(metric(final_metrics, "dialin_buffer_aged_out_total", reason=r))
                 for r in ("cap", "age")}
    load_rows = [r for r in rows if r["phase"] == "load"]
    return {
        "rows": rows, "minutes": args.minutes, "cap": args.cap, "max_age": args.max_age,
        "min_utterances": args.min_utterances, "embedder": args.embedder or Settings().embedder,
        "calibrate": n_cal, "throughput": throughput, "rate": rate, "produced": produced,
        "producer_failed": producer.stats.failed, "load_seconds": stopped_at - t0,
        "recovery_seconds": None if recovered_at is None else recovered_at - stopped_at,
        "alive_at_end": alive, "exit_code": exit_code, "rss_ready": rss_ready,
        "rss_max": max(r["rss_mb"] for r in rows), "rss_end": rows[-1]["rss_mb"],
        "rss_first_load": load_rows[0]["rss_mb"] if load_rows else float("nan"),
        "lag_max": max(r["lag"] for r in rows),
        "backlog_max": max(r["produced"] - r["processed"] for r in rows),
        "buffer_max": max(r["buffer"] for r in rows), "aged_out": by_reason,
        "buffer_peak": max(int(metric(final_metrics, "dialin_buffer_peak_utterances")),
                           *(r["buffer_peak"] for r in rows)),
        "processed_in_load": (load_rows[-1]["processed"] - n_cal) if load_rows else 0,
        "assigned": len(set(tally.assigned) & expected),
        "buffered": len(tally.buffered & expected), "aged": len(tally.aged_out & expected),
        "missing": len(expected - tally.accepted), "lost": len(tally.lost),
        "rejected": len(tally.rejected), "expected": len(expected),
        "intents": int(metric(final_metrics, "dialin_catalog_intents")),
        "discovery_runs": int(metric(final_metrics, "dialin_discovery_runs_total", result="ok")),
        "consolidations": int(metric(final_metrics, "dialin_consolidations_total")),
        "consolidations_waited": int(metric(final_metrics, "dialin_consolidations_deferred_total")),
        "threads": os.environ.get("OMP_NUM_THREADS", "unset"), "cpus": os.cpu_count(),
        "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
        "command": "OMP_NUM_THREADS=1 python bench/soak.py " + " ".join(sys.argv[1:]),
    }


def _table(rows: list[dict], every: int) -> list[str]:
    """Every ``every``-th sample plus the last of each phase, as markdown rows."""
    keep = [r for i, r in enumerate(rows)
            if i % every == 0 or i + 1 == len(rows) or rows[i + 1]["phase"] != r["phase"]]
    out = ["| t (s) | phase | produced | processed | lag | backlog | buffer | aged out | RSS MB |",
           "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    out += [f"| {r['t']:.0f} | {r['phase']} | {r['produced']} | {r['processed']} | {r['lag']} | "
            f"{r['produced'] - r['processed']} | {r['buffer']} | {r['aged_out']} | {r['rss_mb']:.0f} |"
            for r in keep]
    return out


def section(r: dict) -> str:
    """The markdown between the soak markers."""
    rec = ("did not recover within the timeout" if r["recovery_seconds"] is None
           else f"{r['recovery_seconds']:.0f} s")
    ok = (r["alive_at_end"] and r["missing"] == 0 and r["lost"] == 0
          and r["recovery_seconds"] is not None)
    return "\n".join([
        START,
        "## Back-pressure soak (`bench/soak.py`)",
        "",
        f"`{r['command']}`",
        "",
        (f"One worker ({r['embedder']} embedder) on the embedded broker, loopback only. A burst of "
        f"{r['calibrate']} utterances measured its throughput on this machine at "
        f"{r['throughput']:.0f} utterances/s; BANKING77 utterances were then produced at "
        f"{r['rate']:.0f}/s for {r['load_seconds'] / 60:.1f} minutes, then production stopped. "
        f"The buffer ran with a small cap ({r['cap']}, `DIALIN_BUFFER_CAP`), a "
        f"{r['max_age']:.0f} s age limit (`DIALIN_BUFFER_MAX_AGE_SECONDS`) and discovery at "
        f"{r['min_utterances']} buffered utterances. Lag is `dialin_consumer_lag` summed over "
        "partitions (exported every 2 s; the embedded broker's end offsets can under-count by "
        "a batch); backlog is produced minus processed (`dialin_events_total`)."),
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| produced | {r['produced']} ({r['producer_failed']} refused by the broker) |",
        f"| peak lag / peak backlog | {r['lag_max']} / {r['backlog_max']} |",
        f"| time to recover after production stopped (backlog and lag 0) | {rec} |",
        (f"| buffer: high-water mark (`dialin_buffer_peak_utterances`) / largest sample "
         f"(cap {r['cap']}) | {r['buffer_peak']} / {r['buffer_max']} |"),
        (f"| aged out to the DLQ (`dialin_buffer_aged_out_total`) | {r['aged_out']['cap']} by cap, "
         f"{r['aged_out']['age']} by age |"),
        (f"| worker RSS, its child processes (encoders, discovery fit) included: ready / first load sample / peak / end | {r['rss_ready']:.0f} / "
         f"{r['rss_first_load']:.0f} / {r['rss_max']:.0f} / {r['rss_end']:.0f} MB |"),
        f"| worker alive at the end; exit code after SIGTERM | {r['alive_at_end']}; {r['exit_code']} |",
        (f"| accounting (topics, `read_tally`) | {r['expected']} utterance ids: {r['assigned']} "
         f"assigned, {r['buffered']} buffered, {r['aged']} aged out, {r['missing']} missing, "
         f"{r['lost']} lost |"),
        (f"| catalog at the end | {r['intents']} intents, {r['discovery_runs']} discovery runs "
         f"({r['consolidations']} consolidations; {r['consolidations_waited']} ticks where a due "
         "consolidation waited for the input lag, `DIALIN_CONSOLIDATION_MAX_LAG`) |"),
        "",
        f"Result: {'bounded and recovered' if ok else 'FAILED (see the figures)'}.",
        "",
        *_table(r["rows"], max(1, len(r["rows"]) // 16)),
        "",
        (f"Machine: {r['cpus']} CPUs (shared), OMP_NUM_THREADS={r['threads']}, "
         f"Python {r['python']}, {r['date']}."),
        END,
    ])


def proof(r: dict) -> str:
    """The proof paragraph of docs/guarantees.md, "Back-pressure and memory"."""
    rec = ("did not recover within the timeout" if r["recovery_seconds"] is None
           else f"recovered to zero {r['recovery_seconds']:.0f} s after production stopped")
    sustained = r["processed_in_load"] / r["load_seconds"] if r["load_seconds"] else float("nan")
    over = r["buffer_peak"] - r["cap"]
    return "\n".join([
        PROOF_START,
        textwrap.fill(f"**Proof.** `bench/soak.py` (a bounded soak on loopback: the embedded broker and one "
         f"`dialin serve` child; it stops by itself), last run as `{r['command']}` on "
         f"{r['cpus']} shared CPUs ({r['embedder']}, `DIALIN_BUFFER_CAP={r['cap']}`, "
         f"{r['date']}): a {r['calibrate']}-utterance burst measured {r['throughput']:.0f} "
         f"utterances/s, then {r['produced']:,} utterances were produced at {r['rate']:.0f}/s "
         f"for {r['load_seconds'] / 60:.1f} minutes, {r['rate'] / sustained:.1f}x the "
         f"{sustained:.0f}/s the worker sustained meanwhile. Consumer lag peaked at "
         f"{r['lag_max']:,} and {rec}; the worker's RSS went from {r['rss_ready']:.0f} MB "
         f"(ready) to a peak of {r['rss_max']:.0f} MB ({r['rss_end']:.0f} MB at the end). "
         f"The buffer's high-water mark, read by the leader before each trim, was "
         f"{r['buffer_peak']} against the cap of {r['cap']} "
         + (f"({over} over it: only by the batch just read, until its trim); " if over > 0 else "; ")
         + f"{r['aged_out']['cap']:,} entries were aged out by the cap and "
         f"{r['aged_out']['age']:,} by age to the DLQ. The worker was "
         f"{'alive' if r['alive_at_end'] else 'DEAD'} at the end and exited {r['exit_code']} "
         f"on SIGTERM; of {r['expected']:,} utterance ids, {r['assigned']:,} were assigned, "
         f"{r['buffered']:,} buffered, {r['aged']:,} aged out, {r['missing']} missing and "
         f"{r['lost']} lost (read from the topics). Figures and a time series: "
         "`docs/benchmarks.md`, \"Back-pressure soak\"; this paragraph is written by the script.",
                      width=90, break_on_hyphens=False, break_long_words=False),
        PROOF_END,
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--minutes", type=float, default=3.0, help="how long to overload")
    parser.add_argument("--overload", type=float, default=2.0, help="produce rate over throughput")
    parser.add_argument("--rate", type=float, default=None, help="fixed produce rate (skips the factor)")
    parser.add_argument("--calibrate", type=int, default=600, help="burst that measures throughput")
    parser.add_argument("--cap", type=int, default=300, help="DIALIN_BUFFER_CAP")
    parser.add_argument("--max-age", type=float, default=90.0, help="DIALIN_BUFFER_MAX_AGE_SECONDS")
    parser.add_argument("--min-utterances", type=int, default=200,
                        help="DIALIN_DISCOVERY_MIN_UTTERANCES")
    parser.add_argument("--embedder", default=None, help="DIALIN_EMBEDDER (default: the worker's)")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--recover-timeout", type=float, default=900.0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--guarantees", type=Path, default=ROOT / "docs" / "guarantees.md",
                        help="where the proof paragraph goes (its markers must exist there)")
    args = parser.parse_args()
    result = run(args)
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    write_section(args.out, "soak", section(result))
    if PROOF_START not in args.guarantees.read_text(encoding="utf-8"):
        sys.exit(f"{args.guarantees} has no {PROOF_START} marker: the proof paragraph was not written")
    write_section(args.guarantees, "soak-proof", proof(result))
    if not (result["alive_at_end"] and result["missing"] == 0 and result["lost"] == 0):
        sys.exit("soak failed: see docs/benchmarks.md")


if __name__ == "__main__":
    main()
