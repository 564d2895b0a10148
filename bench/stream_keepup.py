"""The service when its discovery keeps up with the traffic: deterministic stream figures.

Usage: OMP_NUM_THREADS=1 python bench/stream_keepup.py [--sets test dense emergence]
       [--orders 0 1] [--chunk 100] [--judge shipped|simulated-llm] [--env DIALIN_X=V ...]
       [--out docs/benchmarks.md]

``bench/stream_quality.py`` replays a set through the real broker and worker at 100
utterances/s. A replay of 3,080 utterances lasts 31 s, while one discovery fit takes
seconds (with an LLM, minutes): the worker finishes 2-5 runs before the last utterance,
when each one starts depends on the machine's pace, and two replays of the same rows give
different figures. A call center's traffic arrives over hours, and there the leader runs
everything that is due long before much more traffic has come. This script measures that
case, and gives the same figures every time it is run on the same rows:

* the service's own parts, in one process, without Kafka: the ingest agent's
  :class:`~dialin.streams.service.ingest.Ingestor` (validation, the open-set match against
  the catalog, assign or buffer), the leader's
  :class:`~dialin.streams.service.discovery.Discovery` (buffer runs, consolidations,
  renames, publishing) and the catalog and stores the worker reads back, with the shipped
  defaults and the factory's estimator, fitted on the run's thread;
* a loopback in place of the broker: what the service publishes to the buffer and memory
  topics is applied to its stores as the worker's topic readers would apply it, and what
  it publishes to ``intent-assignments`` and ``intent-updates`` is kept as a subscriber
  of each would hold it;
* the traffic in chunks of ``--chunk`` utterances (embedded with MiniLM, from the bench
  cache, as the worker's encoder would); after each chunk the leader ticks until nothing
  is due, so every run that the traffic triggers finishes before the next chunk arrives.
  After the last chunk the traffic pauses (``DIALIN_DISCOVERY_IDLE_SECONDS``) and the
  leader examines what arrived, as the worker does; the time triggers
  (``DIALIN_DISCOVERY_MAX_AGE_SECONDS``, the consolidation interval once the memory is
  full) never fire in the compressed time of a run.

Reported per set and stream order (``--orders``: the seed of the set's draw and order, as
``bench/stream_quality.py --seed``): NMI, ARI, intents and share assigned of what a
subscriber holds at the end (merges followed), and what it held when the last chunk had
been decided (before the pause); held-back intents discovered (the criterion of
``bench/stream_quality.py``); the discovery runs and consolidations; the utterances whose
assignment changed after their first record and the records per utterance; the engine's
renames; with ``--judge simulated-llm``, the judge prompts the simulated LLM answered per
utterance (its cost), for the service and for batch. Batch is ``dialin discover`` on the
same rows with the same judge, as in ``bench/stream_quality.py``.

``--growth G [G ...]`` measures instead how often consolidations re-fit: the service on
``emergence-train`` (tuning data) once per value of ``DIALIN_CONSOLIDATION_GROWTH``, in its
own section (``stream-keepup-growth``): the judge's cost against what subscribers hold.

``--warm`` compares, on ``emergence-train`` and ``dense`` (tuning data), consolidations that re-fit the whole
memory (at the shipped pace, and at the slower pace that spends about as many judge
prompts) with consolidations that start warm from the groups the last one certified
(``DIALIN_CONSOLIDATION_WARM_START``), in its own section (``stream-keepup-warm``).

``--split-check`` compares, on ``emergence-train`` and ``dense`` (tuning data),
consolidations that ask the judge before they split a known intent with consolidations
whose re-fit decides alone (``DIALIN_CONSOLIDATION_SPLIT_CHECK`` on and off), in its own
section (``stream-keepup-split-check``).

``--env DIALIN_X=V ...`` overrides settings for the service (not for batch, which stays the
shipped ``dialin discover``: issue 12's yardstick) and writes a section of its own, whose
name carries them (``stream-keepup-simulated-llm-consolidation-warm-start-true-...``), so a
configuration is measured beside the shipped one without replacing it.

``--judge simulated-llm`` points the service and batch at the simulated LLM that knows the
gold labels (``bench/_simulated_llm.py``, real HTTP on loopback): benchmark only, and the
section says so. Writes the section ``stream-keepup`` (or ``stream-keepup-simulated-llm``)
of ``docs/benchmarks.md``. Libraries: numpy, and the project's own service parts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from unittest import mock

import numpy as np

from dialin.models import BudgetITLClustering, IntentCatalog
from dialin.streams import factory
from dialin.streams.service.buffer import BufferStore
from dialin.streams.service.discovery import Discovery
from dialin.streams.service.ingest import Inbound, Ingestor
from dialin.streams.service.records import MemoryEntry
from dialin.streams.service.worker import estimator_builder
from dialin.streams.settings import Settings

from _doc import markers, provenance, write_section
from _simulated_llm import SimulatedLLM
from quality import embed
from stream_quality import (N_DENSE, N_HELD_BACK, SIMULATED, _span, as_labels, emergence, final_intent,
                            make_set, names_right, overrides, overrides_slug, run_batch, score,
                            service_settings)

ROOT = Path(__file__).resolve().parents[1]
SECTION = "stream-keepup"
#: How many ticks the leader gets once the traffic pauses (a buffer run, a consolidation).
PAUSE_TICKS = 5


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class CachedEncoder:
    """The ingest agent's encoder, answering from embeddings computed once (the bench cache)."""

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table

    async def warm_up(self) -> None:
        return None

    async def encode(self, texts: list[str], *, timed: bool = True) -> np.ndarray:
        return np.vstack([self.table[t] for t in texts]).astype(np.float32)


class Loopback:
    """The broker's place: records for the buffer and memory topics go to the stores (as
    the worker's topic readers apply them); assignments and intent updates are kept as a
    subscriber of each topic holds them (the latest per key), with every record counted."""

    def __init__(self, settings: Settings, buffer: BufferStore, memory: BufferStore) -> None:
        self.settings, self.buffer, self.memory = settings, buffer, memory
        self.assigned: dict[str, dict] = {}
        self.records_per_utterance: Counter = Counter()
        self.intents: dict[str, dict] = {}
        self.events: Counter = Counter()

    async def send_all(self, records) -> None:
        s = self.settings
        for topic, key, value in records:
            raw_key = key.encode("utf-8") if isinstance(key, str) else key
            if topic == s.topic_buffer:
                self.buffer.apply(raw_key, value)
            elif topic == s.topic_memory:
                self.memory.apply(raw_key, value)
            elif topic == s.topic_assignments and value is not None:
                record = json.loads(value)
                self.assigned[record["utterance_id"]] = record
                self.records_per_utterance[record["utterance_id"]] += 1
            elif topic == s.topic_updates and value is not None:
                update = json.loads(value)
                self.intents[update["intent_id"]] = update
                self.events[(update["event"], update["actor"])] += 1

    def held(self, ids: list[str]) -> list[str | None]:
        """Each utterance's intent as a subscriber holds it (merges followed)."""
        return [final_intent(self.assigned.get(u, {}).get("intent_id"), self.intents) for u in ids]


async def run_service(texts: list[str], chunk: int) -> dict:
    """The service's parts over ``texts`` in chunks, each chunk's runs finished before the next."""
    settings = Settings(discovery_idle_seconds=0, discovery_max_age_seconds=1e9,
                        discovery_process=False)
    stripped = [t.strip() for t in texts]  # as validation leaves them
    X, _ = embed("minilm", stripped)
    catalog = IntentCatalog(embedder="minilm", match_threshold=settings.match_threshold,
                            n_neighbors=settings.match_neighbors, vote_share=settings.match_vote_share)
    buffer, memory = BufferStore(), BufferStore(MemoryEntry)
    topics = Loopback(settings, buffer, memory)
    embedder = type("CachedMiniLM", (), {"name": "minilm"})()
    ingestor = Ingestor(settings, embedder, catalog, topics,
                        encoder=CachedEncoder(dict(zip(stripped, X))))
    discovery = Discovery(settings, catalog, buffer, topics, estimator_builder(settings),
                          memory=memory, redactor=factory.build_redactor(settings))
    ids = [f"k{i}" for i in range(len(texts))]
    started = time.perf_counter()
    for start in range(0, len(texts), chunk):
        batch = [Inbound(key=f"c{i}".encode(), topic="calls", partition=0, offset=i,
                         value=json.dumps({"call_id": f"c{i}", "utterance_id": ids[i],
                                           "text": texts[i]}).encode())
                 for i in range(start, min(start + chunk, len(texts)))]
        await ingestor.process(batch)
        await discovery.after_read()
        while await discovery.tick() is not None:  # every run that is due, before more traffic
            await discovery.after_read()
    at_end = topics.held(ids)
    runs_during = (discovery.runs, discovery.consolidations)
    discovery.settings = settings.model_copy(update={"discovery_idle_seconds": 1e-3})
    await asyncio.sleep(0.01)  # the traffic pauses
    for _ in range(PAUSE_TICKS):
        if await discovery.tick() is None:
            break
        await discovery.after_read()
    lost = [u for u in ids if u not in topics.assigned and u not in buffer.entries]
    return {"final": topics.held(ids), "at_end": at_end, "seconds": time.perf_counter() - started,
            "runs_during": runs_during, "runs": (discovery.runs, discovery.consolidations),
            "reassigned": float(np.mean([topics.records_per_utterance[u] > 1 for u in ids])),
            "records": float(np.mean([topics.records_per_utterance[u] for u in ids])),
            "renames": topics.events[("renamed", "engine")], "lost": len(lost),
            "names": {i: u["label"] for i, u in topics.intents.items()}}


def measure(name: str, order: int, args: argparse.Namespace, batch: bool,
            growth: float | None = None, warm: bool | None = None,
            split_check: str | None = None) -> dict:
    """One set in one stream order through the service (and batch, when asked), with the
    shipped settings or another ``DIALIN_CONSOLIDATION_GROWTH``,
    ``DIALIN_CONSOLIDATION_WARM_START`` or ``DIALIN_CONSOLIDATION_SPLIT_CHECK``."""
    texts, gold, held = make_set(name, args.data, order)
    llm = SimulatedLLM(texts, gold, random_state=order) if args.judge == SIMULATED else None
    # The service's settings read DIALIN_* from the environment, as the worker's do; --env
    # reaches the service only: batch stays `dialin discover` as shipped (issue 12's yardstick).
    judge_env = llm.env() if llm else {}
    env = {**judge_env, **overrides(args.env),
           **({"DIALIN_CONSOLIDATION_GROWTH": str(growth)} if growth is not None else {}),
           **({"DIALIN_CONSOLIDATION_WARM_START": str(warm).lower()} if warm is not None else {}),
           **({"DIALIN_CONSOLIDATION_SPLIT_CHECK": split_check} if split_check is not None else {})}
    with llm or contextlib.nullcontext():
        with mock.patch.dict(os.environ, env):
            service = asyncio.run(run_service(texts, args.chunk))
        row = {"set": name, "order": order, "n": len(texts), "growth": growth, "warm": warm,
               "split_check": split_check,
               "service": score(gold, as_labels(service["final"])),
               "at_end": score(gold, as_labels(service["at_end"])),
               "names_right": names_right(gold, service["final"], service["names"]),
               **{k: service[k] for k in ("runs_during", "runs", "reassigned", "records", "renames",
                                          "lost", "seconds")}}
        if llm is not None:
            row["prompts"] = llm.asked["judge"] / len(texts)
            row["unknown_texts"] = llm.asked["unknown texts"]
            llm.asked.clear()
        if held:
            row["emergence"] = sum(e["discovered"] for e in emergence(gold, service["final"], held))
        if batch:
            with tempfile.TemporaryDirectory(prefix="dialin-keepup-") as tmp:
                labels, batch_names = run_batch(texts, Path(tmp), judge_env)
            final = [None if k < 0 else int(k) for k in labels]
            row["batch"] = score(gold, labels)
            row["batch_names_right"] = names_right(gold, final, batch_names)
            if held:
                row["batch_emergence"] = sum(e["discovered"] for e in emergence(gold, final, held))
            if llm is not None:
                row["batch_prompts"] = llm.asked["judge"] / len(texts)
    log(f"{name}, order {order}: {json.dumps(row)}")
    return row


# ---------------------------------------------------------------- report
def _section_name(base: str, args: argparse.Namespace) -> str:
    """The section of docs/benchmarks.md this run writes: the LLM path's has its own, and so
    does a run with overridden settings (``--env``)."""
    return (base + ("-" + SIMULATED if args.judge == SIMULATED else "")
            + overrides_slug(overrides(args.env)))


def _overridden(args: argparse.Namespace) -> str:
    """The sentence naming the settings ``--env`` overrode for the service (none: empty)."""
    if not args.env:
        return ""
    tuning = [name for name in args.sets if name in STUDY_SETS]
    return (" Settings overridden for the service (batch keeps the shipped ones): "
            + ", ".join(f"`{k}={v}`" for k, v in overrides(args.env).items()) + "."
            + (f" `{'`, `'.join(tuning)}` are tuning data (drawn from BANKING77 train)." if tuning else ""))


def _q(r: dict) -> str:
    return f"{r['nmi']:.3f} / {r['ari']:.3f} / {r['intents']} / {100 * r['assigned']:.0f}%"


def _pct(right_of: tuple[int, int]) -> str:
    right, of = right_of
    return f"{100 * right / of:.0f}% of {of}" if of else "–"


def reading(rows: list[dict], simulated: bool, settings: Settings) -> str:
    """The section's reading, computed from its rows and the ``settings`` the service's
    discovery ran with (its warm start and judge budget)."""
    parts = []
    with_batch = [r for r in rows if "batch" in r]
    if with_batch:
        d_nmi = [r["service"]["nmi"] - r["batch"]["nmi"] for r in with_batch]
        d_ari = [r["service"]["ari"] - r["batch"]["ari"] for r in with_batch]
        ratio = [r["service"]["intents"] / r["batch"]["intents"] for r in with_batch]
        parts.append(f"At the end, against batch on the same rows: NMI {_span(d_nmi, '{:+.3f}')}, ARI "
                     f"{_span(d_ari, '{:+.3f}')}, intents {_span(ratio, '{:.2f}x')} batch's.")
    ends = [r["at_end"]["nmi"] - r["service"]["nmi"] for r in rows]
    ends_ari = [r["at_end"]["ari"] - r["service"]["ari"] for r in rows]
    assigned = [100 * r["at_end"]["assigned"] for r in rows]
    parts.append(f"While the traffic ran (when the last chunk was decided), subscribers held "
                 f"NMI {_span(ends, '{:+.3f}')} and ARI {_span(ends_ari, '{:+.3f}')} from the final state, with "
                 f"{_span(assigned, '{:.0f}%')} of the utterances assigned.")
    held = [r for r in rows if "emergence" in r]
    if held:
        each = []
        sets = list(dict.fromkeys(r["set"] for r in held))
        for name in sets:
            of_set = [r for r in held if r["set"] == name]
            found = ", ".join(f"{r['emergence']}" for r in of_set)
            batch = ", ".join(f"{r['batch_emergence']}" for r in of_set if "batch_emergence" in r)
            each.append((f"{name}: " if len(sets) > 1 else "") + f"{found} of {N_HELD_BACK}"
                        + (f" (batch: {batch})" if batch else ""))
        parts.append("Held-back intents discovered: " + "; ".join(each) + ".")
    if simulated:
        cost = [r["prompts"] for r in rows]
        line = f"The service's judge prompts per utterance: {_span(cost, '{:.2f}')}"
        both = [r for r in rows if "batch_prompts" in r and r["batch_prompts"] > 0]
        if both:
            line += (f", {_span([r['prompts'] / r['batch_prompts'] for r in both], '{:.1f}')} "
                     "times batch's on the same rows")
        budget = (f"the judge's budget per row ({settings.judge_budget:g} calls per utterance)"
                  if settings.judge_budget is not None else "the judge's budget per row")
        refit = ("every consolidation starts warm (`DIALIN_CONSOLIDATION_WARM_START`): the "
                 "groups the last one certified are asked about once each, and the rest of the "
                 f"memory is clustered anew at {budget}" if settings.consolidation_warm_start else
                 f"every consolidation re-fits the whole memory at {budget}")
        parts.append(line + ": " + refit + ", and while the memory grows one runs each time it gains "
                     "`DIALIN_CONSOLIDATION_GROWTH` of its size, so the memory's rows are judged "
                     "again and again until it is full (then at most one re-fit per "
                     "`DIALIN_CONSOLIDATION_INTERVAL_SECONDS`).")
    parts.append(f"Reassigned after their first record: {_span([100 * r['reassigned'] for r in rows], '{:.0f}%')} "
                 f"of the utterances; lost: {sum(r['lost'] for r in rows)}.")
    return "Reading: " + " ".join(parts)


def section(rows: list[dict], args: argparse.Namespace) -> str:
    simulated = args.judge == SIMULATED
    start, end = markers(_section_name(SECTION, args))
    judge = ("a **simulated LLM judge that knows the gold labels** (benchmark only, not an LLM: "
             "`bench/_simulated_llm.py`, the sampled oracle 0.96 behind the project's "
             "OpenAI-protocol test server; the namer stays the offline keyword namer), for the "
             "service and for batch" if simulated else "the shipped defaults (offline heuristic "
             "judge, keyword namer)")
    head = ["| set | order | run | NMI / ARI / intents / assigned | names right | held-back "
            "intents discovered |" + (" judge prompts per utterance |" if simulated else ""),
            "|---|---:|---|---|---:|---:|" + ("---:|" if simulated else "")]
    lines = []
    for r in rows:
        em = f"{r['emergence']} of {N_HELD_BACK}" if "emergence" in r else "–"
        lines.append(f"| {r['set']} | {r['order']} | service, at the end | {_q(r['service'])} | "
                     f"{_pct(r['names_right'])} | {em} |" + (f" {r['prompts']:.2f} |" if simulated else ""))
        lines.append(f"| {r['set']} | {r['order']} | service, when the last chunk was decided | "
                     f"{_q(r['at_end'])} | – | – |" + (" – |" if simulated else ""))
        if "batch" in r:
            bem = f"{r['batch_emergence']} of {N_HELD_BACK}" if "batch_emergence" in r else "–"
            lines.append(f"| {r['set']} | {r['order']} | batch `dialin discover` | {_q(r['batch'])} | "
                         f"{_pct(r['batch_names_right'])} | {bem} |"
                         + (f" {r['batch_prompts']:.2f} |" if simulated else ""))
    churn = ["| set | order | discovery runs (consolidations) before the pause / in all | "
             "reassigned | records per utterance | renamed by the engine | lost | seconds |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        churn.append(f"| {r['set']} | {r['order']} | {r['runs_during'][0]} ({r['runs_during'][1]}) / "
                     f"{r['runs'][0]} ({r['runs'][1]}) | {100 * r['reassigned']:.0f}% | "
                     f"{r['records']:.2f} | {r['renames']} | {r['lost']} | {r['seconds']:.0f} |")
    return "\n".join([
        start,
        f"## The service when discovery keeps up (`bench/stream_keepup.py"
        f"{' --judge ' + SIMULATED if simulated else ''}"
        f"{' --env ' + ' '.join(args.env) if args.env else ''}`)",
        "",
        "The service's own parts (ingest's open-set match, the leader's buffer runs, "
        "consolidations and renames, the catalog) in one process, without Kafka: what they "
        "publish to the buffer and memory topics is applied to their stores as the worker's "
        "readers would, and a subscriber's view of `intent-assignments` and `intent-updates` is "
        f"kept. The traffic arrives in chunks of {args.chunk} utterances and after each chunk the "
        "leader runs everything that is due, so no run lags the traffic (a call center's "
        "pace; `bench/stream_quality.py` replays at 100/s through the real broker, where runs "
        "lag); then the traffic pauses and the leader examines what arrived. The judge: "
        f"{judge}.{_overridden(args)} Unlike a replay, a run gives the same figures every time; the stream orders "
        "(the seed of each set's draw and order, as `bench/stream_quality.py --seed`) show how "
        "much the order matters. Sets as in `bench/stream_quality.py`: BANKING77 test "
        f"(held out), {N_DENSE:,} utterances of BANKING77 train (dense), BANKING77 test with "
        f"{N_HELD_BACK} intents held back to the last quarter (emergence, held out). *Names right*: "
        "`bench/names.py`'s measure on the labels subscribers hold.",
        "",
        *head, *lines,
        "",
        "What a subscriber receives on the way: runs before the traffic paused and in all; "
        "utterances whose assignment changed after their first record; assignment records per "
        "utterance; intents the engine re-named; utterances neither assigned nor buffered (lost).",
        "",
        *churn,
        "",
        reading(rows, simulated, service_settings(simulated, args.env)),
        "",
        provenance(),
        end,
    ])


def _study_judge(simulated: bool) -> str:
    """The judge of a tuning study (growth, warm start, split check), as its section names it."""
    return ("the simulated LLM judge that knows the gold labels (benchmark only)"
            if simulated else "the shipped offline judge")


def _study_table(rows: list[dict], first: str, label, simulated: bool,
                 records: bool = False) -> list[str]:
    """A tuning study's table: one row per run, first column ``first`` (``label(row)``),
    then the cost, runs, quality at the end and while the traffic ran, held-back intents,
    reassigned share (and records per utterance when ``records``)."""
    lines = [f"| {first} | set (tuning) | order |"
             + (" judge prompts per utterance |" if simulated else "")
             + " runs (consolidations) | at the end: NMI / ARI / intents / assigned | while the "
             "traffic ran | held-back intents discovered | reassigned |"
             + (" records per utterance |" if records else ""),
             ("|---|" if records else "|---:|") + "---|---:|" + ("---:|" if simulated else "")
             + "---|---|---|---:|---:|" + ("---:|" if records else "")]
    for r in rows:
        em = f"{r['emergence']} of {N_HELD_BACK}" if "emergence" in r else "–"
        lines.append(f"| {label(r)} | {r['set']} | {r['order']} |"
                     + (f" {r['prompts']:.2f} |" if simulated else "")
                     + f" {r['runs'][0]} ({r['runs'][1]}) | {_q(r['service'])} | {_q(r['at_end'])} | "
                     f"{em} | {100 * r['reassigned']:.0f}% |"
                     + (f" {r['records']:.2f} |" if records else ""))
    return lines


#: The tuning sets of the warm-start and split-check studies: the emergence scenario and
#: the dense set.
STUDY_SETS = ("emergence-train", "dense")
STUDY_SETS_TEXT = ("Tuning data only (the emergence scenario on BANKING77 train, `emergence-train`, "
                   f"and the dense set of {N_DENSE:,} utterances of BANKING77 train)")


def _study_section(name: str, title: str, intro: str, lines: list[str], reading: str) -> str:
    """A tuning study's section of docs/benchmarks.md: title, intro, table, reading."""
    start, end = markers(name)
    return "\n".join([start, title, "", intro, "", *lines, "", reading, "", provenance(), end])


GROWTH_SECTION = "stream-keepup-growth"


def growth_section(rows: list[dict], args: argparse.Namespace) -> str:
    """The consolidation-growth study: what re-fitting less often saves and costs."""
    simulated = args.judge == SIMULATED
    shipped = Settings.model_fields["consolidation_growth"].default
    lines = _study_table(rows, "`DIALIN_CONSOLIDATION_GROWTH`",
                         lambda r: f"{r['growth']}" + (" (shipped)" if r["growth"] == shipped else ""),
                         simulated)
    by: dict[float, list[dict]] = {}
    for r in rows:
        by.setdefault(r["growth"], []).append(r)

    def mean(g: float, key) -> float:
        return float(np.mean([key(r) for r in by[g]]))

    each = []
    for g in sorted(by):
        cost = f"{mean(g, lambda r: r['prompts']):.2f} prompts per utterance, " if simulated else ""
        each.append(f"{g}: {cost}{mean(g, lambda r: r['runs'][1]):.1f} consolidations, NMI "
                    f"{mean(g, lambda r: r['service']['nmi']):.3f} at the end and "
                    f"{mean(g, lambda r: r['at_end']['nmi']):.3f} while the traffic ran, ARI "
                    f"{mean(g, lambda r: r['service']['ari']):.3f} and "
                    f"{mean(g, lambda r: r['at_end']['ari']):.3f}, held-back intents "
                    f"{mean(g, lambda r: r.get('emergence', 0)):.1f}")
    return _study_section(
        _section_name(GROWTH_SECTION, args),
        "## Re-fitting less often: `DIALIN_CONSOLIDATION_GROWTH` (`bench/stream_keepup.py --growth`"
        + (f" --judge {SIMULATED}" if simulated else "") + ")",
        "Tuning data only (the emergence scenario on BANKING77 train, `emergence-train`): the "
        "service as in the section above, once per value of `DIALIN_CONSOLIDATION_GROWTH` (a "
        "consolidation runs when the memory has gained this share of its size since the last "
        "one), with " + _study_judge(simulated) + ". A consolidation "
        "re-fits the whole memory, so a larger value judges the memory's rows again fewer "
        "times; what subscribers hold while the traffic runs is then older.",
        lines, "Reading (means over the orders): " + "; ".join(each) + ".")


WARM_SECTION = "stream-keepup-warm"
#: The re-fit pace the warm start is compared with besides the shipped one: a whole re-fit
#: less often is the other way to spend fewer judge prompts (the growth study).
WARM_PEER_GROWTH = 0.5
#: (DIALIN_CONSOLIDATION_WARM_START, DIALIN_CONSOLIDATION_GROWTH) of the warm-start study.
WARM_VARIANTS = ((False, None), (False, WARM_PEER_GROWTH), (True, None))


def warm_section(rows: list[dict], args: argparse.Namespace) -> str:
    """The warm-start study: what starting a consolidation from the last one's groups saves
    and costs, beside re-fitting the whole memory at the shipped pace and less often."""
    simulated = args.judge == SIMULATED
    settings = service_settings(simulated, args.env)
    shipped_warm = settings.consolidation_warm_start
    shipped_growth = Settings.model_fields["consolidation_growth"].default
    warm_share = inspect.signature(BudgetITLClustering).parameters["warm_share"].default

    def variant(key: tuple) -> str:
        warm, growth = key
        text = "warm start" if warm else "re-fit the whole memory"
        text += f", growth {growth if growth is not None else shipped_growth}"
        return text + (" (shipped)" if warm == shipped_warm and growth is None else "")

    lines = _study_table(rows, "consolidation", lambda r: variant((r["warm"], r["growth"])),
                         simulated, records=True)
    by: dict[tuple, list[dict]] = {}
    for r in rows:
        by.setdefault((r["set"], r["warm"], r["growth"]), []).append(r)

    def mean(key: tuple, field) -> float:
        return float(np.mean([field(r) for r in by[key]]))

    def diff(a: tuple, b: tuple, when: str, what: str) -> str:
        return f"{mean(a, lambda r: r[when][what]) - mean(b, lambda r: r[when][what]):+.3f}"

    readings = []
    for name in dict.fromkeys(r["set"] for r in rows):
        each = []
        for key in ((name, *k) for k in WARM_VARIANTS if (name, *k) in by):
            cost = f"{mean(key, lambda r: r['prompts']):.2f} prompts per utterance, " if simulated else ""
            held = (f", held-back intents {mean(key, lambda r: r['emergence']):.1f}"
                    if "emergence" in by[key][0] else "")
            each.append(f"{variant(key[1:])}: {cost}NMI {mean(key, lambda r: r['service']['nmi']):.3f} "
                        f"at the end and {mean(key, lambda r: r['at_end']['nmi']):.3f} while the "
                        f"traffic ran, ARI {mean(key, lambda r: r['service']['ari']):.3f} and "
                        f"{mean(key, lambda r: r['at_end']['ari']):.3f}, intents "
                        f"{mean(key, lambda r: r['service']['intents']):.0f}{held}, reassigned "
                        f"{100 * mean(key, lambda r: r['reassigned']):.0f}%")
        text = f"{name} (means over the orders): " + "; ".join(each) + "."
        cold, peer, warm = ((name, *k) for k in WARM_VARIANTS)
        if simulated and {cold, peer, warm} <= set(by):
            fewer = 1 - mean(warm, lambda r: r["prompts"]) / mean(cold, lambda r: r["prompts"])
            text += (
                f" Against whole re-fits at the same pace, the warm start asks {100 * fewer:.0f}% fewer judge "
                f"prompts; NMI moves by {diff(warm, cold, 'service', 'nmi')} at the end and "
                f"{diff(warm, cold, 'at_end', 'nmi')} while the traffic ran (ARI "
                f"{diff(warm, cold, 'service', 'ari')} and {diff(warm, cold, 'at_end', 'ari')}). "
                f"Against re-fitting the whole memory less often (growth {WARM_PEER_GROWTH}): NMI "
                f"{diff(warm, peer, 'service', 'nmi')} at the end and "
                f"{diff(warm, peer, 'at_end', 'nmi')} while the traffic ran (ARI "
                f"{diff(warm, peer, 'service', 'ari')} and {diff(warm, peer, 'at_end', 'ari')}), "
                f"at {mean(warm, lambda r: r['prompts']) / mean(peer, lambda r: r['prompts']):.2f}x "
                "its prompts.")
        if "emergence" in by.get(warm, [{}])[0] and cold in by:
            more = mean(warm, lambda r: r["emergence"]) - mean(cold, lambda r: r["emergence"])
            text += (f" Held-back intents discovered: {more:+.1f} for the warm start against whole "
                     "re-fits at the same pace.")
        readings.append(text)
    readings.append("The default stays the whole re-fit: what subscribers hold comes first, and the "
                    "warm start keeps groups a fresh fit would cut or regroup. It is the setting for "
                    "a deployment whose LLM calls are what it must save.")
    return _study_section(
        _section_name(WARM_SECTION, args),
        "## Starting a consolidation warm: `DIALIN_CONSOLIDATION_WARM_START` "
        "(`bench/stream_keepup.py --warm`" + (f" --judge {SIMULATED}" if simulated else "") + ")",
        STUDY_SETS_TEXT + ": the service as in the sections above, re-fitting the whole memory at every consolidation "
        f"(at the shipped pace, and less often: `DIALIN_CONSOLIDATION_GROWTH` {WARM_PEER_GROWTH}), "
        "and starting each consolidation warm: the groups the last one certified (the members "
        "a verdict admitted, still in their intent) are asked about once each and kept when "
        f"still Good, only the rest is clustered anew, and kept rows cost {warm_share} of the "
        "per-row judge budget (`warm_share`). With " + _study_judge(simulated)
        + (f", at the service's judge budget of {settings.judge_budget:g} calls per utterance"
           if settings.judge_budget is not None else "") + ".",
        lines, "Reading: " + " ".join(readings))


SPLIT_SECTION = "stream-keepup-split-check"


def split_section(rows: list[dict], args: argparse.Namespace) -> str:
    """The split-check study: consolidations that ask the judge before they split a known
    intent, against consolidations whose re-fit decides alone."""
    simulated = args.judge == SIMULATED
    auto = Settings(judge="openai" if simulated else "heuristic",
                    consolidation_split_check="auto")
    resolved = "on" if Discovery.split_check_on(auto) else "off"
    lines = _study_table(rows, "`DIALIN_CONSOLIDATION_SPLIT_CHECK`",
                         lambda r: r["split_check"] + (" (auto here)" if r["split_check"] == resolved else ""),
                         simulated, records=True)
    by: dict[tuple, list[dict]] = {}
    for r in rows:
        by.setdefault((r["set"], r["split_check"]), []).append(r)

    def mean(key: tuple, field) -> float:
        return float(np.mean([field(r) for r in by[key]]))

    readings = []
    for name in dict.fromkeys(r["set"] for r in rows):
        if not {(name, "off"), (name, "on")} <= set(by):
            continue
        on, off = (name, "on"), (name, "off")

        def diff(when: str, what: str) -> str:
            return f"{mean(on, lambda r: r[when][what]) - mean(off, lambda r: r[when][what]):+.3f}"

        text = (f"{name} (means over the orders), the check on against off: NMI {diff('service', 'nmi')} "
                f"at the end and {diff('at_end', 'nmi')} while the traffic ran, ARI "
                f"{diff('service', 'ari')} and {diff('at_end', 'ari')}, intents "
                f"{mean(off, lambda r: r['service']['intents']):.0f} -> "
                f"{mean(on, lambda r: r['service']['intents']):.0f}")
        if "emergence" in by[on][0]:
            text += (f", held-back intents {mean(off, lambda r: r['emergence']):.1f} -> "
                     f"{mean(on, lambda r: r['emergence']):.1f}")
        if simulated:
            text += (f", judge prompts per utterance {mean(off, lambda r: r['prompts']):.2f} -> "
                     f"{mean(on, lambda r: r['prompts']):.2f}")
        readings.append(text + ".")
    return _study_section(
        _section_name(SPLIT_SECTION, args),
        "## Asking before a split: `DIALIN_CONSOLIDATION_SPLIT_CHECK` (`bench/stream_keepup.py "
        "--split-check`" + (f" --judge {SIMULATED}" if simulated else "") + ")",
        STUDY_SETS_TEXT + ": the service as in the sections above, with " + _study_judge(simulated) + ". A consolidation re-fits the "
        "memory, and a re-fit can cut a known intent in two clusters that each hold mostly its "
        "members because its merge phase spent the budget before it asked about them. With the "
        "check on, the judge is asked whether the two clusters are one intent, and a Good union "
        "keeps the intent whole; off, the re-fit's split stands. `auto` (the default) is on "
        f"with an LLM judge and off with the offline heuristic; for this judge it is {resolved}.",
        lines, "Reading: " + " ".join(readings))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--sets", nargs="+", default=["test", "dense", "emergence"],
                        choices=["test", "dense", "emergence", "emergence-train"])
    parser.add_argument("--orders", type=int, nargs="+", default=[0, 1],
                        help="stream orders (the seed of each set's draw and order)")
    parser.add_argument("--chunk", type=int, default=100, help="utterances between leader ticks")
    parser.add_argument("--judge", choices=["shipped", SIMULATED], default="shipped")
    parser.add_argument("--no-batch", action="store_true", help="skip the batch rows")
    parser.add_argument("--growth", type=float, nargs="+", default=None, metavar="G",
                        help="instead: the service on emergence-train (tuning) once per "
                             "DIALIN_CONSOLIDATION_GROWTH value (its own section)")
    parser.add_argument("--warm", action="store_true",
                        help="instead: the service on emergence-train and dense (tuning) "
                             "re-fitting the whole memory and starting consolidations warm "
                             "(its own section)")
    parser.add_argument("--split-check", action="store_true",
                        help="instead: the service on emergence-train and dense (tuning) with "
                             "DIALIN_CONSOLIDATION_SPLIT_CHECK off and on (its own section)")
    parser.add_argument("--env", nargs="*", default=[], metavar="DIALIN_X=V",
                        help="settings to override for the service, not for batch (default: "
                             "none); the section's name carries them")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    overrides(args.env)  # a wrong pair stops here, before the first run
    if not (args.data / "banking77" / "test.csv").exists():
        sys.exit(f"bench: no data at {args.data} (pass --data DIR holding banking77/)")
    if args.chunk < 1:
        sys.exit("bench: --chunk must be at least 1")
    if args.growth:
        rows = [measure("emergence-train", order, args, batch=False, growth=g)
                for g in args.growth for order in args.orders]
        print(json.dumps(rows))
        write_section(args.out, _section_name(GROWTH_SECTION, args), growth_section(rows, args))
        return
    if args.warm:
        rows = [measure(name, order, args, batch=False, warm=warm, growth=growth)
                for name in STUDY_SETS for warm, growth in WARM_VARIANTS for order in args.orders]
        print(json.dumps(rows))
        write_section(args.out, _section_name(WARM_SECTION, args), warm_section(rows, args))
        return
    if args.split_check:
        rows = [measure(name, order, args, batch=False, split_check=check)
                for name in STUDY_SETS for check in ("off", "on") for order in args.orders]
        print(json.dumps(rows))
        write_section(args.out, _section_name(SPLIT_SECTION, args), split_section(rows, args))
        return
    rows = [measure(name, order, args, batch=not args.no_batch)
            for name in args.sets for order in args.orders]
    print(json.dumps(rows))
    write_section(args.out, _section_name(SECTION, args), section(rows, args))


if __name__ == "__main__":
    main()
