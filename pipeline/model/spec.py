"""The session file's `[model]` table; importable without torch so a session file validates fast."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from phasegate.pipeline.errors import CudaRequiredError


class ModelSpec(BaseModel):
    """The session file's `[model]` table: which base model every built-in phase loads, and how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(
        description="A local folder written by save_pretrained, or a hub id (org/name) that is "
        "already in the local Hugging Face cache; relative folders are read from the session folder."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Weight dtype; auto = bfloat16 on a GPU that supports it, else float16 "
        "on GPU, float32 on CPU.",
    )
    quantization: Literal["none", "nf4", "int8"] = Field(
        "none",
        description="bitsandbytes quantization at load time; nf4 is what QLoRA trains on "
        "(needs a CUDA GPU for training).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="Where the model runs; auto = CUDA when usable, else CPU with a warning, except in a "
        "GPU session ([session] gpu_hourly_usd or gpu set), where auto means cuda. A model phase that "
        "needs CUDA and finds it unusable exits 2 (the session stops), saying what torch and the driver report.",
    )
    engine: Literal["hf", "vllm"] = Field(
        "hf",
        description="What generates and judges in the pilot and the scale: hf = transformers generate "
        "(length-bucketed batches), vllm = vLLM's offline engine (continuous batching; install "
        "phasegate[vllm]). Same prompts as token ids, stop strings and output checks, seeded sampling; the load "
        "checks, SFT and evaluation always run on transformers.",
    )
    hf_cache: Literal["dynamic", "static"] = Field(
        "dynamic",
        description="engine = 'hf': the KV cache of generate; static is allocated once per batch for its "
        "longest row (with torch.compile on a GPU it avoids re-tracing), same outputs.",
    )
    engine_memory: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="engine = 'vllm': the share of the GPU's memory vLLM reserves for weights and KV "
        "cache (vLLM's gpu_memory_utilization; on a CPU, the share of RAM); default 0.85 on CUDA, 0.15 on CPU.",
    )
    sentinel_max: float = Field(
        0.70,
        ge=0.0,
        le=1.0,
        description="Highest sentinel instruction-following rate a base "
        "model may show; above it the model counts as contaminated and the session stops.",
    )
    trust_remote_code: bool = Field(
        False,
        description="Allow the model folder's own Python code to run (only for folders you trust).",
    )

    def resolved_device(self) -> str:
        """The device this spec runs on, with `auto` decided by what torch sees.

        `cuda` without usable CUDA is a CudaRequiredError that says what torch, torch.cuda and the driver
        report: a GPU session never falls back to CPU (it would bill GPU hours for CPU speed).
        """
        if self.device == "cpu":
            return "cpu"
        from phasegate.pipeline.versions import cuda_status

        usable, report = cuda_status()
        if usable:
            return "cuda"
        if self.device == "cuda":
            raise CudaRequiredError(no_cuda_message(report))
        return "cpu"

    def resolved_dtype(self, device: str | None = None) -> Any:
        """The torch dtype of the weights, with `auto` decided by the device (`device` when already resolved:
        resolving probes CUDA and NVML again)."""
        import torch

        if self.dtype != "auto":
            return getattr(torch, self.dtype)
        if (device or self.resolved_device()) == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32


def no_cuda_message(report: str) -> str:
    """What a GPU session says when CUDA is not usable: what was found, and the two ways out."""
    return (
        "this is a GPU session ([model] device = 'cuda', or [session] gpu_hourly_usd / gpu set with "
        f"device = 'auto') but CUDA is not usable here: {report}. Install the CUDA build of torch that "
        "matches the driver (https://pytorch.org/get-started/locally/), or, for a CPU session, set "
        "[model] device = 'auto' or 'cpu' and remove [session] gpu_hourly_usd and gpu"
    )
