"""Containment of the process trees phasegate starts (phases, reviewers): nothing they start outlives them.

A tree is its process group plus every process that carries its tag in the environment
(PHASEGATE_PROCESS_TAG, inherited by every descendant, so `setsid` or a double fork still carry it).
Ending a tree sends SIGTERM to all of it, then SIGKILL to what is left after a grace period.
Three layers make that happen whatever way its owner ends:
- the owner ends the tree when the tree's leader exits, is interrupted, or the owner raises;
- one sentinel process per owner (floor/sentinel.py), told of each tree as it starts and ends, ends every
  tree still open when the owner dies, kill -9 included (one per owner, not per tree: it costs one Python start);
- a controller is a child subreaper: orphans of its trees become its children, so even a process that
  left the group and dropped its tag is found (and reaped) while the controller lives.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROCESS_TAG_ENV = "PHASEGATE_PROCESS_TAG"
SCOPE_SEPARATOR = "::"
TERM_GRACE_S = 5.0
KILL_WAIT_S = 2.0  # after SIGKILL: how long to wait for the kernel to take the processes down
# SIGHUP too: on a pod, a dropped SSH connection hangs up the terminal the controller runs in.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_POLL_S = 0.05


class StopSignal(BaseException):  # noqa: N818 - like KeyboardInterrupt: a BaseException no gate or retry swallows
    """SIGTERM, SIGINT or SIGHUP reached the owner: stop cleanly."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# -- reading /proc ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProcessInfo:
    """The fields of /proc/<pid>/stat that containment needs."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    zombie: bool
    start: str  # clock ticks since boot: with the pid, a unique identity


def process_info(pid: int) -> ProcessInfo | None:
    """What /proc says of `pid`, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; fields after the last ')' are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    return ProcessInfo(pid, int(fields[1]), int(fields[2]), int(fields[3]), fields[0] in "ZX", fields[19])


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of a process (clock ticks since boot): with the pid, a unique identity."""
    info = process_info(pid)
    return None if info is None else info.start


def process_is(pid: int, start_time: str | None) -> bool:
    """True when `pid` exists and is the very process that had `start_time` (never trust a pid alone)."""
    return start_time is not None and process_start_time(pid) == start_time


def process_tag(pid: int) -> str | None:
    """The PHASEGATE_PROCESS_TAG a process was started with, or None (unreadable: not ours, or a zombie)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    prefix = PROCESS_TAG_ENV.encode() + b"="
    return next((item[len(prefix):].decode(errors="replace") for item in environ.split(b"\0")
                 if item.startswith(prefix)), None)


def _processes() -> list[ProcessInfo]:
    """Every process but this one."""
    pids = (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return [info for pid in pids if pid != os.getpid() and (info := process_info(pid)) is not None]


# -- tags -------------------------------------------------------------------------------------
_scope = f"pid-{os.getpid()}"


def new_tag(name: str) -> str:
    """A tag for a new tree: the owner's scope (its run's, see `owning_processes`), `name`, a unique part."""
    return scoped_tag(_scope, f"{name}/{uuid.uuid4().hex[:12]}")


def scoped_tag(scope: str, name: str) -> str:
    """The tag of tree `name` inside `scope`."""
    return f"{scope}{SCOPE_SEPARATOR}{name}"


# -- one tree -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tree:
    """What belongs to one spawned tree: the processes tagged with `tag` (or, with `scope`, any tag inside
    it) and the members of group `pgid` while that group is provably still the tree's."""

    tag: str | None
    pgid: int | None = None
    leader_start: str | None = None  # the group leader's start time, when known
    scope: bool = False

    def tagged(self, value: str | None) -> bool:
        if value is None or self.tag is None:
            return False
        return value.startswith(self.tag + SCOPE_SEPARATOR) if self.scope else value == self.tag

    def members(self) -> tuple[list[ProcessInfo], bool]:
        """The live members (zombies left out) and whether group `pgid` is the tree's, to signal as a whole."""
        live = [p for p in _processes() if not p.zombie]
        tagged = [p for p in live if self.tagged(process_tag(p.pid))]
        group = [p for p in live if self.pgid is not None and p.pgid == self.pgid]
        # A group id is a pid: once the group empties it may be reused. Trust it only while its leader is the
        # recorded process or one of its members carries the tag (a tree without a tag trusts its group).
        trusted = bool(group) and (self.tag is None or any(p.pgid == self.pgid for p in tagged)
                                   or process_is(self.pgid or 0, self.leader_start))
        adopted = _adopted(live) if _adopting else []
        chosen = {p.pid: p for p in [*tagged, *(group if trusted else []), *adopted]}
        return list(chosen.values()), trusted


def group_tree(pgid: int) -> Tree:
    """The tree whose group is `pgid`, found as containment finds it: with the tag (inside this owner's scope)
    its members carry, the leader's first, so escapees that left the group count too."""
    members = sorted((p for p in _processes() if p.pgid == pgid and not p.zombie), key=lambda p: p.pid != pgid)
    prefix = _scope + SCOPE_SEPARATOR
    tag = next((tag for p in members if (tag := process_tag(p.pid)) and tag.startswith(prefix)), None)
    return Tree(tag, pgid, process_start_time(pgid))


def end_tree(tree: Tree, grace_s: float = TERM_GRACE_S) -> None:
    """SIGTERM every member of `tree`, SIGKILL what is left after `grace_s` (at once with no grace);
    return once none is left."""
    if grace_s <= 0 or not _ask_to_end(tree, grace_s):
        _kill(tree)
    reap_orphans()


def _ask_to_end(tree: Tree, grace_s: float) -> bool:
    """SIGTERM each member once (newcomers too, such as orphans adopted meanwhile); True once none is left."""
    # Once only: a second SIGTERM could cut short what the first one started (a trainer saving a checkpoint).
    asked: set[tuple[int, str]] = set()
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        reap_orphans()
        members, trusted = tree.members()
        if not members:
            return True
        if trusted and not asked and tree.pgid is not None:
            _signal_group(tree.pgid, signal.SIGTERM)
            asked.update((m.pid, m.start) for m in members if m.pgid == tree.pgid)
        for member in [m for m in members if (m.pid, m.start) not in asked]:
            _send(member, signal.SIGTERM)
            asked.add((member.pid, member.start))
        time.sleep(_POLL_S)
    return False


def _kill(tree: Tree) -> None:
    """SIGKILL the members again and again until none is left: one may still be forking."""
    deadline = time.monotonic() + KILL_WAIT_S
    while time.monotonic() < deadline:
        members, trusted = tree.members()
        if not members:
            return
        if trusted and tree.pgid is not None:
            _signal_group(tree.pgid, signal.SIGKILL)  # the whole group at once, forks in flight included
        for member in members:
            _send(member, signal.SIGKILL)
        time.sleep(_POLL_S)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _send(member: ProcessInfo, signum: int) -> None:
    """Signal `member` through a pidfd, after checking it is still the process that was found."""
    try:
        pidfd = os.pidfd_open(member.pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # no pidfd (old kernel): the start time check alone
        if process_is(member.pid, member.start):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(member.pid, signum)
        return
    try:
        if process_is(member.pid, member.start):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                signal.pidfd_send_signal(pidfd, signum)
    finally:
        os.close(pidfd)


# -- the owner: subreaper, spawned children, stop signals ----------------------------------------
_adopting = False
_owned: set[int] = set()  # pids of our Popen children: never reaped here (Popen needs their status)
_sentinel: subprocess.Popen | None = None  # this owner's sentinel, started on first use
_sentinel_lock = threading.Lock()
_stop_signal: int | None = None


def _adopted(live: list[ProcessInfo]) -> list[ProcessInfo]:
    """Orphans that became our children because we are a subreaper (another session, not a Popen of ours)."""
    me, my_sid = os.getpid(), os.getsid(0)
    return [p for p in live if p.ppid == me and p.sid != my_sid and p.pid not in _owned]


def reap_orphans() -> None:
    """Collect exited adopted orphans. Never waitpid(-1): it would steal statuses from Popen objects."""
    me, my_sid = os.getpid(), os.getsid(0)
    for p in _processes():
        if p.zombie and p.ppid == me and p.sid != my_sid and p.pid not in _owned:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(p.pid, os.WNOHANG)


def _prctl(option: int, value: int) -> bool:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def stop_signal() -> int | None:
    """The stop signal (SIGTERM, SIGINT, SIGHUP) that reached this process while it noted them, else None."""
    return _stop_signal


def _note_stop_signal(signum: int, _frame: Any) -> None:
    global _stop_signal
    if _stop_signal is None:
        _stop_signal = signum


_noting = 0  # depth of `noting_stop_signals`: only the outermost one installs and restores the handlers


@contextlib.contextmanager
def noting_stop_signals() -> Iterator[None]:
    """While active, a stop signal is noted (see `stop_signal`) instead of ending the process; nestable, so a
    command can begin noting before its controller exists (a signal while a run is created is still a stop)."""
    global _noting, _stop_signal
    handlers = {}
    if _noting == 0:
        _stop_signal = None
        if threading.current_thread() is threading.main_thread():  # Python lets only the main thread set them
            # A signal this process was started ignoring (`nohup`, a shell's background job) stays ignored.
            handlers = {signum: signal.signal(signum, _note_stop_signal) for signum in STOP_SIGNALS
                        if signal.getsignal(signum) is not signal.SIG_IGN}
    _noting += 1
    try:
        yield
    finally:
        _noting -= 1
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        if _noting == 0:
            _stop_signal = None


@contextlib.contextmanager
def owning_processes(scope: str) -> Iterator[None]:
    """While active: trees are tagged inside `scope`, orphans are adopted, stop signals are noted."""
    global _adopting, _scope
    previous_scope, _scope = _scope, scope
    _adopting = _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    try:
        with noting_stop_signals():
            yield
    finally:
        if _adopting:
            _prctl(_PR_SET_CHILD_SUBREAPER, 0)
            reap_orphans()
        _adopting, _scope = False, previous_scope


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A pre-exec hook: the kernel kills the child when its owner dies (Linux prctl)."""

    def hook() -> None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent_pid:  # the owner died before prctl took effect
            os._exit(137)

    return hook


class Contained:
    """One spawned tree: its leader (a Popen) and its tag; the owner's sentinel knows it until it is released."""

    def __init__(self, popen: subprocess.Popen, tree: Tree) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.tree = tree

    def end(self, grace_s: float = TERM_GRACE_S) -> None:
        """End every process of the tree (TERM, then KILL after `grace_s`)."""
        end_tree(self.tree, grace_s)

    def release(self) -> None:
        """The tree is over: the sentinel forgets it, and we forget its leader."""
        _tell_sentinel(f"- {self.tree.tag}\n")
        if self.popen.returncode is not None:
            _owned.discard(self.pid)


def _start_sentinel() -> subprocess.Popen:
    """This owner's sentinel: its own session (a Ctrl-C or a group kill of ours never reaches it), no tag of
    its own, our import path so it loads the same phasegate. Its pipe is close-on-exec: no child holds it open."""
    env = {"PYTHONPATH": os.pathsep.join(path for path in sys.path if path), "PATH": os.environ.get("PATH", "")}
    sentinel = subprocess.Popen([sys.executable, "-m", "phasegate.floor.sentinel"], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/", env=env,
                                start_new_session=True, close_fds=True)
    _owned.add(sentinel.pid)
    return sentinel


def _tell_sentinel(line: str) -> None:
    """Tell this owner's sentinel that a tree starts ("+ tag pgid start") or ends ("- tag"); start it if need be."""
    global _sentinel
    with _sentinel_lock:
        if _sentinel is None or _sentinel.poll() is not None:
            if _sentinel is not None:
                _owned.discard(_sentinel.pid)
            if line.startswith("-"):
                return  # a new sentinel never knew the tree
            _sentinel = _start_sentinel()
        assert _sentinel.stdin is not None
        with contextlib.suppress(OSError):  # it died meanwhile: the next tree starts another
            _sentinel.stdin.write(line.encode())
            _sentinel.stdin.flush()


def spawn_contained(argv: list[str], *, tag: str, env: dict[str, str], **popen_args: Any) -> Contained:
    """Start `argv` as the leader of a new session and group, tagged, known to the owner's sentinel."""
    reap_orphans()
    popen = subprocess.Popen(argv, env={**env, PROCESS_TAG_ENV: tag}, start_new_session=True,
                             preexec_fn=_die_with_parent(os.getpid()), **popen_args)
    _owned.add(popen.pid)
    tree = Tree(tag, popen.pid, process_start_time(popen.pid))
    _tell_sentinel(f"+ {tag} {popen.pid} {tree.leader_start or '-'}\n")
    return Contained(popen, tree)
