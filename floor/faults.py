"""Test-only fault injection, one mechanism for all of it: `PHASEGATE_FAULT=name:value[,name:value]`.

Never set in a real session. The faults, each read in one place:
- `crash_at:<point>[:<n>]`: the controller exits abruptly at the n-th hit of a named crash point.
- `enospc:<n>`: the n-th durable write of the controller fails with ENOSPC after a partial write.
- `scale_crash_shard:<i>`: the worker of shard i exits 70 after its work, before writing it;
  `scale_crash_shard:<i>:<b>`: it exits 70 right after batch b of its shard is durably written.
- `sft_exit_after_step:<n>[:<attempt>]`: the SFT process exits 70 right after optimizer step n
  (only in that attempt of the phase when one is given, so a retry can get past it).
- `sft_hold_after_step:<n>`: the SFT process stops making progress right after optimizer step n
  (and its checkpoint) until it is ended from outside, as a hung process would.
- `sft_zero_grads:<pattern>[|<pattern>]`: gradients of LoRA parameters whose name contains a
  pattern are zeroed by a tensor hook (the gradient check must then stop the phase).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping

FAULT_ENV = "PHASEGATE_FAULT"
CRASH_EXIT_CODE = 86
# Faults of the controller itself; a phase's child never inherits them.
CONTROLLER_FAULTS = ("crash_at", "enospc")

CRASH_POINTS = (
    "after_intent",          # intent row committed, child not yet spawned
    "after_spawn",           # child running, its pid recorded
    "after_child_exit",      # child exited, completion not yet committed
    "before_rename",         # an atomic write's temp file is durable, not yet renamed
    "after_rename",          # renamed, directory not yet fsynced
    "after_review",          # a reviewer returned, its decision not yet recorded
)


def _items(raw: str) -> list[tuple[str, str]]:
    pairs = (item.partition(":") for item in raw.split(",") if item.strip())
    return [(key.strip(), value.strip()) for key, _, value in pairs]


def fault(name: str) -> str | None:
    """The value of fault `name` in PHASEGATE_FAULT, or None when it is not injected."""
    return next((value for key, value in _items(os.environ.get(FAULT_ENV, "")) if key == name), None)


def child_faults(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without the controller's own faults, for a phase's child process."""
    kept = [f"{key}:{value}" for key, value in _items(env.get(FAULT_ENV, "")) if key not in CONTROLLER_FAULTS]
    out = {k: v for k, v in env.items() if k != FAULT_ENV}
    if kept:
        out[FAULT_ENV] = ",".join(kept)
    return out


_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Exit at once, without cleanup, when `crash_at` names this point (and this is its n-th hit)."""
    wanted = fault("crash_at")
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(nth or 1):
        os._exit(CRASH_EXIT_CODE)


_writes = 0


def disk_full_fault(handle) -> None:
    """Raise ENOSPC on the n-th durable write named by `enospc`, after a partial write."""
    global _writes
    wanted = fault("enospc")
    if not wanted:
        return
    _writes += 1
    if _writes >= int(wanted):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
