"""The `sft` phase: LoRA (QLoRA when [model] quantization = "nf4", CUDA only) on completion data.

Order of work, so a bad input costs nothing: parameters, the nf4-needs-CUDA rule, the dataset
(schema, empty, rows over max_length; with the tokenizer only), and only then the model. After
the first optimizer step of every run (and at step 2, when LoRA A can first move) every LoRA
parameter must have received a gradient, else exit 3 with their names. Checkpoints every
`save_every` steps go to the phase's state folder (`RUN_DIR/state/<phase>/checkpoints/`), which
outlives the attempt; the next attempt (after a crash, kill -9, an operator stop or a retry)
continues from the newest one made with the same inputs and ends with the adapter an
uninterrupted run would have made (see `loop.train`).

Outputs: adapter/ (adapter weights + training_provenance.json), sft_metrics.json.
Metrics: train_loss, tokens_per_s, peak_memory_mb, resumed_from_step.
"""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from phasegate.pipeline.context import PhaseContext
from phasegate.pipeline.errors import PhaseInputError
from phasegate.pipeline.files import sha256_file, sha256_text
from phasegate.pipeline.phase_io import model_files_sha, parse_params, resolve_path, upstream_file
from phasegate.pipeline.training.data import render_system_prompt
from phasegate.pipeline.training.state import STATE_FILE, checkpoint_root, latest_checkpoint


class SftParams(BaseModel):
    """The `sft` phase's `[phases.with]` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: list[str] | None = Field(None, description="Training JSONL file(s) of {instruction, "
                                   "response} rows; default: the latest earlier scale (else "
                                   "generate) phase's data.")
    max_length: int = Field(512, ge=8, description="Longest example in tokens; longer rows are "
                            "refused (and the length of a packed sequence).")
    epochs: int = Field(1, ge=1, description="Passes over the data.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps.")
    batch_size: int = Field(8, ge=1, description="Sequences per micro-batch (per process).")
    gradient_accumulation: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    learning_rate: float = Field(2e-4, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps.")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "linear", description="Learning-rate schedule (transformers.get_scheduler).")
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: str | list[str] = Field("all-linear", description="Modules that get LoRA "
                                            "adapters: 'all-linear' or a list of names.")
    gradient_checkpointing: bool = Field(True, description="Recompute activations in the "
                                         "backward pass: less memory, ~20-30% slower.")
    packing: bool = Field(False, description="Pack several examples into each max_length "
                          "sequence (they never attend to each other).")
    profile: str | None = Field(None, description="A TOML or JSON profile file whose "
                                "`system_prompt_template` (with {date}) prefixes every prompt.")
    system_prompt_template: str | None = Field(None, description="The template given inline "
                                               "instead of a profile, e.g. 'Today is {date}.'")
    seed: int | None = Field(None, description="Adapter init and data order; default: session seed.")
    save_every: int = Field(50, ge=1, description="Optimizer steps between checkpoints.")
    keep_checkpoints: int = Field(2, ge=1, description="Checkpoints kept on disk (newest).")
    log_every: int = Field(10, ge=1, description="Optimizer steps between loss reports.")
    launcher: Literal["none", "accelerate"] = Field("none", description="accelerate: run under "
                                                    "`accelerate launch`, one process per GPU.")
    num_processes: int | None = Field(None, ge=1, description="accelerate: processes; default: "
                                      "one per visible GPU, 1 on CPU.")


# Keys that do not change what is trained: a checkpoint made under other values still fits.
_RUN_ONLY = {"save_every", "keep_checkpoints", "log_every", "launcher", "num_processes"}


def system_template(ctx: PhaseContext, params: SftParams) -> str | None:
    """The system prompt template from the profile file or the inline parameter, if any."""
    if params.profile and params.system_prompt_template:
        raise PhaseInputError("set either `profile` or `system_prompt_template`, not both")
    if not params.profile:
        return params.system_prompt_template
    path = resolve_path(ctx, params.profile)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as error:
        raise PhaseInputError(f"profile {path} cannot be read: {error}") from error
    template = data.get("system_prompt_template") if isinstance(data, dict) else None
    if not isinstance(template, str):
        raise PhaseInputError(f"profile {path} has no string `system_prompt_template`")
    return template


def data_files(ctx: PhaseContext, params: SftParams) -> list[Path]:
    """The training files named in params, else the latest upstream data file."""
    if params.data is not None:
        if not params.data:
            raise PhaseInputError("`data` is an empty list; name at least one JSONL file")
        return [resolve_path(ctx, p) for p in params.data]
    names = {"scale": "scale_data.jsonl", "generate": "pilot_data.jsonl"}
    return [upstream_file(ctx, ("scale", "generate"), names)]


def fingerprint(ctx: PhaseContext, params: SftParams, files: list[Path],
                template: str | None, seed: int) -> str:
    """What a checkpoint depends on: training params, data, model files, template and seed."""
    key = {"params": params.model_dump(exclude=_RUN_ONLY), "seed": seed, "template": template,
           "data": [sha256_file(f) if f.is_file() else None for f in files],
           "model": ctx.require_model().model_dump(), "model_files": model_files_sha(ctx)}
    return sha256_text(json.dumps(key, sort_keys=True))


def system_prompt(template: str | None, checkpoint: Path | None) -> str | None:
    """The rendered system prompt; a resumed run keeps the one (and date) it started with."""
    if template is None:
        return None
    if checkpoint is not None:
        state = json.loads((checkpoint / STATE_FILE).read_text())
        if state.get("system_prompt") is not None:
            return state["system_prompt"]
    return render_system_prompt(template, datetime.now(UTC).date().isoformat())


def _load_tokenizer(ctx: PhaseContext) -> Any:
    """The clean tokenizer alone (no weights), to validate the data before any model loads."""
    from phasegate.pipeline.model.loader import (
        _load_tokenizer as load_tokenizer,  # the loader's one tokenizer path
    )
    from phasegate.pipeline.model.loader import resolve_model_dir

    spec = ctx.require_model()
    return load_tokenizer(resolve_model_dir(spec.path, base=ctx.model_base), spec)[0]


def _num_processes(ctx: PhaseContext, params: SftParams) -> tuple[int, bool]:
    """How many accelerate workers, and whether they run on CPU."""
    from phasegate.pipeline.data.executors import visible_gpus

    cpu = ctx.require_model().resolved_device() != "cuda"
    default = 1 if cpu else max(1, len(visible_gpus()))
    return params.num_processes or default, cpu


def sft(ctx: PhaseContext) -> int:
    """Validate everything cheap, then train (or re-launch under accelerate)."""
    from phasegate.pipeline.model.loader import require_cuda_for_4bit_training
    from phasegate.pipeline.training import launch

    params = parse_params(ctx, SftParams)
    if params.launcher == "accelerate" and not launch.under_accelerate():
        n, cpu = _num_processes(ctx, params)
        launch.accelerate_argv(Path("context.json"), n, cpu=cpu)  # refuses bad counts early
        return launch.run_under_accelerate(ctx, n, cpu=cpu)
    if launch.under_accelerate():
        launch.prepare_worker()
    try:
        require_cuda_for_4bit_training(ctx.require_model())
        code = _prepared_run(ctx, params)
    except Exception as error:
        launch.record_result(getattr(error, "exit_code", 1))
        raise
    launch.record_result(code)
    return code


def _prepared_run(ctx: PhaseContext, params: SftParams) -> int:
    """Check the data, set stale checkpoints aside, then hand over to the training loop."""
    from phasegate.pipeline.phase_io import prepare_work_dir
    from phasegate.pipeline.training.data import load_examples
    from phasegate.pipeline.training.loop import train

    files = data_files(ctx, params)
    template = system_template(ctx, params)
    seed = ctx.seed if params.seed is None else params.seed
    tok = _load_tokenizer(ctx)
    # Validate once with a stand-in date so a bad template or dataset fails before any hashing.
    load_examples(files, tok, params.max_length, render_system_prompt(template, "2000-01-01")
                  if template else None)
    key = fingerprint(ctx, params, files, template, seed)
    ckpt_root = checkpoint_root(ctx)
    prepare_work_dir(ckpt_root, key)
    last = latest_checkpoint(ckpt_root)
    prompt = system_prompt(template, last)
    examples = load_examples(files, tok, params.max_length, prompt)
    return train(ctx, params, examples=examples, files=files, seed=seed, fingerprint=key,
                 system_prompt=prompt, checkpoint=last)
