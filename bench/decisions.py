"""What a reviewer's decisions buy the next discovery run (issue 15, "Done when").

On BANKING77 *train* (tuning data, :mod:`_data`), two disjoint seeded draws of utterances
of the same intents: a first discovery run on the first draw makes candidate intents; a
**simulated analyst** (a script that reads the gold labels; no person is involved) reviews
the 20 largest candidates; then the second draw arrives and goes through what a real
leader does with the catalog, once WITHOUT the decisions (the catalog as the first run
left it), once WITH them, and once with the same analyst splitting the candidates it
would reject:

1. ingest's open-set matching of each fresh utterance against the catalog
   (:meth:`IntentCatalog.match`, assignment ``matched``), the rest buffered;
2. the leader's tick: :meth:`Discovery.rematch` of the buffer, then a buffer run
   (:meth:`Discovery.discover`) on what is still buffered.

Everything runs in-process through the service's own code (``Discovery``,
``BufferStore``, ``DecisionApplier``), as ``bench/discover_scale.py`` ``service_child``
does: records go to a recording stand-in for the Kafka publisher, and each second run
starts from a leader rebuilt from the first run's records (catalog, memory and buffer
topics read back, as a restarted leader reads them). The embedder, judge (heuristic: no
LLM exists here) and namer are the shipped defaults (no ``DIALIN_*`` variable).

The analyst's rule, on each candidate's members in the first run: *purity* is the share
of members with the candidate's majority gold intent. Reviewed largest first: a candidate
with purity >= :data:`PURE` whose gold intent no earlier approval holds is approved; any
other candidate (impure, or a second one of an approved gold intent) is merged into the
approved candidate of its majority gold intent when there is one, else rejected (third
arm: split, its members of the majority gold intent going apart, the rest staying).

Scores are on the second draw only: NMI and ARI against the gold intents (an utterance
no intent holds is one more group, as in :mod:`dialin.models` ``nmi``), merged intents
followed to the intent that holds them now.

Usage::

    python bench/decisions.py                  # 3,000 + 3,000 rows, seeds 0 1 2 (minutes)
    python bench/decisions.py --rows 1000 --seeds 0 --no-doc

Libraries: numpy; the project's service modules; scikit-learn through dialin.models.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _data import banking77
from _doc import markers, provenance, write_section

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
CACHE = ROOT / ".bench-cache"
SECTION = "decisions"
#: Candidates the simulated analyst reviews (the largest of the first run).
REVIEWED = 20
#: Purity at or above which the simulated analyst approves a candidate.
PURE = 0.8
ACTOR = "reviewer:simulated-analyst"
#: The second run's arms: no decisions, the analyst's (rejecting what is impure and has no
#: approved intent to merge into), and the same analyst splitting such a candidate instead.
ARMS = ("without", "with", "split")
#: What the analyst does with an impure candidate in each arm that has decisions.
IMPURE = {"with": "reject", "split": "split"}
ROLE = "customer"

Record = tuple[str, Any, bytes | None]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- the simulated analyst -------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One candidate the analyst sees: its id, version, its members' utterance ids and
    their gold intents (in the same order)."""

    intent_id: str
    version: int
    gold: tuple[str, ...]
    members: tuple[str, ...] = ()

    @property
    def majority(self) -> tuple[str, float]:
        """The most common gold intent and its share of the members (the purity)."""
        label, n = Counter(self.gold).most_common(1)[0]
        return label, n / len(self.gold)


@dataclass(frozen=True)
class Decided:
    """One decision of the analyst, about ``intent_id`` as it saw it (``version``)."""

    action: str
    intent_id: str
    version: int
    into: str | None = None
    utterance_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Review:
    """What the analyst decided, in order."""

    decisions: list[Decided] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(d.action == action for d in self.decisions)


def review(candidates: Sequence[Candidate], n: int = REVIEWED, pure: float = PURE,
           impure: str = "reject") -> Review:
    """The simulated analyst's decisions about the ``n`` largest ``candidates`` (module
    docstring): approvals first (largest first, one per gold intent), then each other
    reviewed candidate merged into its gold intent's approved one, or else (``impure``)
    rejected, or split: its members of the majority gold intent go apart."""
    if impure not in ("reject", "split"):
        raise ValueError(f"impure must be 'reject' or 'split', got {impure!r}")
    top = sorted(candidates, key=lambda c: (-len(c.gold), c.intent_id))[:n]
    approved: dict[str, str] = {}  # gold intent -> approved intent_id
    out = Review()
    for c in top:
        label, purity = c.majority
        if purity >= pure and label not in approved:
            approved[label] = c.intent_id
            out.decisions.append(Decided("approve", c.intent_id, c.version))
    for c in top:
        if c.intent_id in approved.values():
            continue
        label, purity = c.majority
        if label in approved:
            out.decisions.append(Decided("merge", c.intent_id, c.version, into=approved[label]))
        elif impure == "split" and purity < 1.0:
            apart = tuple(u for u, g in zip(c.members, c.gold) if g == label)
            out.decisions.append(Decided("split", c.intent_id, c.version, utterance_ids=apart))
        else:
            out.decisions.append(Decided("reject", c.intent_id, c.version))
    return out


# --- the service, in-process -------------------------------------------------------------------


class RecordingPublisher:
    """Stands in for the worker's Kafka publisher: keeps every record in send order."""

    def __init__(self) -> None:
        self.sent: list[Record] = []

    async def send_all(self, records) -> None:
        self.sent.extend(records)


class CountingBuilder:
    """The worker's estimator builder, keeping each estimator a run makes (to count its
    judge calls)."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self.build = build
        self.made: list[Any] = []

    def __call__(self) -> Any:
        est = self.build()
        self.made.append(est)
        return est

    def judge_calls(self) -> int:
        return int(sum(est.n_judge_calls_ for est in self.made))


@dataclass
class Service:
    """What the leader is built from, shared by every run of one benchmark."""

    settings: Any
    embedder: Any
    redactor: Any
    build: Callable[[], Any]


def leader(service: Service, records: Sequence[Record] = ()) -> tuple[Any, RecordingPublisher,
                                                                      CountingBuilder]:
    """A fresh leader (Discovery) that read ``records`` back from the catalog, memory and
    buffer topics, as a restarted leader does; its publisher and estimator counter."""
    from dialin.models import IntentCatalog
    from dialin.streams.service.buffer import BufferStore
    from dialin.streams.service.discovery import Discovery
    from dialin.streams.service.records import MemoryEntry

    s = service.settings
    catalog = IntentCatalog(embedder=service.embedder.name, match_threshold=s.match_threshold,
                            n_neighbors=s.match_neighbors, vote_share=s.match_vote_share)
    buffer, memory = BufferStore(), BufferStore(MemoryEntry)
    for topic, key, value in records:
        key = key.encode() if isinstance(key, str) else key
        if topic == s.topic_catalog:
            catalog.apply_record(None if value is None else json.loads(value), key.decode())
        elif topic == s.topic_buffer:
            buffer.apply(key, value)
        elif topic == s.topic_memory:
            memory.apply(key, value)
    publisher, counter = RecordingPublisher(), CountingBuilder(service.build)
    disco = Discovery(s, catalog, buffer, publisher, counter, memory=memory,
                      redactor=service.redactor)
    return disco, publisher, counter


def entries_of(texts: Sequence[str], X: np.ndarray, rows: np.ndarray, at: float) -> list:
    from dialin.streams.service.records import BufferEntry

    return [BufferEntry(utterance_id=f"u{r}", call_id=f"c{r}", text=texts[r], role=ROLE,
                        embedding=BufferEntry.pack(X[r]), accepted_at=at + i * 1e-6)
            for i, r in enumerate(rows)]


async def first_run(disco, publisher: RecordingPublisher, entries: list) -> dict[str, int]:
    """Every entry buffered (the buffer topic written, as ingest writes it), then one
    buffer run of the leader."""
    from dialin.streams.service.records import dumps

    s = disco.settings
    records = [(s.topic_buffer, e.utterance_id, dumps(e)) for e in entries]
    await publisher.send_all(records)
    for _, key, value in records:
        disco.buffer.apply(key.encode(), value)
    return await disco.discover(*disco.buffer.snapshot())


async def second_run(disco, publisher: RecordingPublisher, entries: list) -> dict[str, Any]:
    """Ingest's matching of ``entries`` against the catalog, the rest buffered; then the
    leader's re-match of the buffer and a buffer run. Counts of each step."""
    from dialin.streams.service import metrics
    from dialin.streams.service.records import dumps

    blocked = metrics.REGISTRY.get_sample_value("dialin_discovery_blocked_clusters_total") or 0.0
    s = disco.settings
    X = np.vstack([e.vector() for e in entries])
    ids, _ = disco.catalog.match(X, [e.role for e in entries])
    assignments, remembered, buffered = [], [], []
    for e, x, iid in zip(entries, X, ids):
        if iid is None:
            buffered.append((s.topic_buffer, e.utterance_id, dumps(e)))
            continue
        a, m = disco.assignment(e, x, disco.catalog.get(iid), 1, "matched")
        assignments.append(a)
        remembered.append(m)
    await disco.finish(assignments, remembered, [])
    await publisher.send_all(buffered)
    for _, key, value in buffered:
        disco.buffer.apply(key.encode(), value)
    rematched = await disco.rematch()
    held = len(disco.buffer)
    counts = await disco.discover(*disco.buffer.snapshot())
    blocked = (metrics.REGISTRY.get_sample_value("dialin_discovery_blocked_clusters_total")
               or 0.0) - blocked
    return {"matched": len(assignments), "matched_ids": ids, "rematched": rematched,
            "buffer_run_on": held, "blocked": int(blocked), **counts}


async def apply_review(disco, decided: Review) -> int:
    """The analyst's decisions as records on the decisions topic, handed to the leader's
    :class:`DecisionApplier` as its topic follower hands them; how many it applied."""
    from dialin.streams.service.decisions import DecisionApplier, DecisionQueue
    from dialin.streams.service.records import Decision, utc_now

    queue = DecisionQueue()
    applier = DecisionApplier(disco, queue)
    applied = 0
    for x in decided.decisions:
        d = Decision(decision_id=f"d-{uuid.uuid4().hex[:12]}", action=x.action,
                     intent_id=x.intent_id, expected_version=x.version, into=x.into,
                     utterance_ids=list(x.utterance_ids) or None, actor=ACTOR,
                     decided_at=utc_now())
        queue.receive(d.decision_id.encode(), d.model_dump_json().encode())
        applied += await applier(time.time())
    return applied


def candidates_of(disco, gold: Mapping[str, str]) -> list[Candidate]:
    """The catalog's candidates with their remembered members' gold intents."""
    members: dict[str, list[str]] = {}
    for e in disco.memory.entries.values():
        members.setdefault(disco.resolve(e.intent_id), []).append(e.utterance_id)
    return [Candidate(i.intent_id, i.version, tuple(gold[u] for u in members[i.intent_id]),
                      tuple(members[i.intent_id]))
            for i in disco.catalog.in_state("candidate") if members.get(i.intent_id)]


def scores(disco, uids: Sequence[str], y: np.ndarray) -> dict[str, float]:
    """NMI and ARI of the intents that hold ``uids`` now (none: one more group), and how
    many distinct intents hold them."""
    from dialin.models import ari, nmi

    held = [disco.resolve(disco.memory.entries[u].intent_id) if u in disco.memory.entries
            else "" for u in uids]
    ids = {iid: k for k, iid in enumerate(sorted({h for h in held if h}))}
    labels = np.array([ids[h] if h else -1 for h in held])
    return {"nmi": nmi(y, labels), "ari": ari(y, labels), "intents_holding": len(ids),
            "unassigned": int((labels < 0).sum())}


# --- one benchmark --------------------------------------------------------------------------


def draw(y: np.ndarray, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint seeded draws of ``rows`` rows each; the second keeps only the intents
    the first holds (fresh utterances of the same intents)."""
    perm = np.random.default_rng(seed).permutation(len(y))
    first = np.sort(perm[:rows])
    rest = perm[rows:]
    rest = rest[np.isin(y[rest], np.unique(y[first]))]
    return first, np.sort(rest[:rows])


def bench_one(service: Service, texts: list[str], X: np.ndarray, y: np.ndarray, rows: int,
              seed: int) -> dict[str, Any]:
    first, second = draw(y, rows, seed)
    gold = {f"u{r}": str(y[r]) for r in np.concatenate([first, second])}
    now = time.time()
    disco, pub, built = leader(service)
    started = time.perf_counter()
    run1 = asyncio.run(first_run(disco, pub, entries_of(texts, X, first, now)))
    out: dict[str, Any] = {"seed": seed, "rows": [len(first), len(second)],
                           "k": [len(set(y[first])), len(set(y[second]))],
                           "run1": {**run1, "judge_calls": built.judge_calls(),
                                    "seconds": time.perf_counter() - started,
                                    **scores(disco, [f"u{r}" for r in first], y[first])}}
    after_first = list(pub.sent)
    candidates = candidates_of(disco, gold)
    decided = {arm: review(candidates, impure=impure) for arm, impure in IMPURE.items()}
    reviewed = {d.intent_id for d in decided["with"].decisions}
    purities = sorted((c.majority[1] for c in candidates if c.intent_id in reviewed), reverse=True)
    out["review"] = {"candidates": len(candidates), "reviewed": len(reviewed),
                     **{a: decided["with"].count(a) for a in ("approve", "merge", "reject")},
                     "split": decided["split"].count("split"),
                     "purity_min": purities[-1] if purities else None,
                     "purity_max": purities[0] if purities else None}
    fresh = [f"u{r}" for r in second]
    for arm in ARMS:
        disco, pub, built = leader(service, after_first)
        applied = asyncio.run(apply_review(disco, decided[arm])) if arm in decided else 0
        rebuffered = len(disco.buffer)
        # the intents a reviewer kept: approved, merge targets, split parts (and what stayed)
        kept = ({i.intent_id for i in disco.catalog.intents_.values() if i.decisions and i.active}
                if arm in decided else reviewed)
        started = time.perf_counter()
        run2 = asyncio.run(second_run(disco, pub, entries_of(texts, X, second, now + 3600)))
        ids = run2.pop("matched_ids")
        to_reviewed = sum(1 for i in ids if i is not None and disco.resolve(i) in kept)
        out[arm] = {**run2, "applied": applied, "buffered_before": rebuffered,
                    "matched_to_reviewed": to_reviewed, "judge_calls": built.judge_calls(),
                    "seconds": time.perf_counter() - started,
                    **scores(disco, fresh, y[second])}
        log(f"  seed {seed} {arm}: {json.dumps(out[arm])}")
    return out


# --- the section ------------------------------------------------------------------------------


def _mean(runs: list[dict], arm: str, key: str) -> float:
    return float(np.mean([r[arm][key] for r in runs]))


def _cell(runs: list[dict], arm: str, key: str, fmt: str) -> str:
    values = [r[arm][key] for r in runs]
    mean = fmt.format(float(np.mean(values)))
    if len(values) == 1:
        return mean
    return f"{mean} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def section(runs: list[dict], meta: dict[str, str]) -> str:
    seeds = ", ".join(str(r["seed"]) for r in runs)
    first = runs[0]
    rows = [
        ("the analyst's decisions the leader applied", "applied", "{:,.0f}"),
        ("NMI of the fresh utterances", "nmi", "{:.3f}"),
        ("ARI of the fresh utterances", "ari", "{:.3f}"),
        ("fresh utterances matched to the catalog by ingest", "matched", "{:,.0f}"),
        ("... of them to a reviewed intent (*)", "matched_to_reviewed", "{:,.0f}"),
        ("buffered before the second run (left by the first run, or put back by a reject)",
         "buffered_before", "{:,.0f}"),
        ("utterances the buffer run fitted", "buffer_run_on", "{:,.0f}"),
        ("certified clusters not proposed: the rejected grouping again", "blocked", "{:,.0f}"),
        ("fitted utterances no proposed cluster covers (they stay buffered)", "uncertified",
         "{:,.0f}"),
        ("intents created by the second run", "created", "{:,.0f}"),
        ("distinct intents holding the fresh utterances", "intents_holding", "{:,.0f}"),
        ("fresh utterances no intent holds", "unassigned", "{:,.0f}"),
        ("judge calls of the second run", "judge_calls", "{:,.0f}"),
        ("seconds of the second run (matching + buffer run)", "seconds", "{:.0f}"),
    ]
    table = ["| second run, on fresh utterances | without decisions | with decisions | "
             "with decisions, splitting instead of rejecting |", "|---|---:|---:|---:|"]
    table += [f"| {what} | " + " | ".join(_cell(runs, arm, key, fmt) for arm in ARMS) + " |"
              for what, key, fmt in rows]
    review_rows = [
        ("candidates after the first run", "candidates"), ("reviewed (the largest)", "reviewed"),
        ("approved", "approve"), ("merged into an approved one", "merge"), ("rejected", "reject"),
        ("split instead of rejected (third column)", "split"),
    ]
    rev = ["| the simulated analyst's review | " + " | ".join(f"seed {r['seed']}" for r in runs) + " |",
           "|---|" + "---:|" * len(runs)]
    rev += [f"| {what} | " + " | ".join(str(r["review"][key]) for r in runs) + " |"
            for what, key in review_rows]
    rev.append("| purity of the reviewed, lowest-highest | " + " | ".join(
        f"{r['review']['purity_min']:.2f}-{r['review']['purity_max']:.2f}" for r in runs) + " |")
    rev.append("| first run: intents created / judge calls / NMI | " + " | ".join(
        f"{r['run1']['created']} / {r['run1']['judge_calls']:,} / {r['run1']['nmi']:.3f}"
        for r in runs) + " |")
    d_nmi = _mean(runs, "with", "nmi") - _mean(runs, "without", "nmi")
    d_calls = _mean(runs, "with", "judge_calls") - _mean(runs, "without", "judge_calls")
    d_created = _mean(runs, "with", "created") - _mean(runs, "without", "created")
    back = _mean(runs, "with", "buffered_before") - _mean(runs, "without", "buffered_before")
    blocked = _mean(runs, "with", "blocked")
    unheld = _mean(runs, "with", "unassigned")
    rejected = float(np.mean([r["review"]["reject"] for r in runs]))
    approved = float(np.mean([r["review"]["approve"] + r["review"]["merge"] for r in runs]))
    verdict = (f"With the simulated analyst's decisions the second run's NMI is {d_nmi:+.3f} "
               f"(mean over the seeds), it creates {d_created:+.1f} intents and makes "
               f"{d_calls:+,.0f} judge calls against the run without them.")
    if rejected > approved:
        verdict += (f" The analyst rejects more than it keeps ({rejected:.1f} against "
                    f"{approved:.1f} approved or merged per seed): the largest candidates of the "
                    "heuristic judge are broad, so few are pure. Each reject puts its "
                    f"members back in the buffer ({back:,.0f} utterances per seed); a cluster "
                    "that proposes the rejected grouping again (mostly in its region and most "
                    "of that region) is fitted once more on its own rows, its finer intents are "
                    "proposed and what is still the grouping stays buffered "
                    f"({blocked:,.0f} clusters, {unheld:,.0f} utterances no intent holds, per "
                    "seed).")
    s_nmi = _mean(runs, "split", "nmi") - _mean(runs, "without", "nmi")
    s_calls = _mean(runs, "split", "judge_calls") - _mean(runs, "without", "judge_calls")
    overlap = (min(r["split"]["nmi"] for r in runs) <= max(r["without"]["nmi"] for r in runs)
               and min(r["without"]["nmi"] for r in runs) <= max(r["split"]["nmi"] for r in runs))
    spread = " (the seeds' ranges overlap)"
    verdict += (f" Splitting those candidates instead of rejecting them gives NMI {s_nmi:+.3f}"
                f"{spread if overlap and len(runs) > 1 else ''} "
                f"and {s_calls:+,.0f} judge calls against the run without decisions.")
    return f"""## What reviewers' decisions buy the next run (BANKING77 train, simulated analyst)

Produced by `python bench/decisions.py`. The reviewer here is **SIMULATED**: a script
that reads the gold labels, not a person. On BANKING77 *train* (tuning data), seed(s)
{seeds}: a first discovery run on {first['rows'][0]:,} random utterances ({first['k'][0]}
intents) makes candidates; the simulated analyst reviews the {REVIEWED} largest by the
purity rule (purity = share of a candidate's members with its majority gold intent;
purity >= {PURE} and the first of its gold intent: approve; otherwise merge into the
approved candidate of the same majority gold intent, or reject when there is none; in
the third column the same analyst splits such a candidate instead, its members of the
majority gold intent going apart);
then {first['rows'][1]:,} fresh utterances of the same intents (rows disjoint from the
first, same seed) go through what a real leader does: ingest's open-set matching
against the catalog (`IntentCatalog.match`), the rest buffered, then the leader's
re-match of the buffer and a buffer run (`Discovery.discover`). Each second run starts
from a leader rebuilt from the first run's catalog, memory and buffer records; those
with decisions first apply the analyst's through `DecisionApplier`, as records of the
decisions topic. In-process, no broker; {meta['embedder']} embedder, {meta['judge']}
judge (no LLM here), {meta['namer']} namer, shipped defaults otherwise.

{chr(10).join(rev)}

{chr(10).join(table)}

(*) Without decisions: the {REVIEWED} candidates the analyst would have reviewed; with
them: the intents a reviewer decided that are still matched (approved, merge targets,
split parts and what stayed; merged ones followed to their target). Scores count an
utterance no intent holds as one more group. With several seeds: mean (lowest-highest).

{verdict} The heuristic judge takes no few-shot examples, so what the decisions buy
here comes from the catalog alone (rejected candidates matched no more and not proposed
again as the same grouping, merged ones matched as one intent, split parts matched apart); an LLM judge would
also see the decided clusters in its prompts, which this benchmark does not measure.

{provenance()}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--rows", type=int, default=3000, help="utterances in each of the two draws")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--no-doc", action="store_true", help="print the section, do not write it")
    args = ap.parse_args()
    if not (args.data / "banking77" / "train.csv").exists():
        ap.error(f"no data at {args.data} (pass --data DIR holding banking77/)")
    if not 2 * REVIEWED <= args.rows <= 5000:  # two disjoint draws of BANKING77 train (10,003)
        ap.error(f"--rows must be between {2 * REVIEWED} and 5,000, got {args.rows}")
    dropped = sorted(k for k in os.environ if k.startswith("DIALIN_"))
    for k in dropped:  # the shipped defaults, as bench/discover_scale.py runs them
        del os.environ[k]
    if dropped:
        log(f"bench: ignoring {', '.join(dropped)} (shipped defaults)")

    from dialin.models import CachedEmbedder
    from dialin.streams.factory import build_redactor, build_service_embedder
    from dialin.streams.service.worker import estimator_builder
    from dialin.streams.settings import Settings

    texts, y = banking77(args.data, "train")
    settings = Settings()
    embedder = CachedEmbedder(build_service_embedder(settings), str(CACHE))
    needed = np.unique(np.concatenate([np.concatenate(draw(y, args.rows, s)) for s in args.seeds]))
    started = time.perf_counter()
    got = embedder.encode([texts[i] for i in needed])
    X = np.zeros((len(texts), got.shape[1]), np.float32)
    X[needed] = got
    log(f"embedded {len(needed):,} utterances in {time.perf_counter() - started:.0f} s")
    service = Service(settings, embedder, build_redactor(settings), estimator_builder(settings))
    runs = [bench_one(service, texts, X, y, args.rows, seed) for seed in args.seeds]
    meta = {"embedder": settings.embedder, "judge": settings.judge, "namer": settings.namer}
    start, end = markers(SECTION)
    text = f"{start}\n{section(runs, meta).strip()}\n{end}"
    if args.no_doc:
        print(text)
        return
    write_section(DOC, SECTION, text)
    (CACHE / "decisions.json").write_text(json.dumps(runs, indent=1), encoding="utf-8")
    log(f"wrote section {SECTION!r} of {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
