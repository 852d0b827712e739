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

    def bill_pause(self, *, released: bool) -> None:
        """A pod bills while it waits for an operator, unless the session file says it was released."""
        run = self.journal.run()
        if run.state == SessionState.PAUSED and not released and self.rate:
            waited = max(0.0, self.clock() - run.updated_at)
            self.journal.record_cost("gpu (paused)", None, waited * self.rate / 3600, "waiting for an operator",
                                     seconds=waited)

    def tick(self, phase: str | None, *, force: bool = False) -> None:
        """Accrue time since the last tick; write it to the ledger every FLUSH_EVERY_S (or when forced)."""
        now = self.clock()
        self._pending += max(0.0, now - self._since)
        self._since = now
        if self.rate is not None and self._pending > 0 and (force or now - self._unflushed_since >= FLUSH_EVERY_S):
            self.journal.record_cost("gpu", phase, self._pending * self.rate / 3600, "GPU time", seconds=self._pending)
            self._pending, self._unflushed_since = 0.0, now

    def unbilled_usd(self) -> float:
        """What accrued since the last ledger line (so a stop at 100 % is not late by a flush interval)."""
        return (self._pending + max(0.0, self.clock() - self._since)) * (self.rate or 0.0) / 3600
