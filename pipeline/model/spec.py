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
        "auto", description="Where the model runs; auto = CUDA when available, else CPU."
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
        """The device this spec runs on, with `auto` decided by what torch sees."""
        import torch

        if self.device == "cuda" and not torch.cuda.is_available():
            raise CudaRequiredError(
                f"[model] device = 'cuda' but torch {torch.__version__} sees no CUDA GPU; "
                "set device = 'auto' or 'cpu', or run on a GPU machine"
            )
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    def resolved_dtype(self) -> Any:
        """The torch dtype of the weights, with `auto` decided by the device."""
        import torch

        if self.dtype != "auto":
            return getattr(torch, self.dtype)
        if self.resolved_device() == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
