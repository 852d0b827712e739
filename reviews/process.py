"""Run one reviewer process in its own group with a hard timeout and bounded output reading."""

# Reading never waits for EOF alone: a grandchild may inherit the pipes and keep them open
# after the reviewer exits, so reading stops at the timeout, or a short grace after the direct
# child exits. Its whole tree (floor/processes.py: group, tagged escapees) is killed at the end
# either way, a sentinel kills it should the controller die, and a stop signal to the controller
# ends it at once. A `watch` sees every chunk as it arrives and may end the run early (a CLI that
# only waits on the network, reviews/watch.py).

from __future__ import annotations

import os
import selectors
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from phasegate.floor.processes import StopSignal, new_tag, spawn_contained, stop_signal

Clock = Callable[[], float]
Watch = Callable[[str, bytes], str | None]
"""Fed (stream name, chunk) as output arrives; returns why to end the run now, or None."""

DEFAULT_GRACE_S = 0.5
DEFAULT_MAX_OUTPUT_BYTES = 8 * 1024 * 1024
_CHUNK = 65536
# Only used where pidfd is unavailable: how often to look for the child's exit.
_POLL_S = 0.05
# How often to look for a stop signal that reached the controller.
_STOP_CHECK_S = 0.25


@dataclass(frozen=True)
class ProcessResult:
    """How one reviewer process ended and what it wrote."""

    exit_code: int | None
    stdout: bytes
    stderr: bytes
    duration_s: float
    timed_out: bool = False
    spawn_error: str | None = None
    truncated: bool = False
    pipes_held_open: bool = False
    ended_early: str | None = None
    """Why the watch ended the run before the process exited (its tree was killed then)."""

    @property
    def signal(self) -> int | None:
        """The signal that ended the process, if it was killed by one."""
        return -self.exit_code if self.exit_code is not None and self.exit_code < 0 else None


class _Pump:
    """Feeds stdin and drains stdout/stderr of one child through a selector, bounded."""

    def __init__(self, proc: subprocess.Popen[bytes], stdin: bytes, max_bytes: int, watch: Watch | None) -> None:
        self._proc = proc
        self._max = max_bytes
        self._watch = watch
        self.ended_early: str | None = None
        self._sel = selectors.DefaultSelector()
        self._buffers = {"stdout": bytearray(), "stderr": bytearray()}
        self._pending = memoryview(stdin)
        self.truncated = False
        assert proc.stdin and proc.stdout and proc.stderr
        self._sel.register(proc.stdout, selectors.EVENT_READ, "stdout")
        self._sel.register(proc.stderr, selectors.EVENT_READ, "stderr")
        if self._pending:
            os.set_blocking(proc.stdin.fileno(), False)
            self._sel.register(proc.stdin, selectors.EVENT_WRITE, "stdin")
        else:
            proc.stdin.close()
        self._pidfd = self._open_pidfd(proc.pid)

    def _open_pidfd(self, pid: int) -> int | None:
        """A pidfd that becomes readable when the child exits (Linux), else None."""
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            return None
        self._sel.register(fd, selectors.EVENT_READ, "exit")
        return fd

    def child_exited(self) -> bool:
        """True once the direct child has exited, without reaping it (its pgid stays ours)."""
        try:
            info = os.waitid(os.P_PID, self._proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def outputs_open(self) -> bool:
        """True while stdout or stderr may still deliver data."""
        return any(key.data in self._buffers for key in self._sel.get_map().values())

    def run(self, deadline: float, grace_s: float) -> tuple[bool, bool]:
        """Pump until the outputs close after exit, the grace ends, or the deadline passes."""
        # Deadlines use the real monotonic clock, whatever clock measures durations.
        exited_at: float | None = None
        while True:
            if (signum := stop_signal()) is not None:
                raise StopSignal(signum)
            now = time.monotonic()
            if exited_at is None and self.child_exited():
                exited_at = now
            if exited_at is not None and not self.outputs_open():
                return False, False
            if exited_at is not None and now >= exited_at + grace_s:
                return False, True
            if now >= deadline:
                return True, False
            if self.ended_early is not None:
                return False, False
            limit = deadline if exited_at is None else min(deadline, exited_at + grace_s)
            wait = min(max(0.0, limit - now), _STOP_CHECK_S)
            if self._pidfd is None:
                wait = min(wait, _POLL_S)
            for key, _ in self._sel.select(wait):
                self._handle(key)

    def _handle(self, key: selectors.SelectorKey) -> None:
        """Serve one ready pipe (or the exit notification)."""
        if key.data == "exit":
            self._sel.unregister(key.fileobj)
        elif key.data == "stdin":
            self._write_stdin(key)
        else:
            self._read(key)

    def _write_stdin(self, key: selectors.SelectorKey) -> None:
        """Write the next prompt chunk; close stdin when done or when the child stops reading."""
        try:
            written = os.write(key.fd, self._pending[:_CHUNK])
            self._pending = self._pending[written:]
        except BlockingIOError:
            return
        except OSError:
            self._pending = memoryview(b"")
        if not self._pending:
            self._sel.unregister(key.fileobj)
            key.fileobj.close()  # type: ignore[union-attr]

    def _read(self, key: selectors.SelectorKey) -> None:
        """Read one chunk; keep at most max_bytes per stream and drop the rest."""
        data = os.read(key.fd, _CHUNK)
        if not data:
            self._sel.unregister(key.fileobj)
            return
        buffer = self._buffers[key.data]
        room = self._max - len(buffer)
        if len(data) > room:
            self.truncated = True
        buffer += data[: max(0, room)]
        if self._watch is not None and self.ended_early is None:
            self.ended_early = self._watch(key.data, data)

    def output(self, name: str) -> bytes:
        """Everything kept from `stdout` or `stderr`."""
        return bytes(self._buffers[name])

    def close(self) -> None:
        """Release the selector, the pidfd and our ends of the pipes."""
        self._sel.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
        for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()


def run_bounded(
    argv: Sequence[str],
    *,
    stdin: bytes,
    cwd: Path,
    env: Mapping[str, str],
    timeout_s: float,
    grace_s: float = DEFAULT_GRACE_S,
    max_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    clock: Clock = time.monotonic,
    watch: Watch | None = None,
) -> ProcessResult:
    """Run `argv` (no shell) contained in a new session; kill its tree on timeout, on a stop, when `watch` says
    so, and when done."""
    # `clock` only measures the reported duration, so a frozen test clock cannot stop timeouts.
    start = clock()
    try:
        process = spawn_contained(
            list(argv),
            tag=new_tag("review"),
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            close_fds=True,
        )
    except OSError as exc:
        return ProcessResult(
            None, b"", b"", clock() - start, spawn_error=f"{type(exc).__name__}: {exc}"
        )
    proc = process.popen
    pump = _Pump(proc, stdin, max_bytes, watch)
    try:
        timed_out, held_open = pump.run(time.monotonic() + timeout_s, grace_s)
    finally:
        # The child is still unreaped here, so its pid cannot be reused as a group id yet.
        process.end(grace_s=0)
        exit_code = proc.wait()
        process.release()
        pump.close()
    return ProcessResult(
        exit_code=exit_code,
        stdout=pump.output("stdout"),
        stderr=pump.output("stderr"),
        duration_s=clock() - start,
        timed_out=timed_out,
        truncated=pump.truncated,
        pipes_held_open=held_open,
        ended_early=pump.ended_early,
    )
