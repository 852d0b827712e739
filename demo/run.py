"""`phasegate demo`: the reference workflow end to end on this machine, with a model trained here.

The demo trains (once, then caches) a tiny base model on a bundled corpus, writes a session file
and a small `scripts/` tree into a workspace folder beside the run folder (`demo_session`), and
runs that session through the real controller: versions, a preflight policy gate, a
contamination-checked load, the baseline, a pilot with QC gates and a review gate answered by the
rule reviewer CLI, scale on two shards, a held-out test set, a short SFT and a paired evaluation
with its `stat` gate. Whatever the tiny model's data earns is what the demo shows.

`fault` runs the same session with one fault injected: `oom` (a simulated GPU at 99 % memory
while `sft` runs), `budget` (money runs out mid-session), `contamination` (a tokenizer that makes
"Response:" a special token), `reviewer-hang` (the reviewer never answers) and `stall` (the `sft`
process is frozen with SIGSTOP, so it stops reporting).

On a terminal the controller runs headless in its own process (`python -m phasegate.demo.run`)
and the TUI watches it, as with `phasegate run`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from phasegate.demo.session_file import FAULT_PHASES, session_text, write_workspace
from phasegate.floor.errors import ExitCode, InvalidInput
from phasegate.session.gpu import GpuReader, GpuSample, default_reader

if TYPE_CHECKING:  # the model module imports torch's world lazily; its types are enough here
    from phasegate.demo.model import BuildProgress, Progress

FAULTS = tuple(FAULT_PHASES)
Say = Callable[[str], None]
# A front end's view of the model's training: entered before it starts, left when it ends or fails.
ProgressView = contextlib.AbstractContextManager["Progress"]
PLAIN_EVERY_S = 5.0  # a line every few seconds: a log, not a flood
JSON_EVERY_S = 1.0


class FaultInjector:
    """Stands where the GPU reader stands: the controller asks it for samples once a second while
    a phase runs, with that phase's processes; in the target phase it injects the fault."""

    SIMULATED = "NVIDIA H100 80GB HBM3 (simulated)"

    def __init__(self, journal: Any, fault: str, target: str | None, real: GpuReader) -> None:
        self.journal, self.fault, self.target, self.real = journal, fault, target, real
        self.frozen = False

    def _running(self) -> str | None:
        return self.journal.running_phase()

    def read(self, pids: Iterable[int]) -> list[GpuSample]:
        pids = sorted(pids)
        hit = bool(pids) and self._running() == self.target
        if self.fault == "stall" and hit and not self.frozen:
            os.killpg(os.getpgid(pids[0]), signal.SIGSTOP)  # a hung phase: alive, silent, stuck
            self.frozen = True
        if self.fault == "oom":
            used = 80_800 if hit else 21_500
            return [GpuSample(gpu=0, available=True, name=self.SIMULATED, mem_used_mb=used,
                              mem_total_mb=81_559, util_pct=100 if hit else 35, temp_c=71, power_w=640)]
        return self.real.read(pids)


def run_demo(run_dir: Path | None = None, *, headless: bool = False, tui: bool = False, fault: str | None = None,
             cache_dir: Path | None = None, phases: Sequence[str] | None = None,
             fault_phase: str | None = None, say: Say | None = None, progress: ProgressView | None = None) -> int:
    """Build (or reuse) the demo model, write the workspace, run the session; returns the exit code.
    The training's progress goes to `progress`, else to stdout as JSON lines (headless) or to `say`."""
    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    if progress is None:
        progress = contextlib.nullcontext(progress_json_lines(sys.stdout) if headless else progress_lines(say))
    opened = prepare_demo(run_dir, fault=fault, cache_dir=cache_dir, phases=phases, fault_phase=fault_phase, say=say,
                          progress=progress)
    target = fault_phase or FAULT_PHASES.get(fault or "")
    if tui:
        opened.journal.close()
        code = _watch_in_tui(opened.run_dir.root, fault, target)
        opened = _reopen(opened.run_dir.root)
    else:
        code = _control(opened, fault, target, headless=headless)
    _summary(opened, ExitCode(code), say)
    return int(code)


def prepare_demo(run_dir: Path | None, *, fault: str | None, cache_dir: Path | None, phases: Sequence[str] | None,
                 fault_phase: str | None, say: Say, progress: ProgressView | None = None) -> Any:
    """The trained model, the workspace and the created run (an `OpenRun`), ready to execute."""
    from phasegate.demo.model import (
        build_contaminated_model,
        build_demo_model,
        default_cache_dir,
    )
    from phasegate.session.runs import create_run
    from phasegate.session.spec import load_spec

    if fault is not None and fault not in FAULTS:
        raise InvalidInput(f"unknown fault {fault!r}; choose one of: {', '.join(FAULTS)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the demo never downloads; its phases inherit this
    try:
        with progress or contextlib.nullcontext(lambda _: None) as report:
            model_dir = build_demo_model(cache_dir, log=say, progress=report)
        if fault == "contamination":
            model_dir = build_contaminated_model(model_dir)
    except OSError as error:
        where = cache_dir or default_cache_dir()
        raise InvalidInput(f"cannot build the demo model in its cache {where}: {error}; set PHASEGATE_CACHE "
                           "to a writable folder (the model takes about 3 MB)") from error
    root = Path(run_dir) if run_dir is not None else _default_run_dir()
    workspace = root.with_name(root.name + "-workspace")
    session_file = write_workspace(workspace, session_text(model_dir, fault, phases=phases,
                                                           fault_phase=fault_phase))
    opened = create_run(load_spec(session_file), root)
    say(f"demo session: {session_file}\nrun folder:   {opened.run_dir.root}"
        + (f"\ninjected fault: {fault}" if fault else ""))
    return opened


def _at_most_every(every_s: float, report: Progress, clock: Callable[[], float]) -> Progress:
    """`report` for the first step, the last, and at most one step every `every_s` seconds between."""
    shown_at: float | None = None

    def throttled(step: BuildProgress) -> None:
        nonlocal shown_at
        now = clock()
        if shown_at is not None and step.done < step.total and now - shown_at < every_s:
            return
        shown_at = now
        report(step)

    return throttled


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def progress_text(step: BuildProgress) -> str:
    """One line: steps done, loss and the time left."""
    line = f"demo model: step {step.done}/{step.total} ({100 * step.done // max(step.total, 1)} %)"
    if step.loss is not None:
        line += f", loss {step.loss:.3f}"
    return line + (f", about {_duration(step.eta_s)} left" if step.eta_s is not None else "")


def progress_lines(say: Say, *, every_s: float = PLAIN_EVERY_S, clock: Callable[[], float] = time.monotonic) -> Progress:
    """The training's progress as a plain line every `every_s` seconds (for a log, not a terminal)."""
    return _at_most_every(every_s, lambda step: say(progress_text(step)), clock)


def _finite(value: float | None, digits: int) -> float | None:
    return round(value, digits) if value is not None and math.isfinite(value) else None


def progress_record(step: BuildProgress) -> dict[str, Any]:
    """The headless stream's `demo_progress` object (strict JSON: a NaN loss reads as null)."""
    return {"type": "demo_progress", "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "step": "demo_model", "done": step.done, "total": step.total,
            "elapsed_s": round(step.elapsed_s, 1), "eta_s": _finite(step.eta_s, 1), "loss": _finite(step.loss, 4)}


def progress_json_lines(stream: TextIO, *, every_s: float = JSON_EVERY_S,
                        clock: Callable[[], float] = time.monotonic) -> Progress:
    """The training's progress as `demo_progress` JSON lines on `stream`, at most one every `every_s` seconds."""
    def emit(step: BuildProgress) -> None:
        stream.write(json.dumps(progress_record(step), allow_nan=False) + "\n")
        stream.flush()

    return _at_most_every(every_s, emit, clock)


def _control(opened: Any, fault: str | None, target: str | None, *, headless: bool) -> int:
    """Run the controller here, with the fault's GPU reader when the fault needs one."""
    from phasegate.session.controller import Controller
    from phasegate.session.printers import human_printer, json_lines_printer

    reader = FaultInjector(opened.journal, fault, target, default_reader()) if fault in ("oom", "stall") else None
    listener = json_lines_printer() if headless else human_printer()
    return int(Controller(opened, listeners=(listener,), replay=True, gpu_reader=reader).execute())


def _watch_in_tui(root: Path, fault: str | None, target: str | None) -> int:
    """The controller in its own process (this module's main), the TUI on this terminal."""
    from phasegate.tui.controller_process import spawn_controller
    from phasegate.tui.launch import run_tui

    argv = [sys.executable, "-m", "phasegate.demo.run", str(root)]
    if fault:
        argv += ["--fault", fault, "--fault-phase", target or ""]
    return run_tui(root, mode="run", child=spawn_controller(root, argv=argv))


def _reopen(root: Path) -> Any:
    from phasegate.session.runs import open_run

    return open_run(root)


def _default_run_dir() -> Path:
    """runs/demo-<UTC stamp>, numbered when taken."""
    base = Path("runs") / f"demo-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    candidate, n = base, 1
    while candidate.exists() or candidate.with_name(candidate.name + "-workspace").exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


# The figures each phase reported that tell the demo's story, in the order they happen.
STORY: dict[str, tuple[str, ...]] = {
    "load": ("sentinel_follow_rate",),
    "baseline": ("baseline_follow_rate",),
    "pilot": ("runaway_rate", "token_limit_rate", "leakage_count", "median_tokens",
              "instruction_acceptance", "pair_acceptance", "n_kept"),
    "scale": ("runaway_rate", "leakage_count", "leakage_rate", "pair_acceptance", "n_kept", "n_duplicates",
              "near_duplicate_rate", "distinct_2"),
    "testset": ("n_test", "overlap_count"),
    "sft": ("final_loss",),
    "evaluate": ("base_rate", "adapter_rate", "mcnemar_p", "cohens_h"),
}


def _summary(opened: Any, code: ExitCode, say: Callable[[str], None]) -> None:
    """What the phases measured, and where to look next: checkpoint, incident report, status."""
    from phasegate.journal.snapshot import take_snapshot

    folder = opened.run_dir
    snapshot = take_snapshot(folder, opened.journal)
    metrics = snapshot.metrics
    lines = ["what the phases measured:"]
    for phase, names in STORY.items():
        found = [f"{n} {metrics[phase][n]:.4g}" for n in names if n in metrics.get(phase, {})]
        if found:
            lines.append(f"  {phase:<9} " + ", ".join(found))
    incidents = sorted(folder.incidents.glob("INCIDENT-*.md"))
    lines += [f"demo ended: exit code {int(code)} ({code.name.lower().replace('_', ' ')})",
              f"checkpoint: {folder.checkpoint}"]
    if incidents:
        lines.append(f"incident report: {incidents[-1]}")
    lines.append(f"inspect it with: phasegate status {folder.root}")
    if code is not ExitCode.COMPLETED:  # the way on: the same next action the checkpoint and `status` give
        step = snapshot.next
        lines.append(f"next action: {step.action}: {' or '.join(step.commands)} (why: see the checkpoint)")
    say("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    """The demo's headless controller process (what the TUI watches): `RUN_DIR [--fault NAME --fault-phase ID]`."""
    parser = argparse.ArgumentParser(prog="python -m phasegate.demo.run", description=main.__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--fault", choices=FAULTS)
    parser.add_argument("--fault-phase", default="")
    args = parser.parse_args(argv)
    return _control(_reopen(args.run_dir), args.fault, args.fault_phase or None, headless=True)


if __name__ == "__main__":
    sys.exit(main())
