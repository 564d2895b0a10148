"""Deterministic replay: re-run discovery over a range of the input topic as one batch.

Why: an audit asks "what would discovery make of last week's traffic, with the answers
the LLM gave then". ``dialin rediscover`` reads the utterances of a range back from the
input topic, validates them as the worker does (:func:`~..service.records.validate_event`,
rejects counted, a redelivered utterance id kept once), embeds them with the service
embedder and fits the service's estimator (:mod:`..factory`, as
:func:`~..service.worker.estimator_builder` builds it) once per role with the settings'
seed. The LLM judge and namer read the deployment's response log first
(:class:`~..service.responses.KafkaResponseLog`, which the live service writes too) and
only ask the LLM the prompts never asked, recording those answers; so a replay of a
range whose prompts are all in the log needs no LLM server and gives the same bytes.
It does not re-enact the incremental history (buffer runs, consolidations): it is the
batch run the same utterances make now.

The output (:meth:`Rediscovery.document`) is deterministic JSON: sorted keys, intent
ids from the members' utterance ids (:func:`~dialin.models.new_intent_id`, the service's
own scheme, so an intent the live service made from the same utterances has the same
id), timestamps taken from the range's last record, never from the clock, and no
run-time figures (seconds, calls made: they go to the summary line). An event without a
role keeps none: the worker infers one from the catalog as it stood at arrival, which a
replay cannot recall, and inferring it from today's catalog would tie the output to it.

The review decisions (issue 15) apply as they stand now, read from the live catalog
(:func:`~..catalog.read_live`: the leader keeps on each entry what a person decided), so
the output is deterministic for a given catalog (:func:`review_decisions`). The judge and
namer show the decided clusters as few-shot examples exactly as the live service does
(:func:`~..service.decisions.decided_examples`; the prompts are part of the response
log's key); after the fit, a replayed intent whose members mostly belong to a live intent
(:func:`live_match`, the diff's rule) takes what a person decided there
(:func:`apply_decisions`): rejected -> dropped, its members unassigned; a person's label
-> kept over the namer's; a person's merge -> merged into the replayed intent that
matches the target (or relabelled to it when none does). Every judge question and its
verdict is kept (:class:`VerdictRecorder`), so ``--explain`` shows what made an intent.
The diff against the live catalog matches each replayed intent's members with the live
catalog's own open-set rule (:meth:`~dialin.models.IntentCatalog.match`).

Libraries: kafka-python (through :func:`~.watch.read_topic` and the producer of
:mod:`.replay`), numpy.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np

from dialin.models import ClusterView, Judge, Verdict, new_intent_id

from ..settings import Settings

#: ``--from-offset`` / ``--to-offset``: ``PARTITION:OFFSET`` pairs, comma-separated.
_OFFSETS = re.compile(r"^\s*\d+\s*:\s*\d+\s*(,\s*\d+\s*:\s*\d+\s*)*$")
#: Version of the output document's layout.
FORMAT = "dialin-rediscover/1"


class RediscoverError(ValueError):
    """A replay that cannot run as asked; the message is one line."""


# --- the range -------------------------------------------------------------------------

def parse_time(text: str, option: str) -> int:
    """An ISO-8601 timestamp (``2026-11-01T00:00Z``; no zone means UTC) in epoch ms."""
    try:
        when = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise RediscoverError(f"{option} {text!r}: not an ISO-8601 time such as "
                              "2026-11-01T00:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1000)


def parse_offsets(text: str, option: str) -> dict[int, int]:
    """``PARTITION:OFFSET[,PARTITION:OFFSET...]`` as {partition: offset}."""
    if not _OFFSETS.match(text):
        raise RediscoverError(f"{option} {text!r}: expected PARTITION:OFFSET pairs, "
                              "comma-separated, such as 0:120,1:98")
    out: dict[int, int] = {}
    for pair in text.split(","):
        partition, offset = (int(p) for p in pair.split(":"))
        if partition in out:
            raise RediscoverError(f"{option} {text!r}: partition {partition} given twice")
        out[partition] = offset
    return out


def _iso(ms: int) -> str:
    when = datetime.fromtimestamp(ms / 1000, timezone.utc)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Range:
    """The records to replay: ``[start, end)`` by record timestamp (epoch ms) and by
    offset per partition; a bound left out does not limit."""

    start_ms: int | None = None
    end_ms: int | None = None
    start_offsets: dict[int, int] = field(default_factory=dict)
    end_offsets: dict[int, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, start: str | None = None, end: str | None = None,
              start_offsets: str | None = None, end_offsets: str | None = None) -> Range:
        """The range of the command's options, checked (``--from`` before ``--to``)."""
        out = cls(None if start is None else parse_time(start, "--from"),
                  None if end is None else parse_time(end, "--to"),
                  {} if start_offsets is None else parse_offsets(start_offsets, "--from-offset"),
                  {} if end_offsets is None else parse_offsets(end_offsets, "--to-offset"))
        if out.start_ms is not None and out.end_ms is not None and out.start_ms >= out.end_ms:
            raise RediscoverError(f"--from {start} is not before --to {end}: the range is empty")
        for partition, offset in out.end_offsets.items():
            if offset <= out.start_offsets.get(partition, 0):
                raise RediscoverError(f"--to-offset {partition}:{offset} is not after "
                                      f"--from-offset {partition}:{out.start_offsets.get(partition, 0)}"
                                      ": the range is empty")
        return out

    def holds(self, partition: int, offset: int, timestamp_ms: int) -> bool:
        if self.start_ms is not None and timestamp_ms < self.start_ms:
            return False
        if self.end_ms is not None and timestamp_ms >= self.end_ms:
            return False
        if offset < self.start_offsets.get(partition, 0):
            return False
        end = self.end_offsets.get(partition)
        return end is None or offset < end

    def describe(self) -> dict[str, Any]:
        """The range as the output records it (what was asked, not what was found)."""
        return {"from": None if self.start_ms is None else _iso(self.start_ms),
                "to": None if self.end_ms is None else _iso(self.end_ms),
                "from_offsets": {str(p): o for p, o in sorted(self.start_offsets.items())},
                "to_offsets": {str(p): o for p, o in sorted(self.end_offsets.items())}}


@dataclass(frozen=True)
class Utterances:
    """The valid utterances of a range, in the topic's order, once each."""

    ids: list[str]
    texts: list[str]
    roles: list[str | None]
    records: int  # records in the range
    rejected: int  # records the worker would dead-letter
    duplicates: int  # redeliveries of an utterance id already read
    last_ms: int  # timestamp of the range's last record


def read_range(settings: Settings, span: Range) -> Utterances:
    """Read the utterances of ``span`` from the input topic (every partition, no group)."""
    from ..service.records import Utterance, validate_event
    from .watch import read_topic

    topic = settings.topic_utterances
    records = [r for r in read_topic(settings, topic, wait_for_topic=2.0)
               if r.topic == topic and span.holds(r.partition, r.offset, r.timestamp_ms)]
    if not records:
        raise RediscoverError(f"no utterances in that range of topic {topic} at "
                              f"{settings.kafka_bootstrap}")
    seen: set[str] = set()
    ids, texts, roles = [], [], []
    rejected = duplicates = 0
    for r in records:  # read_topic's order: timestamp, partition, offset
        event = validate_event(r.value, (r.topic, r.partition, r.offset))
        if not isinstance(event, Utterance):
            rejected += 1
        elif event.uid in seen:
            duplicates += 1
        else:
            seen.add(event.uid)
            ids.append(event.uid)
            texts.append(event.text)
            roles.append(event.role)
    if len(ids) < 2:
        raise RediscoverError(f"{len(ids)} valid utterances in that range of topic {topic} "
                              f"({rejected} rejected): discovery needs at least 2")
    return Utterances(ids, texts, roles, len(records), rejected, duplicates,
                      max(r.timestamp_ms for r in records))


# --- the run -------------------------------------------------------------------------

@dataclass(frozen=True)
class Decided:
    """The review decisions as they stand in the live catalog.

    ``catalog`` holds every live entry (any state); ``matcher`` the entries a replayed
    intent is matched with to take a decision (the candidate and active ones, the
    rejected ones and those a person merged, each made matchable); ``examples`` the
    clusters people decided, most recent first, as the live service's judge and namer
    show them (:func:`~..service.decisions.decided_examples`).
    """

    catalog: Any  # IntentCatalog
    matcher: Any  # IntentCatalog
    examples: list[Any]  # DecidedExample


@dataclass(frozen=True)
class Applied:
    """One decision a replay took from the live catalog: the replayed intent, the live
    intent it matched, the action (``reject``, ``label``, ``merge``, ``merge-label``) and,
    for a merge, the replayed intent it went into (``merge-label``: the live target)."""

    intent_id: str
    live_id: str
    action: str
    into: str | None = None

    def record(self) -> dict:
        return {"intent_id": self.intent_id, "live_id": self.live_id, "action": self.action,
                "into": self.into}


@dataclass(frozen=True)
class Dropped:
    """A replayed intent a person rejected in the live catalog: its members stay unassigned."""

    intent: Any  # CatalogIntent
    rows: list[int]
    live_id: str
    reason: str


def _live_catalog(settings: Settings, embedder: str, intents: Sequence[Any]) -> Any:
    """An :class:`~dialin.models.IntentCatalog` with the service's open-set rule, holding
    ``intents`` (catalog entries with vectors)."""
    from dialin.models import IntentCatalog

    catalog = IntentCatalog(embedder=embedder, match_threshold=settings.match_threshold,
                            n_neighbors=settings.match_neighbors,
                            vote_share=settings.match_vote_share)
    for intent in intents:
        catalog.put(intent)
    return catalog


def _check_space(snapshot: Any, embedder: str) -> None:
    if snapshot.embedder and snapshot.embedder != embedder:
        raise RediscoverError(f"the live catalog is in embedding space {snapshot.embedder!r}, "
                              f"this replay in {embedder!r}: set the service's DIALIN_EMBEDDER")


def review_decisions(settings: Settings, snapshot: Any, embedder: str) -> Decided:
    """The review decisions to apply to a replay, as they stand now in ``snapshot`` (the
    live catalog, :func:`~..catalog.read_live`): what the leader applied is on its entries
    (state, ``pinned``, ``actor``, ``merged_into``)."""
    from dialin.models import CatalogIntent

    from ..service.decisions import decided_examples
    from ..service.discovery import kept_whole

    _check_space(snapshot, embedder)
    entries = [CatalogIntent.from_record(r) for r in snapshot.records if r.get("centroid")]
    catalog = _live_catalog(settings, embedder, entries)
    decidable = [replace(i, state="active", status="updated") for i in catalog.intents_.values()
                 if i.active or i.state == "rejected" or (i.state == "merged" and kept_whole(i))]
    return Decided(catalog, _live_catalog(settings, embedder, decidable),
                   decided_examples(catalog))


def live_match(catalog: Any, X: np.ndarray, role: str | None) -> tuple[str | None, int]:
    """The live intent the catalog's open-set rule gives most of the rows ``X`` (of
    ``role``), and how many it gets (ties: the smaller id); (None, 0) when none takes any.
    The rows *belong* to it when :func:`mostly` says so."""
    ids = catalog.match(X, [role] * len(X))[0] if len(catalog) else [None] * len(X)
    votes = Counter(i for i in ids if i is not None)
    if not votes:
        return None, 0
    return min(votes.items(), key=lambda kv: (-kv[1], kv[0]))


def mostly(k: int, n: int) -> bool:
    """``k`` of ``n`` members is most of them: at least half."""
    return 2 * k >= n


def apply_decisions(intents: list[Any], members: dict[str, list[int]], X: np.ndarray,
                    decided: Decided) -> tuple[list[Any], list[Applied], list[Dropped]]:
    """The replayed ``intents`` after what people decided about the live intents they match.

    A replayed intent belongs to the live intent with its id (the same members), else to
    the one :func:`live_match` gives most of its members (:func:`mostly`). Then: a
    rejected live intent -> the replayed intent is dropped (its members unassigned); a
    live intent a person merged -> the replayed intent is merged into the replayed intent
    that belongs to the merge's target (it keeps that one's id, label and examples), or,
    when none does, relabelled to the target's label; a person's label (an intent a
    reviewer decided or an import: :func:`~..service.discovery.kept_whole`) -> kept over
    the namer's. ``members`` is updated in place.
    """
    from ..service.discovery import kept_whole

    live, matcher = decided.catalog, decided.matcher
    if not len(live):
        return intents, [], []
    belongs: dict[str, str] = {}
    for intent in intents:
        if intent.intent_id in live:
            belongs[intent.intent_id] = intent.intent_id
            continue
        rows = members[intent.intent_id]
        best, k = live_match(matcher, X[rows], intent.role)
        if best is not None and mostly(k, len(rows)):
            belongs[intent.intent_id] = best

    def target_of(there: Any) -> Any:  # where a chain of merges ends
        seen = {there.intent_id}
        while (there is not None and there.state == "merged" and there.merged_into is not None
               and there.merged_into not in seen):
            seen.add(str(there.merged_into))
            there = live.get(str(there.merged_into))
        return there

    out, applied, dropped, merges = [], [], [], []
    for intent in intents:
        lid = belongs.get(intent.intent_id)
        there = live.get(lid) if lid is not None else None
        target = target_of(there) if there is not None and there.state == "merged" else there
        if there is None or (there.state == "merged" and not kept_whole(there)):
            out.append(intent)
        elif target is not None and target.state == "rejected":
            why = (f"live intent {lid} {there.label!r} was rejected by {there.actor}"
                   if target is there else f"live intent {lid} {there.label!r} was merged "
                   f"into {target.intent_id} {target.label!r}, rejected by {target.actor}")
            dropped.append(Dropped(intent, members.pop(intent.intent_id), lid, why))
            applied.append(Applied(intent.intent_id, lid, "reject"))
        elif there.state == "merged":
            merges.append((intent, there, target))
            out.append(intent)
        elif there.active and kept_whole(there):
            out.append(replace(intent, label=there.label, actor=there.actor, pinned=True))
            applied.append(Applied(intent.intent_id, lid, "label"))
        else:
            out.append(intent)
    first: dict[str, str] = {}  # live id -> the replayed intent (largest first) that belongs there
    for intent in out:
        if intent.intent_id in belongs:
            first.setdefault(belongs[intent.intent_id], intent.intent_id)
    index = {intent.intent_id: n for n, intent in enumerate(out)}
    gone: set[str] = set()
    for intent, there, target in merges:
        iid = intent.intent_id
        into = None if target is None else first.get(target.intent_id)
        if into is not None and into != iid and into not in gone:
            rows = sorted(members[into] + members.pop(iid))
            members[into] = rows
            host = out[index[into]]
            out[index[into]] = replace(host, size=len(rows), centroid=X[rows].mean(axis=0))
            gone.add(iid)
            applied.append(Applied(iid, there.intent_id, "merge", into))
        elif target is not None:
            out[index[iid]] = replace(out[index[iid]], label=target.label, actor=there.actor,
                                      pinned=True)
            applied.append(Applied(iid, there.intent_id, "merge-label", target.intent_id))
    applied.sort(key=lambda a: (a.intent_id, a.live_id, a.action, a.into or ""))
    dropped.sort(key=lambda d: d.intent.intent_id)
    return [i for i in out if i.intent_id not in gone], applied, dropped


@dataclass(frozen=True)
class Question:
    """One judge question of the run: its rows (into the run's utterances) and verdict."""

    role: str | None
    rows: tuple[int, ...]
    split: int
    repetition: int
    verdict: Verdict


class VerdictRecorder(Judge):
    """The run's judge, keeping every question and verdict for ``--explain``.

    Composition, like the role wrapper of :mod:`dialin.models`: the wrapped judge is
    prepared, asked and cached exactly as without it; ``rows`` maps a per-role fit's
    row numbers back to the run's.
    """

    def __init__(self, judge: Judge) -> None:
        self.judge_ = judge
        self.backend = judge.backend
        self.default_budget = judge.default_budget
        self.deterministic = judge.deterministic
        self.simulated = judge.simulated
        self.questions: list[Question] = []
        self.rows: np.ndarray = np.zeros(0, dtype=np.int64)
        self.role: str | None = None

    def describe(self) -> dict:
        return self.judge_.describe()

    def prepare(self, X: np.ndarray, texts: Sequence[str]) -> None:
        self.judge_.prepare(X, texts)

    def cache_key(self, view: ClusterView) -> tuple:
        return self.judge_.cache_key(view)

    def judge(self, views: Sequence[ClusterView]) -> list[Verdict]:
        views = list(views)
        verdicts = self.judge_.judge(views)
        for view, verdict in zip(views, verdicts):
            self.questions.append(Question(self.role, tuple(int(self.rows[i]) for i in view.members),
                                           view.split, view.repetition, verdict))
        return verdicts


@dataclass
class Rediscovery:
    """One replay's result: the intents (catalog entries) and what made them."""

    settings: Settings
    span: Range
    utterances: Utterances
    embedder: str
    judge: str
    namer: str
    prompt_version: str | None
    intents: list[Any]  # CatalogIntent, largest first
    members: dict[str, list[int]]  # intent id -> rows
    questions: list[Question]
    X: np.ndarray = field(repr=False)
    llm: dict | None = None
    live: Any = None  # the live catalog's Snapshot the decisions came from
    applied: list[Applied] = field(default_factory=list)  # sorted
    dropped: list[Dropped] = field(default_factory=list)  # by intent id
    decided_examples: int = 0  # decided clusters the judge and namer were shown

    def document(self) -> dict:
        """The catalog this run produces, as deterministic JSON-able data."""
        u = self.utterances
        s = self.settings
        intents = []
        for intent in self.intents:
            record = intent.to_record(self.embedder, centroid=False)
            record["members"] = sorted(u.ids[i] for i in self.members[intent.intent_id])
            intents.append(record)
        assigned = sum(len(rows) for rows in self.members.values())
        return {
            "format": FORMAT,
            "range": {"topic": s.topic_utterances, **self.span.describe()},
            "run": {"seed": s.random_state, "embedder": self.embedder, "strategy": s.strategy,
                    "judge": self.judge, "namer": self.namer,
                    "judge_budget": s.judge_budget, "prompt_version": self.prompt_version,
                    "min_cluster_size": s.discovery_min_cluster_size,
                    "decided_examples": self.decided_examples,
                    "decisions_applied": {"count": len(self.applied),
                                          "decisions": [a.record() for a in self.applied]}},
            "input": {"records": u.records, "utterances": len(u.ids), "rejected": u.rejected,
                      "duplicates": u.duplicates, "unassigned": len(u.ids) - assigned},
            "intents": intents,
            "dropped": [{"intent_id": d.intent.intent_id, "label": d.intent.label,
                         "role": d.intent.role, "size": d.intent.size, "live_id": d.live_id,
                         "reason": d.reason, "members": sorted(u.ids[i] for i in d.rows)}
                        for d in self.dropped],
        }

    def text(self) -> str:
        """:meth:`document` as the bytes written: sorted keys, one trailing newline."""
        return json.dumps(self.document(), sort_keys=True, ensure_ascii=False, indent=1,
                          allow_nan=False) + "\n"

    def catalog_records(self) -> list[tuple[str, dict]]:
        """(key, catalog record with centroid and exemplars) per intent, for ``--publish``."""
        from ..service.discovery import intent_exemplars

        out = []
        for intent in self.intents:
            exemplars, threshold = intent_exemplars(self.settings,
                                                    self.X[self.members[intent.intent_id]])
            full = replace(intent, exemplars=exemplars, threshold=threshold)
            out.append((intent.intent_id, full.to_record(self.embedder)))
        return out

    def explain(self, intent_id: str) -> list[str]:
        """The judge questions that made ``intent_id``: every question on a group of its
        members (the clusters it grew from and the one certified), in the order asked."""
        rows = self.members.get(intent_id)
        gone = next((d for d in self.dropped if d.intent.intent_id == intent_id), None)
        if rows is None and gone is None:
            known = ", ".join(i.intent_id for i in self.intents[:5])
            raise RediscoverError(f"--explain {intent_id}: no such intent in this run "
                                  f"({len(self.intents)} intents{': ' + known if known else ''})")
        if gone is not None:
            intent, rows = gone.intent, gone.rows
        else:
            intent = next(i for i in self.intents if i.intent_id == intent_id)
        mine = set(rows)
        lines = [f"{intent.intent_id} {intent.label!r} [{intent.role or '-'}] size {intent.size}"
                 + ("" if gone is None else f", dropped: {gone.reason}")]
        for n, q in enumerate(self.questions, 1):
            inside = sum(r in mine for r in q.rows)
            if not inside:
                continue
            v = q.verdict
            answer = {True: "Good", False: "Bad", None: "invalid"}[v.good]
            kind = f"union {q.split}+{len(q.rows) - q.split}" if q.split else f"cluster {len(q.rows)}"
            lines.append(
                f"  question {n}: {kind} rows, {inside} of them in this intent"
                + (f", repetition {q.repetition}" if q.repetition else "")
                + f" -> {answer}"
                + ("" if v.confidence is None else f" (P(Good) {v.confidence:.3f})")
                + f" by {v.backend}" + (f", fallback {v.fallback}" if v.fallback else ""))
        return lines


def rediscover(settings: Settings, span: Range, *, embedder: Any = None,
               responses: Any = None, live: Any = None) -> Rediscovery:
    """Replay ``span``: read, embed, fit once per role, apply the review decisions, and
    the catalog that makes.

    ``embedder`` defaults to the service's (:func:`~..factory.build_service_embedder`),
    ``responses`` to the deployment's response log (:func:`~..factory.build_response_log`),
    ``live`` to the live catalog now (:func:`~..catalog.read_live`), whose decisions apply.
    """
    from dialin.models import DecidedExamples

    from .. import factory
    from ..catalog import read_live

    settings = factory.service_settings(settings)  # the service's budget with an LLM judge
    utterances = read_range(settings, span)
    embedder = embedder if embedder is not None else factory.build_service_embedder(settings)
    live = live if live is not None else read_live(settings)
    decided = review_decisions(settings, live, embedder.name)
    examples = DecidedExamples(limit=settings.decision_examples)  # as the worker hands them in
    examples.replace(decided.examples)
    if responses is None:
        responses = factory.build_response_log(settings)
    spend = factory.build_spend_cap(settings, per_run=True)
    judge = factory.build_judge(settings, spend=spend, responses=responses, examples=examples)
    namer = factory.build_namer(settings, spend=spend, responses=responses, examples=examples)
    recorder = VerdictRecorder(judge)
    redactor = factory.build_redactor(settings)
    X = np.ascontiguousarray(embedder.encode(utterances.texts), dtype=np.float32)
    when = _iso(utterances.last_ms)
    intents, members = [], {}
    try:
        for role in sorted({r or "" for r in utterances.roles}):
            _fit_role(settings, role, utterances, X, recorder, namer, spend, redactor, when,
                      intents, members)
    finally:
        if responses is not None:
            responses.close()  # the answers this run asked are on the log before it reports
    intents, applied, dropped = apply_decisions(
        sorted(intents, key=lambda i: (-i.size, i.intent_id)), members, X, decided)
    intents = _distinct_labels(sorted(intents, key=lambda i: (-i.size, i.intent_id)))
    return Rediscovery(settings, span, utterances, embedder.name, judge.backend, namer.backend,
                       factory.prompt_version(judge, namer), intents, members, recorder.questions,
                       X, factory.llm_stats(judge, namer), live, applied, dropped,
                       len(decided.examples))


def _fit_role(settings: Settings, role: str, utterances: Utterances, X: np.ndarray,
              recorder: VerdictRecorder, namer: Any, spend: Any, redactor: Any, when: str,
              intents: list, members: dict) -> None:
    """One fit on the rows of ``role`` (as the worker's discovery run fits per role);
    its certified clusters of ``discovery_min_cluster_size`` or more become intents."""
    from dialin.models import CatalogIntent

    from .. import factory

    min_size = settings.discovery_min_cluster_size
    rows = np.array([i for i, r in enumerate(utterances.roles) if (r or "") == role])
    if len(rows) < max(2 * min_size, 4):
        return
    recorder.rows, recorder.role = rows, role or None
    estimator = factory.build_estimator(settings, recorder, namer, spend=spend)
    estimator.fit(X[rows], texts=[utterances.texts[i] for i in rows])
    for found in estimator.intents_:
        verdict = found.verdict
        if verdict is None or not verdict.is_good or len(found.members) < min_size:
            continue
        mine = sorted(int(r) for r in rows[np.asarray(found.members, dtype=int)])
        iid = new_intent_id(role or None, [utterances.ids[i] for i in mine])
        examples = list(found.examples) or [utterances.texts[i] for i in mine[:10]]
        label = found.label or f"unnamed-{found.intent_id}"
        if redactor is not None:
            examples, label = redactor.redact_many(examples), redactor.redact_label(label)
        members[iid] = mine
        intents.append(CatalogIntent(
            intent_id=iid, label=label, role=role or None, centroid=X[mine].mean(axis=0),
            size=len(mine), examples=tuple(examples)[:10], created_at=when, updated_at=when,
            judge_backend=verdict.backend, judge_confidence=verdict.confidence,
            judge_fallback=verdict.fallback))


def _distinct_labels(intents: list[Any]) -> list[Any]:
    """A label no earlier intent of the role has: the later one gets `` (2)``, `` (3)``...
    (the service's rule for the intents one run creates)."""
    def key(role: str | None, label: str) -> tuple[str | None, str]:
        return role, " ".join(label.casefold().replace("-", " ").replace("_", " ").split())

    taken: set[tuple[str | None, str]] = set()
    out = []
    for intent in intents:
        label, n = intent.label, 1
        while key(intent.role, label) in taken:
            n += 1
            label = f"{intent.label} ({n})"
        taken.add(key(intent.role, label))
        out.append(replace(intent, label=label))
    return out


# --- against the live catalog ------------------------------------------------------------

@dataclass(frozen=True)
class DiffLine:
    """One line of the diff: ``same``, ``matches``, ``new``, ``dropped`` or ``live-only``."""

    kind: str
    intent_id: str
    text: str


def diff_live(run: Rediscovery, snapshot: Any) -> list[DiffLine]:
    """The replay against the live catalog (:func:`~..catalog.read_live`'s snapshot).

    A replayed intent is ``same`` when the live catalog has its id (the same members),
    else ``matches`` the live intent the open-set rule gives most of its members when
    that is at least half of them (:func:`live_match`, :func:`mostly`), else ``new``; a
    replayed intent the decisions dropped is ``dropped``, with why; an active live intent
    that none matches is ``live-only``.
    """
    from dialin.models import CatalogIntent

    _check_space(snapshot, run.embedder)
    live = {r["intent_id"]: r for r in snapshot.active()}
    entries = [CatalogIntent.from_record(r) for r in live.values() if r.get("centroid")]
    catalog = _live_catalog(run.settings, run.embedder, entries)
    lines, seen = [], set()
    for intent in run.intents:
        head = f"{intent.intent_id} {intent.label!r} [{intent.role or '-'}] size {intent.size}"
        if intent.intent_id in live:
            seen.add(intent.intent_id)
            lines.append(DiffLine("same", intent.intent_id, f"same      {head}"))
            continue
        rows = run.members[intent.intent_id]
        best, k = live_match(catalog, run.X[rows], intent.role)
        if best is not None and mostly(k, len(rows)):
            seen.add(best)
            lines.append(DiffLine("matches", intent.intent_id,
                                  f"matches   {head} ~ live {best} {live[best]['label']!r} "
                                  f"({k} of {len(rows)} members)"))
        elif best is not None:
            lines.append(DiffLine("new", intent.intent_id,
                                  f"new       {head}: at most {k} of its members go to one live "
                                  f"intent ({best} {live[best]['label']!r})"))
        else:
            lines.append(DiffLine("new", intent.intent_id,
                                  f"new       {head}: no live intent takes its members"))
    for d in run.dropped:
        i = d.intent
        lines.append(DiffLine("dropped", i.intent_id,
                              f"dropped   {i.intent_id} {i.label!r} [{i.role or '-'}] size "
                              f"{i.size}: {d.reason}"))
    for iid in sorted(set(live) - seen):
        r = live[iid]
        lines.append(DiffLine("live-only", iid, f"live-only {iid} {r['label']!r} "
                                                f"[{r.get('role') or '-'}] size {r.get('size')}"))
    return lines


def publish(run: Rediscovery, topic: str) -> int:
    """Send the run's catalog records (with vectors) to ``topic``; the number sent."""
    from .replay import make_producer

    producer = make_producer(run.settings, acks="all")
    try:
        futures = [producer.send(topic, key=key.encode("utf-8"),
                                 value=json.dumps(record, ensure_ascii=False,
                                                  sort_keys=True).encode("utf-8"))
                   for key, record in run.catalog_records()]
        producer.flush()
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close()
    return len(futures)
