"""Streaming quality: what the subscribers of ``intent-assignments`` and ``intent-updates`` receive.

Usage: OMP_NUM_THREADS=1 python bench/stream_quality.py [--sets test dense emergence]
       [--rate 100] [--seed 0] [--repeats 2] [--judge shipped|simulated-llm]
       [--llm-latency SECONDS]
       [--out docs/benchmarks.md]

Every other quality figure in this project is batch (``dialin evaluate`` / ``discover`` on a
whole file). This script measures the service itself, as its users meet it: the project's
embedded broker and one ``dialin serve`` worker with the shipped defaults, a labelled set
replayed at a fixed rate (``dialin.streams.tools.replay``), then the *final* assignment of every
utterance read back from ``intent-assignments`` (the latest record per utterance_id, with
merges followed through ``merged_into`` on ``intent-updates``). Beside each stream row stands
the batch figure of the same rows: ``dialin discover`` run on a CSV of them.

Sets (fixed seeds, so a re-run draws the same rows):

* ``test``: BANKING77 test (3,080 utterances, 77 intents), shuffled;
* ``dense``: 6,000 utterances of BANKING77 train drawn at random (about 78 per intent);
* ``emergence``: BANKING77 test with 17 intents (drawn with the seed) held back to the last
  quarter of the stream; ``emergence-train`` is the same scenario on 40 utterances of each
  intent (all of the few that have fewer) drawn from BANKING77 train (tuning data: choose
  settings there, not on test). A held-back intent counts as *discovered* when one published intent
  holds at least 60% of its utterances and they are that intent's majority; its delay is the
  time from the produce timestamp of its first utterance to the first ``intent-updates``
  record of the intent that ends up holding it.

The names subscribers read are scored with ``bench/names.py``'s measure (the label's
nearest gold intent name is the intent's majority gold intent): the latest label of each
intent they hold at the end, the first label the same intent had (what they read before
consolidations re-named intents), and batch's labels; the engine's renames are counted.

``--judge simulated-llm`` runs the worker and the batch column on their LLM path
(``DIALIN_JUDGE=openai``) against a simulated LLM that knows the gold labels
(``bench/_simulated_llm.py``: the sampled oracle behind the project's OpenAI-protocol test
server), for what subscribers receive when an LLM judges; its figures go to a section of
their own, which says they are simulated. ``--llm-latency`` holds each of its answers that
many seconds, as an LLM takes to answer (the section then says so).

``--env DIALIN_X=V ...`` overrides the worker's settings (each must name a setting and hold a
value it accepts; the batch column stays the shipped ``dialin discover``) and writes a
section of its own, whose name carries them, so a configuration never replaces the figures
of the shipped defaults.

Utterances still buffered when the stream has settled are *unassigned*: they count as one
group of their own in NMI/ARI (a subscriber received nothing for them) and lower the share
assigned. The stream has settled when every utterance is accounted for on the topics and
no assignment has arrived for ``--quiet`` seconds (the worker examines what arrived once
the traffic pauses, ``DIALIN_DISCOVERY_IDLE_SECONDS``, so settled means after that). What
subscribers held at the moment the last utterance was accounted for is reported beside
it. Every loop has a deadline.

The same rows replayed twice at the same rate do not give the same figures: when each
discovery run starts depends on the worker's pace, and a different first split of the
traffic leads to different later ones (on BANKING77 test, one commit gave NMI 0.813 in
one run and 0.754 in another). So each set is replayed ``--repeats`` times and every run is its own row;
the batch column, deterministic, is computed once.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from unittest import mock

import numpy as np
from pydantic import ValidationError

from dialin.models import Judge, ari, nmi
from dialin.streams import factory
from dialin.streams.tools.broker import EmbeddedBroker, free_port
from dialin.streams.tools.replay import replay
from dialin.streams.settings import Settings
from dialin.streams.tools.supervise import WorkerProcess, metric
from dialin.streams.tools.tally import read_tally
from dialin.streams.tools.watch import read_topic

from _data import banking77
from _doc import markers, write_section
from _simulated_llm import ACCURACY as SIMULATED_ACCURACY, SimulatedLLM
from names import name_accuracy
from quality import embed
from throughput import events

ROOT = Path(__file__).resolve().parents[1]
SECTION = "stream"
#: ``--judge`` for the simulated LLM; its figures go to a section of their own.
SIMULATED = "simulated-llm"
SECTION_SIMULATED = "stream-simulated-llm"
N_HELD_BACK = 17
#: Utterances of BANKING77 train in the dense set.
N_DENSE = 6000
DISCOVERED_SHARE = 0.6


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ data
def make_set(name: str, data: Path, seed: int) -> tuple[list[str], list[str], set[str]]:
    """(texts, gold labels, held-back intents) in stream order."""
    rng = np.random.default_rng(seed)
    if name == "dense":
        texts, labels = banking77(data, "train")
        order = rng.permutation(len(texts))[:N_DENSE]
        return [texts[i] for i in order], [labels[i] for i in order], set()
    texts, labels = banking77(data, "train" if name == "emergence-train" else "test")
    if name == "emergence-train":  # as many of each intent as BANKING77 test has (40; some 35)
        of = {label: [j for j, y in enumerate(labels) if y == label] for label in sorted(set(labels))}
        rows = [i for members in of.values()
                for i in rng.choice(members, min(40, len(members)), replace=False)]
        texts, labels = [texts[i] for i in rows], [labels[i] for i in rows]
    order = rng.permutation(len(texts))
    if name == "test":
        return [texts[i] for i in order], [labels[i] for i in order], set()
    held = set(rng.choice(sorted(set(labels)), N_HELD_BACK, replace=False).tolist())
    early = [i for i in order if labels[i] not in held]
    late = [i for i in order if labels[i] in held]
    # The held-back intents are mixed into the last quarter of the stream, not appended as
    # a block: new intents appear among known traffic, as they would in a call center.
    cut = len(order) - max(len(order) // 4, len(late))
    tail = rng.permutation(early[cut:] + late).tolist()
    order = early[:cut] + tail
    return [texts[i] for i in order], [labels[i] for i in order], held


# ----------------------------------------------------------------- batch
def run_batch(texts: list[str], tmp: Path, judge_env: dict[str, str]) -> tuple[np.ndarray, dict]:
    """``dialin discover`` on a CSV of ``texts`` (with the stream's judge): labels per row
    (-1 unassigned) and each intent's name by label."""
    src, out = tmp / "batch.csv", tmp / "intents.json"
    with open(src, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text"])
        writer.writerows([t] for t in texts)
    dialin = Path(sys.executable).with_name("dialin")
    cmd = [str(dialin), "discover", str(src), "--text-field", "text", "--out", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **judge_env}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        sys.exit(f"dialin discover failed: {done.stderr.strip().splitlines()[-1:]}")
    doc = json.loads(out.read_text(encoding="utf-8"))
    labels = np.full(len(texts), -1)
    for k, intent in enumerate(doc["intents"]):
        labels[np.asarray(intent["rows"], dtype=int)] = k
    return labels, {k: intent["label"] for k, intent in enumerate(doc["intents"])}


# ---------------------------------------------------------------- stream
def final_intent(intent_id: str | None, intents: dict[str, dict]) -> str | None:
    """Follow ``merged_into`` to the intent a subscriber ends up with."""
    seen = set()
    while intent_id in intents and intents[intent_id].get("merged_into") and intent_id not in seen:
        seen.add(intent_id)
        intent_id = intents[intent_id]["merged_into"]
    return intent_id


def finals(tally, ids: list[str]) -> list[str | None]:
    """Each utterance's intent as a subscriber of ``tally``'s topics holds it (merges followed)."""
    return [final_intent(tally.assigned.get(u, {}).get("intent_id"), tally.intents) for u in ids]


def run_stream(texts: list[str], args: argparse.Namespace, tmp: Path, prefix: str,
               judge_env: dict[str, str]) -> dict:
    """Replay ``texts`` through one worker; final intent per row and first-update times."""
    with EmbeddedBroker(free_port(), log_path=tmp / "broker.log") as broker:
        settings = Settings(kafka_bootstrap=broker.bootstrap, kafka_security_protocol="PLAINTEXT",
                            app_id=f"dialin-sq-{prefix}")
        env = {"DIALIN_KAFKA_BOOTSTRAP": broker.bootstrap, "DIALIN_APP_ID": settings.app_id,
               "DIALIN_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT", "DIALIN_DATA_DIR": str(tmp / "worker")}
        env.update(judge_env)
        env.update(overrides(args.env))
        worker = WorkerProcess(env, metrics_port=free_port(), log_path=tmp / "worker.log")
        try:
            worker.start().wait_ready(600)
            ids = [f"{prefix}-{i}" for i in range(len(texts))]
            log(f"  replaying {len(texts)} utterances at {args.rate}/s")
            stats = replay(iter(events(texts, prefix)), settings, rate=args.rate)
            if stats.failed:
                sys.exit(f"the broker refused {stats.failed} records: {stats.errors[:1]}")
            # Discovery must run while the traffic flows, or this measures one batch run
            # after the stream (a leader that never caught up under traffic did exactly that).
            runs_during = metric(worker.metrics(), "dialin_discovery_runs_total")
            expected = set(ids)
            deadline = time.monotonic() + args.timeout
            last_change, last_count = time.monotonic(), -1
            at_end = None  # what subscribers hold once the last utterance is accounted for
            while time.monotonic() < deadline:
                if not worker.alive:
                    sys.exit(f"worker died: {worker.log_tail(1)}")
                tally = read_tally(settings)
                if at_end is None and tally.accepted >= expected:
                    at_end = finals(tally, ids)
                count = len(tally.assigned)
                if count != last_count:
                    last_change, last_count = time.monotonic(), count
                if tally.accepted >= expected and time.monotonic() - last_change >= args.quiet:
                    break
                time.sleep(2)
            else:
                log("  settle timeout: reporting the state at the deadline")
            runs_total = metric(worker.metrics(), "dialin_discovery_runs_total")
            produced = {}
            for rec in read_topic(settings, settings.topic_utterances):
                if isinstance(rec.data, dict):
                    produced[rec.data.get("utterance_id")] = rec.timestamp_ms
            updates_ms: dict[str, list[int]] = {}
            latest: dict[str, tuple[int, str]] = {}  # intent_id -> (version, label)
            first: dict[str, tuple[int, str]] = {}
            renames = 0
            for rec in read_topic(settings, settings.topic_updates):
                if isinstance(rec.data, dict) and "intent_id" in rec.data:
                    iid = rec.data["intent_id"]
                    updates_ms.setdefault(iid, []).append(rec.timestamp_ms)
                    version = int(rec.data.get("version") or 1)
                    if version >= latest.get(iid, (0, ""))[0]:
                        latest[iid] = (version, str(rec.data.get("label")))
                    if version < first.get(iid, (version + 1, ""))[0]:
                        first[iid] = (version, str(rec.data.get("label")))
                    renames += rec.data.get("event") == "renamed"
        finally:
            worker.stop()
    final = finals(tally, ids)
    versions = [int(tally.assigned.get(u, {}).get("version") or 1) for u in ids if u in tally.assigned]
    return {"final": final, "at_end": at_end or final, "produced_ms": [produced.get(u) for u in ids],
            "names": {iid: label for iid, (_, label) in latest.items()}, "renames": renames,
            "first_names": {iid: label for iid, (_, label) in first.items()},
            "updates_ms": updates_ms, "missing": len(expected - tally.accepted),
            "lost": len(tally.lost), "violations": len(tally.violations),
            "runs_during": runs_during,
            "runs": runs_total,
            "reassigned": float(np.mean([v > 1 for v in versions])) if versions else 0.0,
            "versions": float(np.mean(versions)) if versions else 0.0,
            # the latest record's cause per reassigned utterance (consolidation, merge, split)
            "causes": dict(Counter(a.get("cause") for a in tally.assigned.values()
                                   if int(a.get("version") or 1) > 1))}


# --------------------------------------------------------------- scoring
def score(gold: list[str], pred: np.ndarray) -> dict:
    """NMI/ARI with unassigned rows (-1) as one group, intents, share assigned."""
    pred = np.asarray(pred)
    return {"nmi": nmi(gold, pred), "ari": ari(gold, pred),
            "intents": int(len(np.unique(pred[pred >= 0]))),
            "assigned": float(np.mean(pred >= 0))}


def names_right(gold: list[str], final: list, names: dict) -> tuple[int, int]:
    """How many of the intents subscribers hold have a label whose nearest gold intent name
    (MiniLM, ``-`` and ``_`` read as spaces: ``bench/names.py``'s measure) is their
    majority gold intent; and how many intents were named."""
    members: dict = {}
    for g, f in zip(gold, final):
        if f is not None and f in names:
            members.setdefault(f, []).append(g)
    if not members:
        return 0, 0
    ids = sorted(members, key=str)
    majority = [Counter(members[i]).most_common(1)[0][0] for i in ids]
    right = name_accuracy([names[i] for i in ids], majority, sorted(set(gold)),
                          lambda words: embed("minilm", list(words))[0])
    return int(sum(right)), len(ids)


def as_labels(final: list[str | None]) -> np.ndarray:
    codes: dict[str, int] = {}
    return np.array([-1 if f is None else codes.setdefault(f, len(codes)) for f in final])


def emergence(gold: list[str], final: list, held: set[str], produced_ms: list | None = None,
              updates_ms: dict[str, list[int]] | None = None) -> list[dict]:
    """Per held-back intent: discovered or not, and (for the stream) the delay from its
    first utterance to the first update of the intent that holds it published after it
    (``created``, or ``updated`` when a consolidation gave the group an existing id)."""
    updates_ms = updates_ms or {}
    by_intent = Counter(f for f in final if f is not None)
    out = []
    for name in sorted(held):
        rows = [i for i, g in enumerate(gold) if g == name]
        owners = Counter(final[i] for i in rows if final[i] is not None)
        best, hold = owners.most_common(1)[0] if owners else (None, 0)
        share = hold / len(rows)
        majority = best is not None and hold > by_intent[best] / 2
        found = share >= DISCOVERED_SHARE and majority
        delay = None
        if found and best in updates_ms:
            first = min(produced_ms[i] for i in rows if produced_ms[i] is not None)
            after = [t for t in updates_ms[best] if t >= first]
            delay = (min(after) - first) / 1000 if after else None
        out.append({"intent": name, "n": len(rows), "share": share, "majority": majority,
                    "discovered": found, "delay_s": delay})
    return out


# ---------------------------------------------------------------- report
def fmt(r: dict) -> str:
    return f"{r['nmi']:.3f} | {r['ari']:.3f} | {r['intents']} | {100 * r['assigned']:.0f}%"


def asked_line(asked: dict, n: int) -> str:
    """The simulated LLM's counts, judge prompts also per utterance."""
    return ", ".join(f"{k} {v:,}" + (f" ({v / n:.2f} per utterance)" if k.endswith(" judge") else "")
                     for k, v in sorted(asked.items())) or "none"


def _span(values: list[float], fmt: str) -> str:
    """The range of ``values`` in ``fmt``; one value when both ends read the same."""
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return lo if lo == hi else f"{lo} to {hi}"


def reading(results: list[dict]) -> str:
    """The stream against batch per set, in the terms of issue 12's targets (computed)."""
    batch_of = {r["set"]: r for r in results if r.get("batch")}
    parts, differences = [], []
    for name, first in batch_of.items():
        rows, batch = [r for r in results if r["set"] == name], first["batch"]
        nmi = [r["stream"]["nmi"] - batch["nmi"] for r in rows]
        ari = [r["stream"]["ari"] - batch["ari"] for r in rows]
        differences += nmi + ari
        text = (f"{name}: NMI {_span(nmi, '{:+.3f}')}, ARI {_span(ari, '{:+.3f}')}, intents "
                f"{_span([r['stream']['intents'] / batch['intents'] for r in rows], '{:.2f}')}x "
                "batch's")
        if first.get("batch_emergence"):
            found = ", ".join(str(sum(e["discovered"] for e in r["emergence"])) for r in rows)
            text += (f"; held-back intents discovered {found} of {len(first['emergence'])} "
                     f"(batch {sum(e['discovered'] for e in first['batch_emergence'])})")
        parts.append(text)
    if not parts:
        return ""
    return ("Reading, each service run against batch on the same rows (issue 12's targets: NMI "
            "and ARI within 0.03 of batch, intents within ±25% of batch's, 80% of the held-back "
            "intents discovered): " + "; ".join(parts) + ". The lowest NMI or ARI difference "
            f"of any run is {min(differences):+.3f}.")


def _setting(name: str) -> str:
    """The settings field an environment variable ``DIALIN_NAME`` sets (``name``)."""
    return name.lower().removeprefix("dialin_")


def overrides(pairs: list[str]) -> dict[str, str]:
    """``--env`` as a dict: each pair ``DIALIN_NAME=VALUE`` must name a setting and hold a
    value it accepts (a bench exits with the reason, not a traceback, on anything else)."""
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        field = _setting(name)
        if not sep or not name.upper().startswith("DIALIN_") or field not in Settings.model_fields:
            sys.exit(f"bench: --env {pair!r}: expected DIALIN_NAME=VALUE naming a setting "
                     "(the README's table of settings)")
        try:
            Settings(**{field: value})
        except ValidationError as err:
            sys.exit(f"bench: --env {pair!r}: {err.errors()[0]['msg']}")
        env[name.upper()] = value
    return env


def overrides_slug(env: dict[str, str]) -> str:
    """The suffix of a section measured with ``env``: a run with overridden settings never
    rewrites the section of the shipped defaults."""
    return "".join(f"-{_setting(k).replace('_', '-')}-{v.lower()}" for k, v in env.items())


def section_name(args: argparse.Namespace) -> str:
    """The section of docs/benchmarks.md this run's judge (and ``--env``) writes."""
    base = SECTION_SIMULATED if args.judge == SIMULATED else SECTION
    return base + overrides_slug(overrides(args.env))


def service_settings(simulated: bool, env: list[str]) -> Settings:
    """The settings the measured service's discovery ran with, read as it read them: from
    the environment with the simulated judge (as ``SimulatedLLM.env()`` sets it) and
    ``--env`` in it, and the service's budget (:func:`dialin.streams.factory.service_settings`).
    Both benches word their sections from it."""
    judge = {"DIALIN_JUDGE": "openai"} if simulated else {}
    with mock.patch.dict(os.environ, {**judge, **overrides(env)}):
        return factory.service_settings(Settings())


def section(results: list[dict], args: argparse.Namespace) -> str:
    simulated = args.judge == SIMULATED
    start, end = markers(section_name(args))
    env = " ".join(args.env) or "none (shipped defaults)"
    given = overrides(args.env)
    service = service_settings(simulated, args.env)
    budget = (f"a budget of {service.judge_budget:g} calls per utterance per discovery run ("
              + ("`DIALIN_JUDGE_BUDGET`" if "DIALIN_JUDGE_BUDGET" in given else
                 "the service's default with an LLM judge, `DIALIN_DISCOVERY_LLM_JUDGE_BUDGET`")
              + f"; batch keeps the LLM judges' default of {Judge.default_budget:g})"
              + (", consolidations starting warm (`DIALIN_CONSOLIDATION_WARM_START`)"
                 if service.consolidation_warm_start else "") if simulated else "")
    flags = " --env " + " ".join(args.env) if args.env else ""
    title = ("## The service with a simulated LLM judge (`bench/stream_quality.py --judge "
             f"{SIMULATED}{flags}`)" if simulated else
             f"## What subscribers receive: the service against batch (`bench/stream_quality.py{flags}`)")
    judge = ("" if not simulated else
             "The judge of both the worker and batch is a **simulated LLM that knows the gold "
             "labels** (benchmark only, not an LLM): the sampled oracle "
             f"{SIMULATED_ACCURACY:g} behind the project's "
             "OpenAI-protocol test server on loopback (`bench/_simulated_llm.py`), so the worker "
             "runs its LLM path (`DIALIN_JUDGE=openai`, " + budget + ", prompts of "
             "sampled utterances) and the sampled oracle answers each prompt "
             "from the gold labels of the utterances it shows; the namer stays the offline keyword "
             "namer. " + (f"Each request is held {args.llm_latency:g} s before its answer (an "
                          "assumed answer time, not a measurement of any LLM). "
                          if args.llm_latency else ""))
    lines = [start, title, "",
             judge + f"Produced by `{results[0]['command']}`: the embedded broker and one worker "
             f"(settings overridden: {env}), each set replayed at {args.rate:g} utterances/s, "
             "final assignments read back from `intent-assignments` (merges followed). "
             "Unassigned utterances (still buffered when the stream settled) count as one group "
             "in NMI/ARI. Batch is `dialin discover` on the same rows. BANKING77 test is held-out "
             "data; the dense set is drawn from BANKING77 train.", "",
             "| set | utterances | gold intents | run | NMI | ARI | intents | assigned |",
             "|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in results:
        if r.get("batch") is not None:
            lines.append(f"| {r['set']} | {r['n']:,} | {r['gold_intents']} | batch `dialin discover` | "
                         f"{fmt(r['batch'])} |")
        lines.append(f"| {r['set']} | {r['n']:,} | {r['gold_intents']} | service, {args.rate:g}/s, "
                     f"run {r['run']} | {fmt(r['stream'])} |")
    against_batch = reading(results)
    if against_batch:
        lines += ["", against_batch]
    if simulated:
        lines += ["", "What the LLM path costs: judge prompts the simulated LLM answered per "
                  "utterance (name and prune prompts would be answered invalid and counted here, "
                  "as would shown texts not found among the rows): "
                  + "; ".join(f"{r['set']} run {r['run']}: {asked_line(r['asked'], r['n'])}"
                              for r in results) + "."]
    lines += ["", "What the churn costs a subscriber: the share of utterances whose assignment changed "
              "after the first record (a consolidation split, merged or regrouped their intent), "
              "and the mean number of decisions (versions) per utterance; the discovery runs "
              "(buffer runs and consolidations) the worker finished before the replay's last "
              "utterance was sent, and in all; what subscribers held when the last utterance "
              "was accounted for (assigned or buffered), before the runs that follow the end "
              "of the traffic (the table above is the settled state); and the delivery audit.", "",
              "| set | run | reassigned | by the cause of its latest record | versions per utterance | "
              "discovery runs during the replay / in all | at the end of the traffic: NMI / ARI / "
              "intents / assigned | lost | audit violations |",
              "|---|---:|---:|---|---:|---:|---|---:|---:|"]
    for r in results:
        causes = ", ".join(f"{c} {n:,}" for c, n in sorted(r["causes"].items())) or "none"
        lines.append(f"| {r['set']} | {r['run']} | {100 * r['reassigned']:.0f}% | {causes} | "
                     f"{r['versions']:.2f} | {r['runs_during']:.0f} / {r['runs']:.0f} | "
                     f"{fmt(r['at_end']).replace(' | ', ' / ')} | {r['lost']} | {r['violations']} |")
    lines += ["", "The names subscribers read: the share of the intents they hold at the end "
              "whose label (the latest on `intent-updates`) has its majority gold intent's name "
              "nearest (MiniLM, `-` and `_` read as spaces: the measure of `bench/names.py`; "
              "the gold names are a yardstick only), beside batch's labels for the same rows; "
              "the same intents read by the label each had when it was created (what "
              "subscribers read before consolidations re-named intents: the label stayed); "
              "and the intents the engine re-named on the way (event `renamed`, actor `engine`: "
              "a consolidation found the members it was named for replaced, "
              "`DIALIN_RENAME_OVERLAP`).", "",
              "| set | run | names right: service | same intents, their first label | "
              "batch `dialin discover` | re-named by the engine |",
              "|---|---:|---:|---:|---:|---:|"]
    batch_names = {r["set"]: r["batch_names_right"] for r in results if r.get("batch_names_right")}
    for r in results:
        right, named = r["names_right"]
        b = batch_names.get(r["set"])
        in_batch = "–" if not b else f"{100 * b[0] / max(b[1], 1):.0f}% of {b[1]}"
        first_right, first_named = r["first_names_right"]
        lines.append(f"| {r['set']} | {r['run']} | {100 * right / max(named, 1):.0f}% of {named} | "
                     f"{100 * first_right / max(first_named, 1):.0f}% | {in_batch} | {r['renames']} |")
    later = [r for r in results if r.get("emergence") and r["run"] > 1]
    for r in results:
        if not r.get("emergence") or r["run"] > 1:
            continue  # the table for the first run; later runs in one line below
        em = r["emergence"]
        found = [e for e in em if e["discovered"]]
        delays = [e["delay_s"] for e in found if e["delay_s"] is not None]
        batch_em = {e["intent"]: e for e in r.get("batch_emergence", [])}
        in_batch = (f" Batch `dialin discover` on the same rows meets the same criterion for "
                    f"{sum(e['discovered'] for e in batch_em.values())} of {len(em)}."
                     if batch_em else "")
        lines += ["", f"**Emergence** ({r['set']}): {len(em)} intents held back to the last quarter "
                  f"of the stream; discovered (one intent holds >= {100 * DISCOVERED_SHARE:.0f}% of "
                  f"its utterances and they are that intent's majority) {len(found)} of {len(em)} "
                  f"({100 * len(found) / len(em):.0f}%)"
                  + (f", first utterance to its intent's first update: median {np.median(delays):.0f} s, "
                     f"max {max(delays):.0f} s." if delays else ".") + in_batch, "",
                  "| held-back intent | utterances | stream: largest share in one intent | its majority "
                  "| discovered | delay (s) | batch: discovered |",
                  "|---|---:|---:|---|---|---:|---|"]
        for e in em:
            delay = "–" if e["delay_s"] is None else f"{e['delay_s']:.0f}"
            b = batch_em.get(e["intent"])
            in_b = "–" if b is None else ("yes" if b["discovered"] else "no")
            lines.append(f"| {e['intent']} | {e['n']} | {100 * e['share']:.0f}% | "
                         f"{'yes' if e['majority'] else 'no'} | {'yes' if e['discovered'] else 'no'} | "
                         f"{delay} | {in_b} |")
    for r in later:
        found = sum(e["discovered"] for e in r["emergence"])
        lines += ["", f"Emergence ({r['set']}), run {r['run']}: discovered {found} of {len(r['emergence'])}."]
    lines += ["", f"Machine: {os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
              f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}.", end]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--sets", nargs="+", default=["test", "dense", "emergence"],
                        choices=["test", "dense", "emergence", "emergence-train"])
    parser.add_argument("--rate", type=float, default=100.0, help="utterances per second")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", type=float, default=60.0,
                        help="settled after this many seconds without a new assignment")
    parser.add_argument("--timeout", type=float, default=1800.0, help="per set, after the replay")
    parser.add_argument("--env", nargs="*", default=[], metavar="DIALIN_X=V",
                        help="worker settings to override (default: none)")
    parser.add_argument("--judge", choices=["shipped", SIMULATED], default="shipped",
                        help="the worker's judge: the shipped default (offline heuristic), or "
                             "a simulated LLM that knows the gold labels (benchmark only)")
    parser.add_argument("--llm-latency", type=float, default=0.0, metavar="SECONDS",
                        help="with --judge simulated-llm: hold each request this long before "
                             "its answer, as an LLM takes to answer (default: answer at once)")
    parser.add_argument("--no-batch", action="store_true", help="skip the batch column")
    parser.add_argument("--repeats", type=int, default=2,
                        help="replays of each set (the stream's figures vary run to run)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    if not (args.data / "banking77" / "test.csv").exists():
        sys.exit(f"bench: no data at {args.data} (pass --data DIR holding banking77/)")
    overrides(args.env)  # a wrong pair stops here, not after the first replay
    command = " ".join(["OMP_NUM_THREADS=1 python bench/stream_quality.py", *sys.argv[1:]])
    results = []
    for name in args.sets:
        texts, gold, held = make_set(name, args.data, args.seed)
        log(f"{name}: {len(texts)} utterances, {len(set(gold))} intents")
        for run in range(1, args.repeats + 1):
            llm = (SimulatedLLM(texts, gold, random_state=args.seed, latency=args.llm_latency)
                   if args.judge == SIMULATED else None)
            with tempfile.TemporaryDirectory(prefix=f"dialin-sq-{name}-") as tmp, \
                    (llm or contextlib.nullcontext()):
                judge_env = llm.env() if llm else {}
                stream = run_stream(texts, args, Path(tmp), name, judge_env)
                asked_stream = dict(llm.asked) if llm else {}
                if llm:
                    llm.asked.clear()  # what follows is batch's
                pred = as_labels(stream["final"])
                row = {"set": name, "run": run, "n": len(texts), "gold_intents": len(set(gold)),
                       "command": command, "stream": score(gold, pred),
                       "missing": stream["missing"], "lost": stream["lost"],
                       "violations": stream["violations"], "reassigned": stream["reassigned"],
                       "versions": stream["versions"], "causes": stream["causes"],
                       "runs_during": stream["runs_during"], "runs": stream["runs"],
                       "at_end": score(gold, as_labels(stream["at_end"])),
                       "names_right": names_right(gold, stream["final"], stream["names"]),
                       "first_names_right": names_right(gold, stream["final"], stream["first_names"]),
                       "renames": stream["renames"]}
                log(f"  stream, run {run}: {json.dumps(row['stream'])}, names right "
                    f"{row['names_right']}, renamed by the engine {row['renames']}")
                if held:
                    row["emergence"] = emergence(gold, stream["final"], held, stream["produced_ms"],
                                                 stream["updates_ms"])
                    log(f"  emergence: {sum(e['discovered'] for e in row['emergence'])}/{len(held)}")
                if run == 1 and not args.no_batch:
                    labels, batch_names = run_batch(texts, Path(tmp), judge_env)
                    batch_final = [None if k < 0 else int(k) for k in labels]
                    row["batch"] = score(gold, labels)
                    row["batch_names_right"] = names_right(gold, batch_final, batch_names)
                    log(f"  batch: {json.dumps(row['batch'])}")
                    if held:
                        row["batch_emergence"] = emergence(gold, batch_final, held)
                if llm:
                    row["asked"] = {f"stream {k}": v for k, v in asked_stream.items()}
                    row["asked"].update({f"batch {k}": v for k, v in llm.asked.items() if v})
                    log(f"  simulated LLM: {asked_line(row['asked'], len(texts))}")
            results.append(row)
    print(json.dumps(results, default=str))
    write_section(args.out, section_name(args), section(results, args))


if __name__ == "__main__":
    main()
