"""Where an export reads the catalog from: the service's ``dialin-catalog`` topic, or a
``dialin discover`` output file.

The live catalog is read the way every worker reads it at start (see
:mod:`dialin.streams.service.buffer`): the compacted topic from the beginning, each
record applied to an :class:`~dialin.models.IntentCatalog` (a tombstone removes its
entry, an older version never overwrites a newer one, a record from another embedding
space is refused), with a group-less consumer that commits nothing
(:func:`dialin.streams.tools.watch.read_topic`), so exporting never disturbs the
workers. The catalog decides which entries are current; each is exported as the record
that made it, field for field (the catalog itself keeps centroids re-normalised, and
normalising twice moves the last bits, so a backup of the catalog's view would not give
back the same records). A record a worker would skip (not a JSON object, a field
missing) is skipped here too and counted.

A ``discover`` file is checked field by field (pydantic): its intents certified Bad are
not intents and are left out; the others become catalog records of version 1 without
vectors (a file run has no catalog).

Libraries: kafka-python (through ``read_topic``), pydantic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from dialin.models import EmbeddingSpaceError, IntentCatalog

from ._errors import CatalogError, first_error, read_text
from ..settings import Settings

#: The statuses of an active intent (what :attr:`dialin.models.CatalogIntent.active` says).
ACTIVE_STATUSES = ("created", "updated")


@dataclass(frozen=True)
class Snapshot:
    """A catalog as an export reads it.

    ``records`` are catalog records (:meth:`dialin.models.CatalogIntent.to_record`
    form; ``centroid``, ``exemplars`` and ``threshold`` only where vectors exist), every
    status, ordered by intent id. ``embedder`` names their embedding space, ``source``
    says where they were read, ``skipped`` counts records a worker would skip too.
    """

    records: list[dict]
    embedder: str
    source: str
    skipped: int = 0

    def active(self) -> list[dict]:
        """The records of active intents (``created`` or ``updated``, and state ``active``:
        a candidate nobody approved yet is not exported; a record from before states is)."""
        return [r for r in self.records if r.get("status") in ACTIVE_STATUSES
                and r.get("state", "active") == "active"]


def read_live(settings: Settings, wait_for_topic: float = 1.0) -> Snapshot:
    """The service's catalog now, read back from ``settings.topic_catalog`` (a topic that
    does not appear within ``wait_for_topic`` seconds is an empty catalog)."""
    from ..tools.watch import read_topic

    source = f"topic {settings.topic_catalog} at {settings.kafka_bootstrap}"
    records = read_topic(settings, settings.topic_catalog, wait_for_topic=wait_for_topic)
    catalog: IntentCatalog | None = None
    raw: dict[tuple[str, int], dict] = {}  # the record that made each (id, version)
    skipped = 0
    for record in records:
        if record.value is None:
            if catalog is not None:
                catalog.apply_record(None, record.key_str)
            continue
        data = record.data
        if not isinstance(data, dict) or not isinstance(data.get("embedder"), str):
            skipped += 1
            continue
        if catalog is None:
            catalog = IntentCatalog(embedder=data["embedder"])
        try:
            catalog.apply_record(data)
        except EmbeddingSpaceError as exc:
            raise CatalogError(f"{source}: {exc}") from None
        except (KeyError, TypeError, ValueError):
            skipped += 1
            continue
        raw[(data["intent_id"], int(data.get("version", 1)))] = data
    if catalog is None:
        return Snapshot([], "", source, skipped)
    items = sorted(catalog.intents_.values(), key=lambda i: i.intent_id)
    return Snapshot([raw[(i.intent_id, i.version)] for i in items], catalog.embedder, source,
                    skipped)


class _DiscoverIntent(BaseModel):
    """One intent of a ``dialin discover`` output (the fields an export needs)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    label: str
    role: str | None = None
    size: int
    examples: list[str]
    verdict: str | None = None
    confidence: float | None = None


class _DiscoverMetadata(BaseModel):
    model_config = ConfigDict(extra="ignore")

    embedder: str
    created_at: str = ""
    judge: str = ""


class _DiscoverDocument(BaseModel):
    model_config = ConfigDict(extra="ignore")

    metadata: _DiscoverMetadata
    intents: list[_DiscoverIntent]


def read_discover(path: str | Path) -> Snapshot:
    """The intents of a ``dialin discover`` output file, as catalog records without vectors."""
    path = Path(path)
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{path}:{exc.lineno}: not JSON ({exc.msg})") from None
    try:
        doc = _DiscoverDocument.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(f"{path}: not a `dialin discover` output: {first_error(exc)}") from None
    meta = doc.metadata
    records = [{
        "intent_id": it.id, "label": it.label, "role": it.role, "version": 1,
        "status": "created", "merged_into": None, "split_from": None, "size": it.size,
        "examples": list(it.examples), "created_at": meta.created_at,
        "updated_at": meta.created_at,
        "judge": {"backend": meta.judge, "confidence": it.confidence},
        "embedder": meta.embedder,
    } for it in sorted(doc.intents, key=lambda i: i.id) if it.verdict != "Bad"]
    return Snapshot(records, meta.embedder, str(path))
