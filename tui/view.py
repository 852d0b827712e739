"""What the UI shows at one moment (RunView) and the pieces it is made of, read by tui/reader.py."""

from __future__ import annotations

from dataclasses import dataclass

from phasegate.floor.states import FINISHED_SESSION_STATES
from phasegate.journal.snapshot import GateView, PhaseView, RunSnapshot

Interval = tuple[float, float | None]


@dataclass(frozen=True)
class FeedLine:
    """One entry of the live log: `n` orders entries across reads, `ts` is when it was written (None: unknown)."""

    n: int
    ts: float | None
    text: str


@dataclass(frozen=True)
class MetricSeries:
    """The values one metric of one phase took (its current attempt), oldest first."""

    phase: str
    name: str
    values: tuple[float, ...]

    @property
    def label(self) -> str:
        return f"{self.phase}/{self.name}"


@dataclass(frozen=True)
class LogTail:
    """The end of a phase log: its size when read and its lines with the time each was written."""

    size: int
    lines: tuple[tuple[float | None, str], ...]


def overlap(start: float, end: float, pauses: tuple[Interval, ...], now: float) -> float:
    """Seconds of [start, end] spent in the paused intervals (an open one lasts until `now`)."""
    return sum(max(0.0, min(end, p_end if p_end is not None else now) - max(start, p_start))
               for p_start, p_end in pauses)


@dataclass(frozen=True)
class RunView:
    """What the UI shows at one moment: the run snapshot, the latest feed entries and the clock."""

    snapshot: RunSnapshot
    feed: tuple[FeedLine, ...]
    now: float
    pauses: tuple[Interval, ...] = ()
    """When the session was paused, from its session_state events (the last one may still be open)."""
    metrics: tuple[MetricSeries, ...] = ()
    last_heard: float | None = None
    """The time of the newest journal event: the last sign of life of a controller that is gone."""

    @property
    def current_phase(self) -> PhaseView | None:
        """The running phase, else the next one to run, else the last one."""
        phases = self.snapshot.phases
        running = next((p for p in phases if p.state == "running"), None)
        upcoming = next((p for p in phases if p.state != "passed"), None)
        return running or upcoming or (phases[-1] if phases else None)

    @property
    def pending_gates(self) -> tuple[GateView, ...]:
        """Gates waiting for an operator."""
        return tuple(g for g in self.snapshot.gates if g.status == "pending")

    @property
    def finished(self) -> bool:
        """True when the session reached an end state (completed, stopped, failed)."""
        return self.snapshot.state in FINISHED_SESSION_STATES

    @property
    def controller_gone(self) -> bool:
        """The journal says running but no controller runs it (a crash, a kill, a lost pod): `r` resumes."""
        return self.snapshot.state == "running" and not self.snapshot.controller_live

    @property
    def clock_end(self) -> float:
        """Where timers stop: the end of a finished run, the last sign of life of a dead one, else now."""
        if self.finished:
            return self.snapshot.updated_at
        if self.controller_gone:
            return self.last_heard if self.last_heard is not None else self.snapshot.updated_at
        return self.now

    def active_s(self, start: float, end: float | None = None) -> float:
        """Seconds from `start` to `end` (default: where timers stop) less the time the session was paused."""
        end = self.clock_end if end is None else end
        return max(0.0, end - start - overlap(start, end, self.pauses, self.clock_end))

    @property
    def elapsed_s(self) -> float:
        """Time the run has been working: up to its end or its controller's last sign of life, pauses left out."""
        return self.active_s(self.snapshot.created_at)

    def phase_elapsed(self, phase: PhaseView) -> float | None:
        """How long a phase ran, or has run so far, pauses left out; None before it started."""
        if phase.started_at is None or phase.state == "pending":
            return None
        return self.active_s(phase.started_at, phase.ended_at)

    def phase_word(self, phase: PhaseView) -> str:
        """A phase's state as shown: a running phase of a paused run is paused, of a dead controller lost."""
        if phase.state == "running" and self.controller_gone:
            return "lost"
        if phase.state == "running" and self.snapshot.state == "paused":
            return "paused"
        return phase.state

    def phase_eta(self, phase: PhaseView) -> float | None:
        """Seconds a running phase still needs at its rate so far (None without progress or while it is not moving)."""
        if self.phase_word(phase) != "running" or not phase.progress or phase.progress[0] <= 0:
            return None
        done, total = phase.progress
        elapsed = self.phase_elapsed(phase) or 0.0
        return max(0.0, elapsed * (total - done) / done)

    @property
    def session_eta(self) -> tuple[float | None, int]:
        """The running phase's ETA and how many phases after it have no estimate yet (then it is a lower bound)."""
        phases = self.snapshot.phases
        running = next((i for i, p in enumerate(phases) if p.state == "running"), None)
        if running is None:
            return None, 0
        return self.phase_eta(phases[running]), sum(1 for p in phases[running + 1:] if p.state == "pending")

    def phase_cost(self, phase: PhaseView) -> float | None:
        """What the ledger has billed to a phase so far."""
        return (self.snapshot.budget.get("per_phase_usd") or {}).get(phase.id)

    @property
    def log_phase(self) -> PhaseView | None:
        """The phase whose log the log view shows: the running one, else the one that started last."""
        phases = self.snapshot.phases
        running = next((p for p in phases if p.state == "running"), None)
        started = [p for p in phases if p.started_at is not None]
        return running or (max(started, key=lambda p: p.started_at) if started else None)
