"""Fault injection for the crash and resume tests: `PHASEGATE_FAULT=name:value[,name:value]`.

Never set in a real session. The faults, each read in one place:
- `scale_crash_shard:<i>`: the worker of shard i exits 70 after its work, before writing it.
- `sft_exit_after_step:<n>`: the SFT process exits 70 right after optimizer step n.
- `sft_zero_grads:<pattern>[|<pattern>]`: gradients of LoRA parameters whose name contains a
  pattern are zeroed by a tensor hook (the gradient check must then stop the phase).
"""

from __future__ import annotations

import os

FAULT_ENV = "PHASEGATE_FAULT"


def fault(name: str) -> str | None:
    """The value of fault `name` in PHASEGATE_FAULT, or None when it is not injected."""
    for item in os.environ.get(FAULT_ENV, "").split(","):
        key, _, value = item.partition(":")
        if key.strip() == name:
            return value.strip()
    return None
