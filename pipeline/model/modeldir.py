"""Recognise what a model folder holds: a full model or a LoRA adapter, with what is missing."""

from __future__ import annotations

import enum
import json
from pathlib import Path

from phasegate.pipeline.errors import PipelineError

_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_TOKENIZER = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


class ModelDirKind(enum.StrEnum):
    """What a folder written by save_pretrained holds."""

    FULL = "full_model"
    ADAPTER = "lora_adapter"


class ModelDirError(PipelineError):
    """A folder is neither a complete model nor a complete LoRA adapter."""


def _missing_shards(folder: Path, index_name: str) -> list[str]:
    """The weight shards a sharded checkpoint's index names that are not in the folder."""
    try:
        index = json.loads((folder / index_name).read_text(encoding="utf-8"))
        shards = sorted(set(index["weight_map"].values()))
    except (OSError, ValueError, KeyError, AttributeError) as error:
        raise ModelDirError(f"{folder / index_name} is not a readable weight index: {error}") from error
    return [name for name in shards if not (folder / name).is_file()]


def _full_model_gaps(folder: Path) -> list[str]:
    """What a full model folder lacks (empty when complete)."""
    gaps = []
    if not (folder / "config.json").is_file():
        gaps.append("config.json")
    if not any((folder / name).is_file() for name in _TOKENIZER):
        gaps.append("a tokenizer (" + " or ".join(_TOKENIZER) + ")")
    index = next((name for name in _INDEXES if (folder / name).is_file()), None)
    if index is not None:
        gaps += [f"shard {name} named in {index}" for name in _missing_shards(folder, index)]
    elif not any((folder / name).is_file() for name in _WEIGHTS):
        gaps.append("weights (" + " or ".join(_WEIGHTS + _INDEXES) + ")")
    return gaps


def _adapter_gaps(folder: Path) -> list[str]:
    """What a LoRA adapter folder lacks (empty when complete)."""
    gaps = []
    if not (folder / "adapter_config.json").is_file():
        gaps.append("adapter_config.json")
    if not any((folder / name).is_file() for name in _ADAPTER_WEIGHTS):
        gaps.append("adapter weights (" + " or ".join(_ADAPTER_WEIGHTS) + ")")
    return gaps


def describe_model_dir(path: str | Path) -> ModelDirKind:
    """Whether `path` is a complete full model or LoRA adapter; ModelDirError says what is missing."""
    folder = Path(path)
    if not folder.is_dir():
        raise ModelDirError(f"model folder {folder} does not exist or is not a folder")
    if (folder / "adapter_config.json").is_file():
        gaps = _adapter_gaps(folder)
        if gaps:
            raise ModelDirError(f"{folder} looks like a LoRA adapter but lacks {', '.join(gaps)}")
        return ModelDirKind.ADAPTER
    gaps = _full_model_gaps(folder)
    if not gaps:
        return ModelDirKind.FULL
    raise ModelDirError(
        f"{folder} is neither a full model nor a LoRA adapter: as a full model it lacks "
        f"{', '.join(gaps)}; as an adapter it lacks {', '.join(_adapter_gaps(folder))}"
    )
