"""The checks made while a phase runs: GPU telemetry, out-of-memory, stalls, budget and A/B discrepancy.

Each check returns an `Interruption` (its trigger, and a reason `"<trigger>: <what happened>"`) and
leaves its evidence behind for the incident report; the controller ends the phase's process group
when one fires.
"""

from __future__ import annotations

import time
from typing import Any

from phasegate.journal.events import EventKind
from phasegate.session.budget import BudgetMeter
from phasegate.session.gpu import GpuReader, GpuSample, process_group_pids
from phasegate.session.runner import Interruption, Trigger
from phasegate.session.spec import PhaseSpec, SessionInfo

SAMPLE_EVERY_S = 1.0
DOWNSAMPLE_AFTER_S = 600.0  # past ten minutes a run keeps one journaled sample in ten (peaks are kept exactly)


class Watchdog:
    """Watches one phase at a time; the controller calls `check` on every tick."""

    def __init__(self, journal, info: SessionInfo, reader: GpuReader, meter: BudgetMeter) -> None:
        self.journal = journal
        self.info = info
        self.reader = reader
        self.meter = meter
        self.evidence: dict[str, Any] = {}
        self._started = time.monotonic()
        self._samples = 0
        self._warned = False
        self._reset(None, None, None)

    def _reset(self, phase: str | None, pgid: int | None, stall_s: float | None) -> None:
        self.phase, self.pgid, self.stall_s = phase, pgid, stall_s
        self.peak_mb: float | None = None
        self._full_samples = 0
        self._last_sample = 0.0
        self._last_activity = time.monotonic()
        self._pending: Interruption | None = None

    def start(self, phase: PhaseSpec, pgid: int) -> None:
        """Begin watching a phase's process group."""
        self._reset(phase.id, pgid, phase.stall_timeout_s or self.info.stall_timeout_s)
        self.evidence = {}

    def activity(self) -> None:
        """The phase said something (an event): it is not stalled."""
        self._last_activity = time.monotonic()

    def metric(self, name: str, value: float) -> None:
        """A/B discrepancy above the session's limit stops the session (the reference's early-stop rule)."""
        if name == "ab_discrepancy" and value > self.info.ab_discrepancy_max:
            self.evidence = {"ab_discrepancy": value, "limit": self.info.ab_discrepancy_max}
            self._pending = Interruption(Trigger.AB_DISCREPANCY,
                                         f"ab_discrepancy: {value:.3%} > {self.info.ab_discrepancy_max:.1%}")

    def check(self, last_output: float) -> Interruption | None:
        """Sample the GPU, bill time, and return an interruption if anything is wrong."""
        self._last_activity = max(self._last_activity, last_output)
        self.meter.tick(self.phase)
        return self._pending or self._sample() or self._budget() or self._stall()

    def finish(self) -> float | None:
        """End the phase's watch: bill what accrued and return its peak GPU memory (MiB)."""
        self.meter.tick(self.phase, force=True)
        peak = self.peak_mb
        self._reset(None, None, None)
        return peak

    # -- the checks ----------------------------------------------------------------------------
    def _sample(self) -> Interruption | None:
        now = time.monotonic()
        if now - self._last_sample < SAMPLE_EVERY_S:
            return None
        self._last_sample = now
        pids = process_group_pids(self.pgid) if self.pgid else set()
        samples = self.reader.read(pids)
        self._samples += 1
        if now - self._started < DOWNSAMPLE_AFTER_S or self._samples % 10 == 0:
            self.journal.record_gpu_samples(self.phase, samples)
        return self._oom(samples)

    def _oom(self, samples: list[GpuSample]) -> Interruption | None:
        used = [s for s in samples if s.available and s.mem_used_mb is not None]
        for sample in used:
            self.peak_mb = max(self.peak_mb or 0.0, sample.proc_mem_mb or sample.mem_used_mb)
        full = [s for s in used if (s.mem_fraction or 0) >= self.info.oom_memory_fraction]
        self._full_samples = self._full_samples + 1 if full else 0
        if self._full_samples >= self.info.oom_samples:
            gpu = full[0]
            self.evidence = {"gpu": gpu.gpu, "mem_used_mb": gpu.mem_used_mb, "mem_total_mb": gpu.mem_total_mb,
                             "samples_at_or_above": self._full_samples, "threshold": self.info.oom_memory_fraction}
            return Interruption(Trigger.OOM, f"oom: GPU {gpu.gpu} memory at {gpu.mem_fraction:.0%} for "
                                f"{self._full_samples} samples (limit {self.info.oom_memory_fraction:.0%})")
        return None

    def _budget(self) -> Interruption | None:
        allocation = self.info.budget_usd
        if allocation is None:
            return None
        spent = self.journal.spent_usd()
        spent += self.meter.unbilled_usd()
        if not self._warned and spent >= self.info.budget_warn_at * allocation:
            self._warned = True
            self.journal.append_event(EventKind.BUDGET_WARNING, self.phase,
                                      {"spent_usd": round(spent, 4), "allocation_usd": allocation})
        if spent >= allocation:
            self.evidence = {"spent_usd": round(spent, 4), "allocation_usd": allocation}
            return Interruption(Trigger.BUDGET_EXHAUSTED, f"budget_exhausted: spent ${spent:.2f} of ${allocation:.2f}")
        return None

    def _stall(self) -> Interruption | None:
        if self.stall_s is None:
            return None
        silent = time.monotonic() - self._last_activity
        if silent >= self.stall_s:
            self.evidence = {"silent_s": round(silent, 1), "stall_timeout_s": self.stall_s}
            return Interruption(Trigger.STALL,
                                f"stall: no event and no output for {silent:.0f} s (limit {self.stall_s:g} s)")
        return None
