"""The SFT training loop: accelerate-aware, resumable, checked, measured."""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from phasegate.floor.faults import fault
from phasegate.pipeline.context import PhaseContext
from phasegate.pipeline.errors import PhaseInputError
from phasegate.pipeline.files import sha256_file
from phasegate.pipeline.model.modeldir import ModelDirKind, describe_model_dir
from phasegate.pipeline.phase_io import write_output
from phasegate.pipeline.training.data import Example, collate, n_tokens, pack
from phasegate.pipeline.training.lora import (
    LoraSettings,
    attach_lora,
    check_gradients,
    lora_parameters,
    zero_gradients_of,
)
from phasegate.pipeline.training.state import (
    checkpoint_root,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    save_final_adapter,
)


@dataclass
class Tally:
    """What the loop measured in this run."""

    losses: list[float] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    checked_at: list[int] = field(default_factory=list)


def _units(examples: list[Example], max_length: int, packing: bool) -> list[list[Example]]:
    """Training sequences: packed groups, or one example each."""
    return pack(examples, max_length) if packing else [[e] for e in examples]


def epoch_batches(units: list, batch_size: int, seed: int, epoch: int, rank: int,
                  world: int) -> list[list]:
    """This process's micro-batches of one epoch, in a seeded order (same count on every rank)."""
    order = torch.randperm(len(units), generator=torch.Generator().manual_seed(seed + epoch))
    shuffled = [units[i] for i in order.tolist()]
    batches = [shuffled[i : i + batch_size] for i in range(0, len(shuffled), batch_size)]
    per_rank = len(batches) // world
    return batches[rank::world][:per_rank]


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """Peak memory of this process: CUDA allocations on a GPU, else the peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "torch.cuda.max_memory_allocated"
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return rss_kib / 1024, "ru_maxrss"


def _model(ctx: PhaseContext, params: Any, seed: int) -> tuple[Any, Any]:
    """The clean base model with a fresh (seeded) LoRA adapter."""
    from phasegate.pipeline.model.loader import load_clean

    spec = ctx.require_model()
    loaded = load_clean(spec, base=ctx.model_base)
    torch.manual_seed(seed)  # LoRA A's random init
    settings = LoraSettings(params.lora_r, params.lora_alpha, params.lora_dropout,
                            params.target_modules)
    model = attach_lora(loaded.model, settings, quantized=spec.quantization != "none",
                        checkpointing=params.gradient_checkpointing)
    zero = fault("sft_zero_grads")
    if zero:
        zero_gradients_of(model, zero.split("|"))
    return loaded, model


def _optimizer(model: Any, params: Any, total_steps: int) -> tuple[Any, Any]:
    """AdamW over the LoRA parameters and its learning-rate schedule."""
    from transformers import get_scheduler

    trainable = [p for _, p in lora_parameters(model)]
    optimizer = torch.optim.AdamW(trainable, lr=params.learning_rate,
                                  weight_decay=params.weight_decay)
    scheduler = get_scheduler(params.lr_scheduler, optimizer,
                              num_warmup_steps=params.warmup_steps,
                              num_training_steps=total_steps)
    return optimizer, scheduler


def _steps_per_epoch(n_units: int, params: Any, world: int) -> int:
    """Optimizer steps in one epoch; refuses a dataset too small for one step."""
    micro = (-(-n_units // params.batch_size)) // world
    steps = micro // params.gradient_accumulation
    if steps == 0:
        raise PhaseInputError(
            f"{n_units} training sequences make no full optimizer step with batch_size "
            f"{params.batch_size} x gradient_accumulation {params.gradient_accumulation} x "
            f"{world} process(es); lower those or add data")
    return steps


class Loop:
    """One training run: from the resumed step to the last, with checks and checkpoints."""

    def __init__(self, ctx: PhaseContext, params: Any, accelerator: Any, model: Any,
                 optimizer: Any, scheduler: Any, pad_id: int, extra_state: dict,
                 checkpoints: Path) -> None:
        self.ctx, self.params, self.acc = ctx, params, accelerator
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.pad_id, self.extra_state, self.tally = pad_id, extra_state, Tally()
        self.checkpoints = checkpoints

    def micro_step(self, groups: list, last: bool) -> float:
        """Forward and backward of one micro-batch; returns its (scaled) loss."""
        batch = {k: v.to(self.acc.device) for k, v in
                 collate(groups, self.pad_id, self.params.packing).items()}
        sync = contextlib.nullcontext() if last else self.acc.no_sync(self.model)
        with sync:
            # No KV cache: it is useless in training and turns off packed-sequence masking.
            loss = self.model(**batch, use_cache=False).loss / self.params.gradient_accumulation
            self.acc.backward(loss)
        self.tally.tokens += n_tokens(groups)
        return float(loss.detach())

    def step(self, micro: list[list], step: int, start: int, total: int) -> None:
        """One optimizer step over `micro` batches, with the gradient check when it is due."""
        began = time.perf_counter()
        loss = sum(self.micro_step(g, i == len(micro) - 1) for i, g in enumerate(micro))
        self.optimizer.step()
        self.scheduler.step()
        if step in (start + 1, 2):
            check_gradients(self.acc.unwrap_model(self.model), step)
            self.tally.checked_at.append(step)
        self.optimizer.zero_grad(set_to_none=True)
        self.tally.seconds += time.perf_counter() - began
        loss = float(self.acc.reduce(torch.tensor(loss, device=self.acc.device), "mean"))
        self.tally.losses.append(loss)
        if step % self.params.log_every == 0 or step == total:
            self.ctx.reporter.metric("train_loss", loss)
        self.ctx.reporter.progress(step, total, step=f"step {step}/{total}")

    def save(self, step: int) -> None:
        """Checkpoint on the main process; every process waits for it."""
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            save_checkpoint(self.checkpoints, step,
                            self.acc.unwrap_model(self.model), self.optimizer, self.scheduler,
                            self.extra_state, self.params.keep_checkpoints)

    def run(self, units: list, seed: int, start: int, total: int, per_epoch: int) -> None:
        """Every step from `start` to `total`."""
        accum, step, cached = self.params.gradient_accumulation, start, (-1, [])
        while step < total:
            epoch, in_epoch = divmod(step, per_epoch)
            if cached[0] != epoch:
                cached = (epoch, epoch_batches(units, self.params.batch_size, seed, epoch,
                                               self.acc.process_index, self.acc.num_processes))
            batches = cached[1]
            micro = batches[in_epoch * accum : (in_epoch + 1) * accum]
            step += 1
            self.step(micro, step, start, total)
            if step % self.params.save_every == 0 or step == total:
                self.save(step)
            if _crash_due(step, self.ctx.attempt):
                os._exit(70)  # a crash, as a killed process would leave it
            if fault("sft_hold_after_step") == str(step):
                _hold()


def _hold() -> None:
    """Stop making progress until ended from outside, as a hung process would (the fault's only use)."""
    while True:
        time.sleep(60)


def _crash_due(step: int, attempt: int) -> bool:
    """Whether the `sft_exit_after_step:<n>[:<attempt>]` fault ends this process after `step`."""
    wanted = fault("sft_exit_after_step")
    if wanted is None:
        return False
    at, _, only_attempt = wanted.partition(":")
    return at == str(step) and only_attempt in ("", str(attempt))


def train(ctx: PhaseContext, params: Any, *, examples: list[Example], files: list[Path],
          seed: int, fingerprint: str, system_prompt: str | None,
          checkpoint: Path | None) -> int:
    """Train the adapter, resuming from `checkpoint`; write the adapter and metrics.

    A resumed run ends with the adapter of an uninterrupted one, bit for bit on CPU: the checkpoint holds
    the adapter, AdamW's moments and step, the schedule's position and the RNG state after its step
    (dropout draws from it), and the data order is re-derived from the seed and the epoch alone. The RNG
    is restored last, just before the first step, so nothing drawn in between can shift it. On a GPU,
    kernels without a fixed reduction order can make the two differ in the last bits of a float.
    """
    from accelerate import Accelerator

    spec = ctx.require_model()
    accelerator = Accelerator(cpu=spec.resolved_device() != "cuda")
    loaded, model = _model(ctx, params, seed)
    units = _units(examples, params.max_length, params.packing)
    per_epoch = _steps_per_epoch(len(units), params, accelerator.num_processes)
    total = per_epoch * params.epochs
    total = min(total, params.max_steps) if params.max_steps else total
    optimizer, scheduler = _optimizer(model, params, total)
    start = 0
    if checkpoint is not None:
        start = load_checkpoint(checkpoint, model, optimizer, scheduler)["step"]
        _announce_resume(ctx, checkpoint, start, total)
    ctx.reporter.metric("resumed_from_step", start)  # 0: a fresh start; the journal has it even if this run dies
    if accelerator.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(accelerator.device)
    model, optimizer = accelerator.prepare(model, optimizer)
    loop = Loop(ctx, params, accelerator, model, optimizer, scheduler,
                loaded.tokenizer.pad_token_id,
                {"fingerprint": fingerprint, "system_prompt": system_prompt, "seed": seed},
                checkpoint_root(ctx))
    if checkpoint is not None:
        restore_rng(checkpoint)
    loop.run(units, seed, start, total, per_epoch)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _finish(ctx, params, loop, loaded, files, len(examples), start, total, accelerator)
    return 0


def _announce_resume(ctx: PhaseContext, checkpoint: Path, start: int, total: int) -> None:
    """Say in the phase log and in the journal where this attempt picks up."""
    message = f"sft: resuming from {checkpoint} (step {start} of {total})"
    print(message, file=sys.stderr)
    ctx.reporter.log(message)


def _finish(ctx: PhaseContext, params: Any, loop: Loop, loaded: Any, files: list[Path],
            n_examples: int, start: int, total: int, accelerator: Any) -> None:
    """Save the final adapter with its provenance, write and report the metrics."""
    import accelerate
    import peft

    tally = loop.tally
    memory, source = peak_memory_mb(accelerator.device)
    tokens = int(accelerator.reduce(torch.tensor(tally.tokens, device=accelerator.device), "sum"))
    metrics = {
        "steps": total, "resumed_from_step": start, "steps_this_run": total - start,
        "examples": n_examples, "tokens": tokens, "train_seconds": round(tally.seconds, 3),
        "tokens_per_s": tokens / tally.seconds if tally.seconds else None,
        "final_loss": tally.losses[-1] if tally.losses else None, "losses": tally.losses,
        "peak_memory_mb": memory, "peak_memory_source": source,
        "gradient_check": {"passed": True, "checked_at_steps": tally.checked_at},
        "processes": accelerator.num_processes,
        "gradient_checkpointing": params.gradient_checkpointing, "packing": params.packing,
    }
    provenance = {
        "base_model": loaded.provenance.to_dict(),
        "data": [{"path": str(f), "sha256": sha256_file(f)} for f in files],
        "params": params.model_dump(), **loop.extra_state, "steps": total,
        "final_loss": metrics["final_loss"],
        "versions": {"peft": peft.__version__, "accelerate": accelerate.__version__},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out = save_final_adapter(ctx.artifacts_dir / "adapter",
                             accelerator.unwrap_model(loop.model), provenance)
    if describe_model_dir(out) is not ModelDirKind.ADAPTER:  # pragma: no cover - a peft bug
        raise RuntimeError(f"{out} was saved but is not a LoRA adapter folder")
    ctx.reporter.artifact(out / "adapter_model.safetensors")
    ctx.reporter.artifact(out / "training_provenance.json")
    write_output(ctx, "sft_metrics.json", metrics)
    for name in ("tokens_per_s", "peak_memory_mb", "final_loss"):
        if metrics[name] is not None:
            ctx.reporter.metric(name, metrics[name])
