"""Test-only deterministic crash points: `PHASEGATE_CRASH_AT=<name>` makes the process exit abruptly there."""

from __future__ import annotations

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


def crash_point(name: str) -> None:
    """Exit at once, without cleanup, when the environment names this crash point."""
    if os.environ.get(CRASH_ENV) == name:
        os._exit(CRASH_EXIT_CODE)
