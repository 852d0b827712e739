"""The budget meter: the controller's GPU time billed at an hourly rate into the ledger."""

from __future__ import annotations

from phasegate.floor.states import SessionState

FLUSH_EVERY_S = 10.0


class BudgetMeter:
    """Bills the controller's wall time at the hourly rate, in ledger lines written every few seconds."""

    def __init__(self, journal, rate: float | None, clock) -> None:
        self.journal = journal
        self.rate = rate
        self.clock = clock
        self._since = clock()
        self._pending = 0.0
        self._unflushed_since = self._since

    def bill_pause(self, *, released: bool, billed_until: float | None = None) -> None:
        """A pod bills while it waits for an operator, unless it was released (stopped, session/pod.py); from
        `billed_until` on when the start of the wait is billed already."""
        run = self.journal.run()
        if run.state == SessionState.PAUSED and not released and self.rate:
            waited = max(0.0, self.clock() - max(run.updated_at, billed_until or 0.0))
            self.journal.record_cost("gpu (paused)", None, waited * self.rate / 3600, "waiting for an operator",
                                     seconds=waited)

    def tick(self, phase: str | None, *, force: bool = False) -> None:
        """Accrue time since the last tick; write it to the ledger every FLUSH_EVERY_S (or when forced)."""
        now = self._accrue()
        if force or now - self._unflushed_since >= FLUSH_EVERY_S:
            self._flush("gpu", phase, "GPU time", now)

    def settle(self, note: str) -> None:
        """Write what accrued up to now as one paused line: the pod is about to stop billing (session/pod.py)."""
        self._flush("gpu (paused)", None, note, self._accrue())

    def _accrue(self) -> float:
        now = self.clock()
        self._pending += max(0.0, now - self._since)
        self._since = now
        return now

    def _flush(self, kind: str, phase: str | None, note: str, now: float) -> None:
        if self.rate is not None and self._pending > 0:
            self.journal.record_cost(kind, phase, self._pending * self.rate / 3600, note, seconds=self._pending)
            self._pending, self._unflushed_since = 0.0, now

    def unbilled_usd(self) -> float:
        """What accrued since the last ledger line (so a stop at 100 % is not late by a flush interval)."""
        return (self._pending + max(0.0, self.clock() - self._since)) * (self.rate or 0.0) / 3600
