"""Seed or restore the service's catalog from an import file, as the discovery leader would.

Why it publishes instead of writing a file: the catalog *is* the compacted
``dialin-catalog`` topic, which every worker reads at start and follows afterwards
(:mod:`dialin.streams.service.buffer`). So an import publishes exactly what the leader
publishes for a new intent, in the leader's order, each step acknowledged by the broker
before the next (:mod:`dialin.streams.service.discovery`, "publish"): the catalog
records (with centroid, exemplars and threshold), then the ``created`` intent updates.
Running workers pick the intents up within a poll, and match utterances to them from
the next one; workers started later read them back at start.

How an intent is made from examples: the examples are embedded with the service's
embedder (:func:`dialin.streams.factory.build_service_embedder`, so the vectors live in
the workers' space), the centroid is their mean, and the exemplars and threshold come
from the discovery leader's own rule (:func:`~..service.discovery.intent_exemplars`).
Published examples and labels are PII-redacted (:func:`dialin.streams.factory.build_redactor`);
the embeddings are of the text as given, as the leader's are. Ids are stable: the
file's id when it names one, else one derived from the role and label
(:func:`dialin.models.new_intent_id`), so importing a file twice changes nothing.

A ``dialin`` backup is restored as it was: ids, labels, roles, statuses, lineage
(``merged_into``, ``split_from``), versions, timestamps, and any field a newer leader
wrote that this version does not know (the record is republished, not rebuilt); its
vectors are kept when they are in the service's embedding space and rebuilt from the
examples otherwise.

Never overwritten: an intent the live catalog already holds at the same or a newer
version (the catalog's own rule, :meth:`dialin.models.IntentCatalog.put`; a compacted
topic keeps the *last* record, so publishing an older one would win there). Refused: a
new intent whose label an active intent of its role already has (two intents with one
name confuse every reader; rename one in the file).

Libraries: numpy, kafka-python (the producer of
:func:`dialin.streams.tools.replay.make_producer`), aiokafka (topic creation,
:func:`dialin.streams.service.app.ensure_topics`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dialin.models import CatalogIntent, Embedder, IntentCatalog, Redactor, new_intent_id

from ._errors import CatalogError
from ._parse import Seed
from ._phrases import PUBLISHED_EXAMPLES, training_phrases
from ._sources import ACTIVE_STATUSES, Snapshot
from ..settings import Settings


@dataclass
class ImportPlan:
    """What an import will publish, and what it leaves alone."""

    intents: list[CatalogIntent] = field(default_factory=list)
    #: The catalog record of each restored entry: the backup's, every field kept (also
    #: those this version does not know), vectors rebuilt when they were from another
    #: space; a new intent is published as ``intent.to_record``.
    records: dict[str, dict] = field(default_factory=dict)
    restored: int = 0   # backup entries kept with their own vectors
    embedded: int = 0   # entries whose vectors were computed from their examples
    skipped: list[str] = field(default_factory=list)  # ids already in the catalog, as new


def _label_key(role: str | None, label: str) -> tuple[str | None, str]:
    return role, " ".join(label.casefold().split())


def _distinct(texts: Sequence[str]) -> list[str]:
    """Texts once each (case and whitespace folded), first occurrence kept."""
    seen, out = set(), []
    for text in texts:
        key = " ".join(text.casefold().split())
        if key and key not in seen:
            seen.add(key)
            out.append(text)
    return out


class CatalogImporter:
    """Plans and publishes the catalog entries of parsed seeds.

    Parameters
    ----------
    settings : Settings
        Kafka, topics, and the ``match_*`` settings of the exemplar rule.
    embedder : Embedder
        The service's embedder (the workers' embedding space).
    redactor : Redactor or None
        Redacts published labels and examples; None publishes them as given.
    default_role : str
        Role of an imported intent whose file names none (``customer``: utterances
        without a role are matched as the customer's).
    """

    def __init__(self, settings: Settings, embedder: Embedder, redactor: Redactor | None = None,
                 default_role: str = "customer") -> None:
        self.settings = settings
        self.embedder = embedder
        self.redactor = redactor
        self.default_role = default_role

    # --- planning ---------------------------------------------------------------------
    def plan(self, seeds: Sequence[Seed], live: Snapshot) -> ImportPlan:
        """The entries to publish for ``seeds`` on top of the ``live`` catalog."""
        from ..service.records import utc_now

        name = self.embedder.name
        if live.records and live.embedder != name:
            raise CatalogError(f"{live.source}: the catalog uses embedder {live.embedder!r} but "
                               f"the service's is {name!r} (DIALIN_EMBEDDER); import with the "
                               "catalog's embedder")
        version_of = {r["intent_id"]: int(r["version"]) for r in live.records}
        out = ImportPlan()
        now = utc_now()
        labels: dict[str, str] = {}
        for seed in seeds:
            intent, record, kept = (self._restored(seed) if seed.record is not None
                                    else (self._created(seed, now), None, False))
            other = labels.setdefault(intent.intent_id, seed.label)
            if other != seed.label:
                raise CatalogError(f"intents {other!r} and {seed.label!r} have one id, "
                                   f"{intent.intent_id}; give each its own in the file")
            if version_of.get(intent.intent_id, 0) >= intent.version:
                out.skipped.append(intent.intent_id)
                continue
            out.intents.append(intent)
            if record is not None:
                out.records[intent.intent_id] = record
            out.restored += kept
            out.embedded += not kept
        self._check_labels(out.intents, live)
        return out

    def _created(self, seed: Seed, now: str) -> CatalogIntent:
        from ..service.discovery import IMPORTED  # a consolidation keeps such intents whole

        role = seed.role or self.default_role
        label = self.redactor.redact_label(seed.label) if self.redactor is not None else seed.label
        intent_id = seed.intent_id or new_intent_id(role, [f"import\x1f{seed.label}"])
        texts = _distinct(seed.examples)
        if not texts:
            raise CatalogError(f"intent {seed.label!r}: no example to embed")
        centroid, exemplars, threshold = self._vectors(texts)
        return CatalogIntent(
            intent_id=intent_id, label=label, role=role, centroid=centroid, size=len(texts),
            examples=tuple(self._published(texts)), version=1, status="created",
            created_at=now, updated_at=now, judge_backend=IMPORTED, exemplars=exemplars,
            threshold=threshold)

    def _restored(self, seed: Seed) -> tuple[CatalogIntent, dict, bool]:
        """A backup entry, the record to publish for it (every field of the backup's kept),
        and whether its own vectors were kept (else they come from its examples)."""
        rec = dict(seed.record or {})
        rec["examples"] = self._published(rec.get("examples", ()))
        if rec.get("centroid") and rec.get("embedder") == self.embedder.name:
            return CatalogIntent.from_record(rec), rec, True
        texts = _distinct(seed.examples)
        if texts:
            centroid, exemplars, threshold = self._vectors(texts)
        elif rec["status"] in ACTIVE_STATUSES:
            raise CatalogError(f"intent {rec['intent_id']}: no vectors for embedder "
                               f"{self.embedder.name!r} and no example to embed")
        else:  # a merged or retired entry: kept for its lineage, never matched
            centroid = np.zeros(self.embedder.encode(["."]).shape[1], np.float32)
            exemplars, threshold = None, None
        judge = rec.get("judge") or {}
        fresh = CatalogIntent(
            intent_id=rec["intent_id"], label=rec["label"], role=rec.get("role"),
            centroid=centroid, size=int(rec["size"]), examples=tuple(rec["examples"]),
            version=int(rec["version"]), status=rec["status"], merged_into=rec.get("merged_into"),
            split_from=rec.get("split_from"), created_at=rec.get("created_at", ""),
            updated_at=rec.get("updated_at", ""), judge_backend=judge.get("backend", ""),
            judge_confidence=judge.get("confidence"), exemplars=exemplars,
            threshold=threshold).to_record(self.embedder.name)
        for stale in ("exemplars", "threshold"):  # the other space's, when it had them
            rec.pop(stale, None)
        record = {**rec, **fresh, "judge": {**judge, **fresh["judge"]}}
        return CatalogIntent.from_record(record), record, False

    def _published(self, examples: Sequence[str]) -> list[str]:
        return training_phrases(examples, redactor=self.redactor, limit=PUBLISHED_EXAMPLES)

    def _vectors(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, float]:
        """Centroid, exemplars and threshold of an intent whose members are ``texts``."""
        X = np.asarray(self.embedder.encode(texts), dtype=np.float32)
        exemplars, threshold = self._exemplar_rule(X)
        return X.mean(axis=0), exemplars, threshold

    def _exemplar_rule(self, X: np.ndarray) -> tuple[np.ndarray, float]:
        """The discovery leader's exemplar rule (the same settings, the same sample)."""
        from ..service.discovery import intent_exemplars

        return intent_exemplars(self.settings, X)

    def _check_labels(self, intents: list[CatalogIntent], live: Snapshot) -> None:
        mine = {i.intent_id for i in intents}
        taken = {_label_key(r.get("role"), r["label"]): r["intent_id"] for r in live.active()
                 if r["intent_id"] not in mine}
        for intent in sorted(intents, key=lambda i: i.intent_id):
            if not intent.active:
                continue
            key = _label_key(intent.role, intent.label)
            other = taken.setdefault(key, intent.intent_id)
            if other != intent.intent_id:
                raise CatalogError(f"label {intent.label!r} ({intent.role}) is already intent "
                                   f"{other}'s; rename one of them in the file")

    # --- publishing -------------------------------------------------------------------
    def publish(self, plan: ImportPlan) -> None:
        """Catalog records, then intent updates, each batch acknowledged (acks=all)."""
        from ..service.app import ensure_topics
        from ..service.discovery import update_of
        from ..service.records import dumps
        from ..tools.replay import make_producer

        intents = plan.intents
        if not intents:
            return
        s = self.settings
        asyncio.run(ensure_topics(s))
        catalog = [(s.topic_catalog, i.intent_id, json.dumps(
            plan.records.get(i.intent_id) or i.to_record(self.embedder.name),
            ensure_ascii=False).encode("utf-8")) for i in intents]
        updates = [(s.topic_updates, i.intent_id, dumps(update_of(i))) for i in intents]
        producer = make_producer(s, acks="all")
        try:
            for batch in (catalog, updates):
                futures = [producer.send(topic, key=key.encode("utf-8"), value=value)
                           for topic, key, value in batch]
                producer.flush()
                for future in futures:
                    future.get(timeout=30)
        finally:
            producer.close()
