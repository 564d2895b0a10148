"""The intent lifecycle: one transition for every event, and the leader's rules.

Every change of an intent is an *event* (:data:`~.records.IntentEvent`) that raises the
intent's own version by one, sets its state and the schema 1 ``status`` that goes with
the event, and names who decided (``actor``). Discovery makes ``candidate`` intents
(``created`` is always an intent's first event); the leader's rules here activate a
candidate (``rule:activation``: size, growth over a window, judge confidence) and retire
an intent nothing was assigned to for ``retire_after_seconds`` (``rule:idle``); a person's
decisions (:mod:`.decisions`) do the rest. Growth and idleness come from the leader's
:class:`~.volume.VolumeCounter`.

Library: prometheus-client (through :mod:`.metrics`); otherwise the standard library.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from dialin.models import CatalogIntent

from . import metrics
from .records import STATUS_OF_EVENT, dumps, utc_now
from .volume import VolumeCounter
from ..settings import Settings

if TYPE_CHECKING:  # discovery imports transition from here
    from .discovery import Discovery

log = logging.getLogger(__name__)

#: The state an event leads to (other events keep the state).
STATE_AFTER = {"created": "candidate", "activated": "active", "merged": "merged",
               "rejected": "rejected", "retired": "retired"}
ACTIVATION_RULE = "rule:activation"
IDLE_RULE = "rule:idle"


def transition(intent: CatalogIntent, event: str, actor: str, now: str,
               **changes) -> CatalogIntent:
    """``intent`` after ``event``: version + 1, its state and status, the actor, ``changes``."""
    changes.setdefault("state", STATE_AFTER.get(event, intent.state))
    changes["updated_at"] = now
    return replace(intent, event=event, actor=actor, status=STATUS_OF_EVENT[event],
                   version=intent.version + 1, **changes)


def activation_due(intent: CatalogIntent, growth: int, settings: Settings) -> bool:
    """The activation rule: a candidate with ``activation_min_size`` members, at least
    ``activation_min_growth`` new assignments in the window, and judge confidence at or
    above ``activation_min_confidence`` (no confidence given: passes)."""
    s = settings
    confident = (intent.judge_confidence is None
                 or intent.judge_confidence >= s.activation_min_confidence)
    return (intent.state == "candidate" and intent.size >= s.activation_min_size
            and growth >= s.activation_min_growth and confident)


def rule_events(intents: list[CatalogIntent], volume: VolumeCounter, settings: Settings,
                now: float, stamp: str) -> list[CatalogIntent]:
    """The rules' events due now: activations of candidates, retirements of idle intents."""
    out = []
    for intent in intents:
        if not intent.active:
            continue
        growth = (volume.growth(intent.intent_id, settings.activation_window_seconds, now)
                  if intent.state == "candidate" else 0)
        if activation_due(intent, growth, settings):
            out.append(transition(intent, "activated", ACTIVATION_RULE, stamp))
        elif (settings.retire_after_seconds > 0
              and volume.idle_seconds(intent.intent_id, now) >= settings.retire_after_seconds):
            out.append(transition(intent, "retired", IDLE_RULE, stamp))
    return out


def epoch(stamp: str) -> float:
    """UNIX seconds of an ISO timestamp with a ``Z`` (0 when empty)."""
    if not stamp:
        return 0.0
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class LeaderRules:
    """The leader's lifecycle step of every tick (:attr:`.discovery.Discovery.steps`): the
    rules' events, the volume windows that closed (to ``topic_volume``), and the gauges
    of candidates waiting and of the fastest-growing young intent."""

    def __init__(self, discovery: Discovery, volume: VolumeCounter) -> None:
        self.discovery = discovery
        self.volume = volume

    async def __call__(self, now: float) -> int:
        disco, s = self.discovery, self.discovery.settings
        catalog = disco.catalog
        events = rule_events(list(catalog.intents_.values()), self.volume, s, now, utc_now())
        if events:
            await disco.publish_intents(events)
            for intent in events:
                metrics.LIFECYCLE_EVENTS.labels(intent.event).inc()
                log.info("intent %s %s by %s", intent.intent_id, intent.event, intent.actor)
        closed = self.volume.closed(now)
        if closed:
            await disco.publisher.send_all([(s.topic_volume, w.intent_id, dumps(w))
                                            for w in closed])
        candidates = catalog.in_state("candidate")
        metrics.CANDIDATES_WAITING.set(len(candidates))
        metrics.CANDIDATE_OLDEST_AGE.set(max((now - epoch(c.created_at) for c in candidates),
                                             default=0.0))
        young = {i.intent_id for i in catalog.intents_.values()
                 if i.created_at and now - epoch(i.created_at) <= 86400.0}
        metrics.NEW_INTENT_WINDOW_MAX.set(self.volume.last_window_max(young, now))
        return len(events)
