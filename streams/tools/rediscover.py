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

The review decisions (issue 15) apply through :func:`review_decisions`, which returns
none until decisions exist. Every judge question and its verdict is kept
(:class:`VerdictRecorder`), so ``--explain`` shows what made an intent. The diff against
the live catalog matches each replayed intent's members with the live catalog's own
open-set rule (:meth:`~dialin.models.IntentCatalog.match`).

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

def review_decisions(settings: Settings) -> list[Any]:
    """The review decisions to apply to a replay, as they stand now.

    The hook for issue 15 (topic ``intent-decisions``): none yet, so a replay is the
    engine's run alone. When decisions exist this returns them, latest per intent, and
    :meth:`Rediscovery.document` applies them.
    """
    return []


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
    decisions: list[Any]
    X: np.ndarray = field(repr=False)
    llm: dict | None = None

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
                    "decisions_applied": len(self.decisions)},
            "input": {"records": u.records, "utterances": len(u.ids), "rejected": u.rejected,
                      "duplicates": u.duplicates, "unassigned": len(u.ids) - assigned},
            "intents": intents,
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
        if rows is None:
            known = ", ".join(i.intent_id for i in self.intents[:5])
            raise RediscoverError(f"--explain {intent_id}: no such intent in this run "
                                  f"({len(self.intents)} intents{': ' + known if known else ''})")
        intent = next(i for i in self.intents if i.intent_id == intent_id)
        mine = set(rows)
        lines = [f"{intent.intent_id} {intent.label!r} [{intent.role or '-'}] size {intent.size}"]
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
               responses: Any = None) -> Rediscovery:
    """Replay ``span``: read, embed, fit once per role, and the catalog that makes.

    ``embedder`` defaults to the service's (:func:`~..factory.build_service_embedder`),
    ``responses`` to the deployment's response log (:func:`~..factory.build_response_log`).
    """
    from .. import factory

    utterances = read_range(settings, span)
    embedder = embedder if embedder is not None else factory.build_service_embedder(settings)
    if responses is None:
        responses = factory.build_response_log(settings)
    spend = factory.build_spend_cap(settings, per_run=True)
    judge = factory.build_judge(settings, spend=spend, responses=responses)
    namer = factory.build_namer(settings, spend=spend, responses=responses)
    recorder = VerdictRecorder(judge)
    redactor = factory.build_redactor(settings)
    decisions = review_decisions(settings)
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
    intents = _distinct_labels(sorted(intents, key=lambda i: (-i.size, i.intent_id)))
    return Rediscovery(settings, span, utterances, embedder.name, judge.backend, namer.backend,
                       factory.prompt_version(judge, namer), intents, members, recorder.questions,
                       decisions, X, factory.llm_stats(judge, namer))


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
    """One line of the diff: ``same``, ``matches``, ``new`` or ``live-only``."""

    kind: str
    intent_id: str
    text: str


def diff_live(run: Rediscovery, snapshot: Any) -> list[DiffLine]:
    """The replay against the live catalog (:func:`~..catalog.read_live`'s snapshot).

    A replayed intent is ``same`` when the live catalog has its id (the same members),
    else ``matches`` the live intent the open-set rule gives most of its members when
    that is at least half of them, else ``new``; an active live intent that none
    matches is ``live-only``.
    """
    from dialin.models import IntentCatalog

    s = run.settings
    live = {r["intent_id"]: r for r in snapshot.active()}
    catalog = IntentCatalog(embedder=run.embedder, match_threshold=s.match_threshold,
                            n_neighbors=s.match_neighbors, vote_share=s.match_vote_share)
    if snapshot.embedder and snapshot.embedder != run.embedder:
        raise RediscoverError(f"the live catalog is in embedding space {snapshot.embedder!r}, "
                              f"this replay in {run.embedder!r}: set the service's DIALIN_EMBEDDER")
    for record in live.values():
        if record.get("centroid"):
            catalog.apply_record(record)
    lines, seen = [], set()
    for intent in run.intents:
        head = f"{intent.intent_id} {intent.label!r} [{intent.role or '-'}] size {intent.size}"
        if intent.intent_id in live:
            seen.add(intent.intent_id)
            lines.append(DiffLine("same", intent.intent_id, f"same      {head}"))
            continue
        rows = run.members[intent.intent_id]
        ids, _ = catalog.match(run.X[rows], [intent.role] * len(rows)) if len(catalog) \
            else ([None] * len(rows), None)
        votes = Counter(i for i in ids if i is not None)
        best, k = min(votes.items(), key=lambda kv: (-kv[1], kv[0])) if votes else (None, 0)
        if best is not None and 2 * k >= len(rows):
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
