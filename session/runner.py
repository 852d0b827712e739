"""Phase child processes: spawn them contained (floor/processes.py), stream their events, end them cleanly."""

from __future__ import annotations

import enum
import hashlib
import os
import re
import selectors
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from phasegate.floor.events import EVENTS_FD_ENV, ChildEvent, parse_line
from phasegate.floor.processes import (
    Contained,
    Tree,
    end_tree,
    new_tag,
    scoped_tag,
    spawn_contained,
)

# Re-exported: process identity by pid + start time is part of this module's interface.
from phasegate.floor.processes import process_is as process_is
from phasegate.floor.processes import process_start_time as process_start_time
from phasegate.journal.records import AttemptRecord

# What a CUDA out-of-memory looks like in a phase's output (PyTorch, cuBLAS, the CUDA runtime).
OOM_PATTERN = re.compile(r"CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED|cudaErrorMemoryAllocation")
MAX_EVENT_LINE = 1 << 20
TICK_S = 0.25


def log_times_path(log_path: Path) -> Path:
    """The side index of a phase log: one `OFFSET EPOCH` line per write, so a reader can tell when each
    line was written without the log itself changing format (the incident tail and users read it as is)."""
    return log_path.with_name(log_path.name + ".times")


def end_process_group(pgid: int, grace_s: float = 5.0) -> None:
    """Ask a process group to end (SIGTERM), then kill it (SIGKILL) after the grace period."""
    end_tree(Tree(tag=None, pgid=pgid), grace_s)


def run_scope(run_dir: Path) -> str:
    """The tag scope of every process tree a run starts: from its folder (unique on this machine), hashed so
    that a reviewer's environment does not learn where the run lives."""
    return "run-" + hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


def attempt_tag(run_dir: Path, phase: str, attempt: int) -> str:
    """The tag of one attempt's process tree, found again from the journal after a crash."""
    return scoped_tag(run_scope(run_dir), f"{phase}/{attempt}")


def end_leftovers(run_dir: Path, attempts: Iterable[AttemptRecord]) -> None:
    """End what earlier controllers of a run left running: each open attempt's group (by the id the
    journal recorded) and every process tagged with the run (reviewers, escapees)."""
    for attempt in attempts:
        if attempt.pid is not None:
            end_tree(Tree(attempt_tag(run_dir, attempt.phase, attempt.attempt), attempt.pid, attempt.pid_start))
    end_tree(Tree(run_scope(run_dir), scope=True))


class Trigger(enum.StrEnum):
    """What made phasegate end a phase's process group (the incident report's trigger)."""

    TIMEOUT = "timeout"
    OPERATOR_STOP = "operator_stop"
    OOM = "oom"
    STALL = "stall"
    BUDGET_EXHAUSTED = "budget_exhausted"
    AB_DISCREPANCY = "ab_discrepancy"
    SIGNAL = "signal"  # SIGTERM, SIGINT or SIGHUP to the controller


@dataclass(frozen=True)
class Interruption:
    """Why phasegate ended a child: its trigger, and the reason text journals and reports show."""

    trigger: Trigger
    reason: str

    def __str__(self) -> str:
        """The reason text, as a journal or a report writes it."""
        return self.reason


@dataclass(frozen=True)
class ChildExit:
    """How a child's run ended."""

    exit_code: int | None
    signal: int | None
    interruption: Interruption | None  # why phasegate ended it (timeout, stop, stall, …), else None

    @property
    def interrupted(self) -> str | None:
        """The reason text of the interruption, else None."""
        return None if self.interruption is None else str(self.interruption)

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and self.interruption is None


EventHandler = Callable[[ChildEvent], None]
TickHandler = Callable[[], Interruption | None]


class LogPump:
    """Copies a child's output to its log one line at a time, masking secrets on the way."""

    def __init__(self, fd: int, log_path: Path, redact: Callable[[str], str]) -> None:
        self.fd = fd
        # Logs may hold what a phase printed about its environment: private to the user (0600).
        self._log = os.fdopen(os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")
        self._times = os.fdopen(os.open(log_times_path(log_path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")
        self._redact = redact
        self._partial = b""
        self.last_output = time.monotonic()
        self.oom_line: str | None = None

    def pump(self) -> bool:
        """Copy what is available; False at end of file."""
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        self.last_output = time.monotonic()
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        if len(self._partial) > MAX_EVENT_LINE:  # a line without end: write it rather than grow forever
            lines, self._partial = [*lines, self._partial], b""
        self._write(lines)
        return True

    def _write(self, lines: list[bytes]) -> None:
        if lines:
            decoded = [self._redact(line.decode("utf-8", errors="replace")) for line in lines]
            if self.oom_line is None:
                self.oom_line = next((line for line in decoded if OOM_PATTERN.search(line)), None)
            text = "\n".join(decoded) + "\n"
            # The index first: a reader that sees the lines finds their time (the log is flushed each write).
            self._times.write(f"{os.fstat(self._log.fileno()).st_size} {time.time():.3f}\n".encode())
            self._times.flush()
            self._log.write(text.encode("utf-8"))
            self._log.flush()

    def close(self) -> None:
        """Drain what is left without blocking (a grandchild may hold the pipe open) and close."""
        while _readable(self.fd) and self.pump():
            pass
        if self._partial:
            self._write([self._partial])
        self._log.close()
        self._times.close()
        os.close(self.fd)


class Child:
    """One running phase child with its events pipe and its output pump."""

    def __init__(self, process: Contained, events_fd: int, output: LogPump) -> None:
        self.process = process
        self.popen = process.popen
        self.pid = process.pid
        self.start_time = process.tree.leader_start or ""
        self._events_fd = events_fd
        self._buffer = b""
        self.output = output

    def wait(self, on_event: EventHandler, on_tick: TickHandler, timeout_s: float | None) -> ChildExit:
        """Pump events until the child exits, times out, or `on_tick` returns an interruption."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        selector = selectors.DefaultSelector()
        selector.register(self._events_fd, selectors.EVENT_READ, "events")
        selector.register(self.output.fd, selectors.EVENT_READ, "output")
        pidfd = _open_pidfd(self.pid)
        if pidfd is not None:
            selector.register(pidfd, selectors.EVENT_READ, "exit")
        interruption = None
        try:
            while self.popen.poll() is None:
                for key, _ in selector.select(TICK_S if pidfd is not None else 0.05):
                    if key.data == "events" and not self._read_events(on_event):
                        selector.unregister(self._events_fd)
                    elif key.data == "output" and not self.output.pump():
                        selector.unregister(self.output.fd)
                interruption = on_tick() or _timed_out(deadline)
                if interruption is not None:
                    self.process.end()
                    self.popen.wait()
                    break
            self._drain(on_event)
            self.process.end()  # background jobs and escapees of a phase never outlive it
        except BaseException:  # the controller cannot go on (disk full, say): the child must not run on alone
            self.process.end(grace_s=2.0)
            self.popen.wait()
            raise
        finally:
            self.process.release()
            selector.close()
            self.output.close()
            if pidfd is not None:
                os.close(pidfd)
            os.close(self._events_fd)
        code = self.popen.returncode
        return ChildExit(exit_code=code if code >= 0 else None, signal=-code if code < 0 else None,
                         interruption=interruption)

    def _read_events(self, on_event: EventHandler) -> bool:
        """Read what is available on the events pipe; False at end of file."""
        try:
            chunk = os.read(self._events_fd, 65536)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > MAX_EVENT_LINE:
            self._buffer = b""
        for line in lines:
            _dispatch(line, on_event)
        return True

    def _drain(self, on_event: EventHandler) -> None:
        """Deliver events still in the pipe after the child exited (a grandchild may hold it open)."""
        os.set_blocking(self._events_fd, False)
        while self._read_events(on_event):
            if not _readable(self._events_fd):
                break
        if self._buffer.strip():
            _dispatch(self._buffer, on_event)
            self._buffer = b""


def _readable(fd: int) -> bool:
    with selectors.DefaultSelector() as probe:
        probe.register(fd, selectors.EVENT_READ)
        return bool(probe.select(0))


def _dispatch(line: bytes, on_event: EventHandler) -> None:
    if line.strip():
        on_event(parse_line(line))


def _timed_out(deadline: float | None) -> Interruption | None:
    if deadline is not None and time.monotonic() >= deadline:
        return Interruption(Trigger.TIMEOUT, "timeout")
    return None


def _open_pidfd(pid: int) -> int | None:
    """A file descriptor that becomes readable when the child exits (Linux ≥ 5.3), else None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def spawn(argv: list[str], *, cwd: Path, env: dict[str, str], log_path: Path,
          redact: Callable[[str], str] = lambda text: text, tag: str | None = None) -> Child:
    """Start a phase child contained (own group, tagged, watched by a sentinel), its output (redacted) to
    its log, events on a pipe."""
    read_fd, write_fd = os.pipe()
    out_read, out_write = os.pipe()
    for fd in (read_fd, out_read):
        os.set_blocking(fd, False)
    child_env = {**env, EVENTS_FD_ENV: str(write_fd)}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        process = spawn_contained(argv, tag=tag or new_tag("phase"), env=child_env, cwd=cwd,
                                  stdin=subprocess.DEVNULL, stdout=out_write, stderr=out_write, pass_fds=(write_fd,))
    except OSError:
        os.close(read_fd)
        os.close(out_read)
        raise
    finally:
        os.close(write_fd)
        os.close(out_write)
    return Child(process, read_fd, LogPump(out_read, log_path, redact))
