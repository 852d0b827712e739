"""describe_model_dir: full models (single-file and sharded), LoRA adapters, and what is missing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from phasegate.pipeline.model.modeldir import ModelDirError, ModelDirKind, describe_model_dir


def test_the_tiny_model_is_a_full_model(tiny_model_dir: Path) -> None:
    assert describe_model_dir(tiny_model_dir) is ModelDirKind.FULL


def test_a_sharded_model_needs_every_shard(tmp_path: Path, tiny_model_dir: Path) -> None:
    folder = tmp_path / "sharded"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    (folder / "model-00002-of-00002.safetensors").write_bytes(b"")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors",
                            "b": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert describe_model_dir(folder) is ModelDirKind.FULL
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(ModelDirError, match="shard model-00002-of-00002.safetensors named in"):
        describe_model_dir(folder)


def test_an_adapter_folder(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelDirError, match="looks like a LoRA adapter but lacks adapter weights"):
        describe_model_dir(tmp_path)
    (tmp_path / "adapter_model.safetensors").write_bytes(b"x")
    assert describe_model_dir(tmp_path) is ModelDirKind.ADAPTER


def test_a_folder_that_is_neither_says_what_each_lacks(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelDirError) as caught:
        describe_model_dir(tmp_path)
    message = str(caught.value)
    assert "a tokenizer" in message and "weights" in message and "adapter_config.json" in message
    with pytest.raises(ModelDirError, match="does not exist"):
        describe_model_dir(tmp_path / "missing")
