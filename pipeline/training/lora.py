"""LoRA on a loaded model: adapters, gradient checkpointing, and the LoRA gradient check."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from phasegate.pipeline.errors import EXIT_STOPPED, PipelineError

# With peft's default init, B starts at zero, so dL/dA = B^T (...) is exactly zero on the first
# step and only B can show a gradient; A must show one from the second step on.
_ZERO_AT_FIRST_STEP = ("lora_A", "lora_embedding_A")
MAX_NAMED = 20


class GradientCheckError(PipelineError):
    """LoRA parameters received no gradient: training would silently learn nothing."""

    exit_code = EXIT_STOPPED


@dataclass(frozen=True)
class LoraSettings:
    """The adapter's shape."""

    r: int
    alpha: int
    dropout: float
    target_modules: str | list[str]


def enable_checkpointing(model: Any) -> str:
    """Turn on activation (gradient) checkpointing, non-reentrant; returns the method used."""
    kwargs = {"use_reentrant": False}
    # transformers 5 renamed the method; the old name still works there but warns.
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        name = "activation_checkpointing_enable"
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        name = "gradient_checkpointing_enable"
    return name


def attach_lora(model: Any, settings: LoraSettings, *, quantized: bool, checkpointing: bool) -> Any:
    """The model wrapped with a trainable LoRA adapter (base weights frozen), in train mode."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    model.config.use_cache = False  # training never reuses a KV cache
    if quantized:
        # Casts norms to fp32 and freezes the base; checkpointing is enabled below instead.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if checkpointing:
        enable_checkpointing(model)
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    peft_model.train()
    return peft_model


def lora_parameters(model: Any) -> list[tuple[str, torch.nn.Parameter]]:
    """The trainable LoRA parameters by name."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]


def _may_be_zero(name: str, step: int) -> bool:
    """Whether a zero gradient is expected for this parameter at this optimizer step."""
    return step <= 1 and any(part in name for part in _ZERO_AT_FIRST_STEP)


def gradient_problems(model: Any, step: int) -> list[str]:
    """LoRA parameters whose gradient is missing or (where it cannot be) all zeros."""
    params = lora_parameters(model)
    if not params:
        return ["(no trainable LoRA parameters at all)"]
    problems = []
    for name, param in params:
        if param.grad is None:
            problems.append(f"{name} (no gradient)")
        elif not _may_be_zero(name, step) and not bool(torch.any(param.grad != 0)):
            problems.append(f"{name} (all zeros)")
    return problems


def check_gradients(model: Any, step: int) -> None:
    """Raise GradientCheckError naming every LoRA parameter that received no gradient."""
    problems = gradient_problems(model, step)
    if not problems:
        return
    named = "\n  ".join(problems[:MAX_NAMED])
    more = f"\n  ... and {len(problems) - MAX_NAMED} more" if len(problems) > MAX_NAMED else ""
    raise GradientCheckError(
        f"after optimizer step {step}, {len(problems)} of {len(lora_parameters(model))} LoRA "
        f"parameters received no gradient:\n  {named}{more}\n"
        "Training would silently learn nothing. Known cause: a 4-bit (nf4) model on CPU after "
        "an eval-mode forward; train nf4 on a CUDA GPU, or set [model] quantization = 'none'."
    )


def zero_gradients_of(model: Any, names: Sequence[str]) -> int:
    """Fault injection for tests: zero the gradient of parameters whose name contains a pattern."""
    hooked = 0
    for name, param in lora_parameters(model):
        if any(pattern in name for pattern in names):
            param.register_hook(torch.zeros_like)
            hooked += 1
    return hooked
