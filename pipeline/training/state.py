"""SFT checkpoints (adapter + optimizer + scheduler + RNG + step) and the final adapter.

Checkpoints live in the phase's state folder, which outlives its attempts. A checkpoint folder is
written under a temporary name and renamed into place, so `checkpoints/step-NNNNNN/` either holds
a complete checkpoint or does not exist.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from phasegate.pipeline.context import PhaseContext
from phasegate.pipeline.errors import PhaseInputError
from phasegate.pipeline.files import atomic_write_json

STATE_FILE = "trainer_state.json"


@dataclass(frozen=True)
class Resume:
    """Where a resumed run starts: the optimizer step done and the checkpoint it came from."""

    step: int
    path: Path | None


def checkpoint_root(ctx: PhaseContext) -> Path:
    """Where step checkpoints live: the state folder, so a crash, a stop or a retry does not lose them."""
    return ctx.work_dir / "checkpoints"


def _step_dirs(root: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    found = [p for p in root.glob("step-*") if (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name.removeprefix("step-")))


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint folder under `root`, or None."""
    dirs = _step_dirs(root)
    return dirs[-1] if dirs else None


def _rng_state() -> dict[str, Any]:
    """Every RNG a training step draws from (dropout uses torch's)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def save_checkpoint(
    root: Path, step: int, model: Any, optimizer: Any, scheduler: Any, extra: dict[str, Any],
    keep: int,
) -> Path:
    """Write checkpoint `step` atomically and drop all but the newest `keep` ones."""
    final = root / f"step-{step:06d}"
    tmp = root / f".step-{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)  # a peft model saves only its adapter
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(_rng_state(), tmp / "rng.pt")
    atomic_write_json(tmp / STATE_FILE, {"step": step, **extra})
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in _step_dirs(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    """Restore adapter weights, optimizer and scheduler from a checkpoint; returns its state.

    The RNG is left to `restore_rng`, called just before the first resumed step.
    """
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(path / "adapter_model.safetensors", device=str(model.device))
    result = set_peft_model_state_dict(model, weights)
    odd = [k for k in [*result.unexpected_keys, *result.missing_keys] if "lora_" in k]
    if odd:
        raise PhaseInputError(f"checkpoint {path} does not fit this adapter (LoRA keys {odd[:5]}); "
                              "delete the checkpoints folder to start over")
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    return json.loads((path / STATE_FILE).read_text())


def restore_rng(path: Path) -> None:
    """Put every RNG back where it was after the checkpoint's step (dropout continues as if never stopped)."""
    rng = torch.load(path / "rng.pt", weights_only=False)
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def save_final_adapter(out: Path, model: Any, provenance: dict[str, Any]) -> Path:
    """Write the trained adapter and its training provenance into `out`, atomically."""
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    atomic_write_json(tmp / "training_provenance.json", provenance)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
