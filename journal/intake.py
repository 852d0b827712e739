"""How much of what a phase sends the journal keeps: limits per attempt, counts of the rest, held updates.

A phase may send a million valid events as easily as a million bad ones. The journal keeps a
bounded number of each kind per attempt and counts the rest (`events_dropped`); progress and
metric updates are written at most a few times a second, the latest value of each always.
Log lines and metric history are allowed a burst, then a steady rate: a flood is cut short while
a three-hour run that logs once a second keeps every line.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

# A phase's refused events and artifacts: this many warnings per attempt, then only a count.
MAX_WARNINGS_PER_ATTEMPT = 20
# What a phase says (log lines, stop requests): a burst of this many per attempt, then MESSAGES_PER_S.
MESSAGE_BURST = 1000
MESSAGES_PER_S = 2.0
# Metric history: a burst of this many metric events per attempt, then METRIC_EVENTS_PER_S (the metrics
# table keeps every latest value whatever the history keeps).
METRIC_EVENT_BURST = 5000
METRIC_EVENTS_PER_S = 20.0
# Distinct metric names of one attempt; a new name past it is only counted (tables and prompts stay small).
MAX_METRIC_NAMES = 1000
# Progress and metric updates are written at most this often; the latest is held and written next.
UPDATE_INTERVAL_S = 0.25
# A phase's heartbeats reach the journal at most this often (the watchdog sees every one).
TOUCH_INTERVAL_S = 1.0
# While a phase floods, its drop count is journaled at most this often (and before any other event).
DROP_NOTE_INTERVAL_S = 1.0

Key = tuple[str, int]  # (phase, attempt)
Progress = tuple[int, int, str | None]


@dataclass
class Allowance:
    """A token bucket per attempt: `burst` events at once, then `per_s` a second.

    Hand-written: eight lines, where a rate-limiting library would bring its own clock and storage.
    """

    burst: int
    per_s: float
    clock: Callable[[], float] = time.monotonic
    tokens: dict[Key, float] = field(default_factory=dict)
    filled_at: dict[Key, float] = field(default_factory=dict)

    def take(self, key: Key) -> bool:
        """Whether one more event of this attempt is allowed now (and count it when it is)."""
        now = self.clock()
        refill = (now - self.filled_at.get(key, now)) * self.per_s
        tokens = min(float(self.burst), self.tokens.get(key, float(self.burst)) + refill)
        self.filled_at[key] = now
        allowed = tokens >= 1.0
        self.tokens[key] = tokens - 1.0 if allowed else tokens
        return allowed


@dataclass
class Intake:
    """The journal's tally of one controller's phase input: what it kept, what it counted, what it holds."""

    warnings: Counter[Key] = field(default_factory=Counter)
    messages: Allowance = field(default_factory=lambda: Allowance(MESSAGE_BURST, MESSAGES_PER_S))
    metric_events: Allowance = field(default_factory=lambda: Allowance(METRIC_EVENT_BURST, METRIC_EVENTS_PER_S))
    metric_names: dict[Key, set[str]] = field(default_factory=dict)
    dropped: Counter[Key] = field(default_factory=Counter)  # everything not journaled, refused or past a limit
    limited: Counter[Key] = field(default_factory=Counter)  # the valid events among them
    unjournaled: set[Key] = field(default_factory=set)
    noted: dict[Key, float] = field(default_factory=dict)
    progress: dict[Key, Progress] = field(default_factory=dict)
    metrics: dict[Key, dict[str, float | None]] = field(default_factory=dict)
    written_at: float = -math.inf
    touched: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def _within(counter: Counter[Key], key: Key, limit: int) -> bool:
        if counter[key] < limit:
            counter[key] += 1
            return True
        return False

    def take_warning(self, key: Key) -> bool:
        """Whether one more warning of this attempt is journaled."""
        return self._within(self.warnings, key, MAX_WARNINGS_PER_ATTEMPT)

    def take_message(self, key: Key) -> bool:
        """Whether one more log line or stop request of this attempt is journaled."""
        return self.messages.take(key)

    def take_metric_event(self, key: Key) -> bool:
        """Whether one more metric event of this attempt is journaled."""
        return self.metric_events.take(key)

    def take_metric_name(self, key: Key, name: str) -> bool:
        """Whether this attempt may have a metric of this name (one it has, or a new one within the limit)."""
        names = self.metric_names.setdefault(key, set())
        if name in names or len(names) < MAX_METRIC_NAMES:
            names.add(name)
            return True
        return False

    def drop(self, key: Key, *, limited: bool) -> None:
        """Count one event of this attempt that is not journaled."""
        self.dropped[key] += 1
        self.limited[key] += limited
        self.unjournaled.add(key)

    def drop_note_due(self, key: Key) -> bool:
        """Whether this attempt's drop count should be journaled now (at once, then at most once a second)."""
        return time.monotonic() - self.noted.get(key, -math.inf) >= DROP_NOTE_INTERVAL_S

    def drop_notes(self) -> list[tuple[Key, dict[str, int]]]:
        """The drop counts not yet journaled, as event data, marked as journaled."""
        now, notes = time.monotonic(), []
        for key in sorted(self.unjournaled):
            notes.append((key, {"attempt": key[1], "dropped": self.dropped[key], "limited": self.limited[key]}))
            self.noted[key] = now
        self.unjournaled.clear()
        return notes

    def hold_progress(self, key: Key, update: Progress) -> None:
        self.progress[key] = update

    def hold_metric(self, key: Key, name: str, value: float) -> None:
        self.metrics.setdefault(key, {})[name] = value if math.isfinite(value) else None

    def updates_due(self) -> bool:
        """Whether held updates should be written now (the first after a quiet spell is written at once)."""
        return bool(self.progress or self.metrics) and time.monotonic() - self.written_at >= UPDATE_INTERVAL_S

    def take_updates(self) -> tuple[dict[Key, Progress], dict[Key, dict[str, float | None]]]:
        """The held progress and metric updates, handed over once."""
        progress, metrics = self.progress, self.metrics
        self.progress, self.metrics, self.written_at = {}, {}, time.monotonic()
        return progress, metrics

    def touch_due(self, phase: str) -> bool:
        """Whether a heartbeat of this phase should reach the journal now."""
        now = time.monotonic()
        if now - self.touched.get(phase, -math.inf) < TOUCH_INTERVAL_S:
            return False
        self.touched[phase] = now
        return True
