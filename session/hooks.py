"""`[[hooks]]`: a user's command run on a run event, contained, bounded by its timeout, its output logged.

A hook can never change the run's outcome: it runs on the notifier's worker thread (session/notify.py) after the
event is journaled, and what it returns is at most a `hook_failed` event.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from phasegate.floor.faults import child_faults
from phasegate.floor.processes import scoped_tag, spawn_contained
from phasegate.session.notify_spec import HookSpec
from phasegate.session.placeholders import expand
from phasegate.session.runner import run_scope

HOOK_LOG_NAME = "_hooks"  # logs/_hooks.log: a phase id cannot start with "_", so no clash
MAX_LOGGED_OUTPUT = 64 * 1024  # what a chatty hook writes past this is counted, not logged
END_GRACE_S = 2.0  # SIGTERM, then SIGKILL this much later


@dataclass(frozen=True)
class RunEvent:
    """A journaled event as notifications and hooks see it: which run, what happened, and the message text."""

    seq: int
    event: str  # one of spec.NOTIFY_EVENTS
    run_id: str
    run_dir: Path
    session_dir: Path
    phase: str | None
    state: str
    reason: str | None
    message: str  # the notification's text, secrets masked

    def values(self) -> dict[str, str]:
        """The hook placeholders' values (spec.HOOK_PLACEHOLDERS)."""
        return {"run_dir": str(self.run_dir), "session_dir": str(self.session_dir), "run_id": self.run_id,
                "event": self.event, "phase": self.phase or "", "state": self.state}

    def environment(self) -> dict[str, str]:
        """The PHASEGATE_* variables a hook gets."""
        named = {f"PHASEGATE_{name.upper()}": value for name, value in self.values().items()}
        return {**named, "PHASEGATE_REASON": self.reason or "", "PHASEGATE_EVENT_SEQ": str(self.seq),
                "PHASEGATE_MESSAGE": self.message}


@dataclass(frozen=True)
class HookCall:
    """One hook to run for one event: all the worker thread needs, nothing of the journal."""

    index: int
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path
    timeout_s: float
    log_path: Path
    redact: Callable[[str], str]
    tag: str

    def run(self) -> str | None:
        """Run the hook to its end or its timeout; returns why it failed, or None."""
        started = time.monotonic()
        with tempfile.TemporaryFile() as output:  # a file, not a pipe: a grandchild holding it cannot hang us
            try:
                child = spawn_contained(list(self.argv), tag=self.tag, env=dict(self.env), cwd=self.cwd,
                                        stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
            except OSError as exc:
                error = f"cannot start {self.argv[0]}: {exc.strerror or exc}"
                self._log(error, b"", started)
                return error
            try:
                error = _wait(child, self.timeout_s)
            finally:
                child.release()
            output.seek(0)
            self._log(error or "exit 0", output.read(MAX_LOGGED_OUTPUT + 1), started)
        return error

    def _log(self, outcome: str, output: bytes, started: float) -> None:
        """Append the hook's argv, output (masked, bounded) and outcome to logs/_hooks.log."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        text = output[:MAX_LOGGED_OUTPUT].decode("utf-8", errors="replace")
        cut = f"[output past {MAX_LOGGED_OUTPUT} bytes not logged]\n" if len(output) > MAX_LOGGED_OUTPUT else ""
        entry = (f"--- {now} hook[{self.index}] {self.env.get('PHASEGATE_EVENT')} "
                 f"(event {self.env.get('PHASEGATE_EVENT_SEQ')}): {' '.join(self.argv)}\n"
                 f"{text}{'' if not text or text.endswith(chr(10)) else chr(10)}{cut}"
                 f"--- {outcome} after {time.monotonic() - started:.1f} s\n")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a") as log:
            log.write(self.redact(entry))


def _wait(child, timeout_s: float) -> str | None:
    """Wait for the hook's leader; past the timeout end its whole tree. What it left behind ends with it."""
    try:
        code = child.popen.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        child.end(END_GRACE_S)
        child.popen.wait()
        return f"ran past its timeout_s ({timeout_s:g} s) and was ended"
    child.end(END_GRACE_S)  # as with phases: nothing a hook started outlives it
    if code == 0:
        return None
    return f"exit code {code}" if code > 0 else f"killed by signal {-code}"


def hook_call(index: int, hook: HookSpec, event: RunEvent, *, base_env: Mapping[str, str], log_path: Path,
              redact: Callable[[str], str]) -> HookCall:
    """The call of hook `index` for `event`: argv with its placeholders filled, the PHASEGATE_* variables set."""
    values = event.values()
    argv = tuple(expand(arg, values) for arg in hook.run)
    env = {**child_faults(base_env), **event.environment()}
    tag = scoped_tag(run_scope(event.run_dir), f"hook/{index}/{event.seq}")  # ended with the run's leftovers
    return HookCall(index, argv, env, event.session_dir, hook.timeout_s, log_path, redact, tag)
