"""Per-intent volume: assignment counts in tumbling windows, kept by the leader.

The leader follows ``intent-assignments`` (every worker's matches and its own
discoveries) with a :class:`~.buffer.TopicFollower` and counts each utterance's first
assignment (version 1) by intent into tumbling windows of ``volume_window_seconds``;
when a window closes it publishes one record per intent to ``intent-volume`` (key =
intent_id). The same counts drive the lifecycle rules (:mod:`.lifecycle`: growth over
the activation window, idleness before retirement) and two bounded gauges (candidates
waiting and the oldest one's age; the largest window count of a young intent) that the
alert ``DialinNewIntentGrowingFast`` reads: no per-intent label reaches ``/metrics``.

Why counts in the leader and not faust's windowed tables: tables need changelog recovery,
which can stall (faust-streaming#432), and cannot be written inside ``take()``
(faust-streaming#497). The assignments topic is already durable: a new leader reads it
back, and the record timestamps are not needed because what was counted before a crash
is not counted again (the history read back on start sets only "last seen", never a
window), so a kill loses at most the open windows' counts, and never counts twice.

Library: none beyond the standard library (json).
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Callable

from pydantic import BaseModel


class WindowCount(BaseModel):
    """Topic ``intent-volume``, key = intent_id: utterances first assigned to the intent
    in the tumbling window [window_start, window_end) (UNIX seconds)."""

    intent_id: str
    window_start: float
    window_end: float
    count: int


class VolumeCounter:
    """Counts of first assignments per intent and window; ``live()`` says whether a record
    read now is new traffic (False while the follower replays the topic's history)."""

    def __init__(self, window_seconds: float, keep_seconds: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.window_seconds = window_seconds
        self.keep_seconds = keep_seconds
        self.clock = clock
        self.live: Callable[[], bool] = lambda: True
        self.started = clock()
        #: intent_id -> window start -> first assignments (indexed by intent: the rules ask
        #: per intent every tick).
        self.counts: dict[str, dict[float, int]] = defaultdict(lambda: defaultdict(int))
        self.published: set[tuple[str, float]] = set()
        self.last_seen: dict[str, float] = {}

    def window_of(self, t: float) -> float:
        return math.floor(t / self.window_seconds) * self.window_seconds

    def observe(self, key: bytes | None, value: bytes | None) -> None:
        """The follower's callback: one assignment record (tombstones are ignored)."""
        if value is None:
            return
        rec = json.loads(value)
        intent_id = rec.get("intent_id")
        if not intent_id:
            return  # a retraction
        now = self.clock()
        self.last_seen[intent_id] = now
        if int(rec.get("version", 1)) == 1 and self.live():
            self.counts[intent_id][self.window_of(now)] += 1

    def growth(self, intent_id: str, seconds: float, now: float) -> int:
        """First assignments to ``intent_id`` in the windows that started within ``seconds``."""
        since = now - seconds
        windows = self.counts.get(intent_id, {})
        return sum(n for start, n in windows.items() if start + self.window_seconds > since)

    def idle_seconds(self, intent_id: str, now: float) -> float:
        """Seconds since an assignment to ``intent_id`` was last read (since the counter
        started when none was: a new leader never retires an intent early)."""
        return now - self.last_seen.get(intent_id, self.started)

    def closed(self, now: float) -> list[WindowCount]:
        """Windows that ended by ``now`` and were not published yet; forgets old ones."""
        out = []
        for iid, windows in self.counts.items():
            for start, n in windows.items():
                end = start + self.window_seconds
                if end <= now and (iid, start) not in self.published:
                    out.append(WindowCount(intent_id=iid, window_start=start, window_end=end,
                                           count=n))
                    self.published.add((iid, start))
            for start in [w for w in windows if w + self.window_seconds < now - self.keep_seconds]:
                del windows[start]
                self.published.discard((iid, start))
        out.sort(key=lambda w: (w.window_start, w.intent_id))
        return out

    def last_window_max(self, intent_ids: set[str], now: float) -> int:
        """The largest count among ``intent_ids`` in the last closed window."""
        start = self.window_of(now) - self.window_seconds
        return max((self.counts[iid].get(start, 0) for iid in intent_ids if iid in self.counts),
                   default=0)
