"""Test-only deterministic crash points: `PHASEGATE_CRASH_AT=<name>[:<n>]` exits abruptly at the n-th hit."""

from __future__ import annotations

import errno
import os

CRASH_ENV = "PHASEGATE_CRASH_AT"
CRASH_EXIT_CODE = 86

CRASH_POINTS = (
    "after_intent",          # intent row committed, child not yet spawned
    "after_spawn",           # child running, its pid recorded
    "after_child_exit",      # child exited, completion not yet committed
    "before_rename",         # an atomic write's temp file is durable, not yet renamed
    "after_rename",          # renamed, directory not yet fsynced
    "after_review",          # a reviewer returned, its decision not yet recorded
)

_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Exit at once, without cleanup, when the environment names this point (and this is its n-th hit)."""
    wanted = os.environ.get(CRASH_ENV)
    if not wanted or not wanted.startswith(name):
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(nth or 1):
        os._exit(CRASH_EXIT_CODE)


ENOSPC_ENV = "PHASEGATE_FAULT_ENOSPC"
_writes = 0


def disk_full_fault(handle) -> None:
    """Raise ENOSPC on the n-th durable write named by the environment, after a partial write (test only)."""
    global _writes
    wanted = os.environ.get(ENOSPC_ENV)
    if not wanted:
        return
    _writes += 1
    if _writes >= int(wanted):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
