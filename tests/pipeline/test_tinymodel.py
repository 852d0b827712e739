"""The tiny model builder: deterministic, loadable, both architectures."""

from __future__ import annotations

from pathlib import Path

from phasegate.demo.tinymodel import build_tiny_model
from phasegate.pipeline.files import sha256_file


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir())}


def test_same_seed_builds_identical_files(tmp_path: Path, tiny_model_dir: Path) -> None:
    again = build_tiny_model(tmp_path / "again", seed=0)
    assert _hashes(again) == _hashes(tiny_model_dir)


def test_other_seed_gives_other_weights(tmp_path: Path, tiny_model_dir: Path) -> None:
    other = build_tiny_model(tmp_path / "other", seed=5)
    assert sha256_file(other / "model.safetensors") != sha256_file(
        tiny_model_dir / "model.safetensors"
    )


def test_builds_loadable_llama_and_qwen2(tiny_model_dir: Path, tiny_qwen_dir: Path) -> None:
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(tiny_model_dir).model_type == "llama"
    config = AutoConfig.from_pretrained(tiny_qwen_dir)
    assert (config.model_type, config.hidden_size, config.num_hidden_layers) == ("qwen2", 64, 2)


def test_chat_template_only_on_request(tiny_model_dir: Path, templated_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(tiny_model_dir).chat_template is None
    assert "<|im_start|>" in AutoTokenizer.from_pretrained(templated_model_dir).chat_template


def test_a_shape_and_dtype_make_the_model_of_that_shape(tmp_path: Path) -> None:
    # The GPU benchmark's path (7B widths in bf16), at a size the CPU builds at once.
    import torch
    from transformers import AutoModelForCausalLM

    shape = {"num_hidden_layers": 3, "num_key_value_heads": 1, "vocab_size": 1000, "intermediate_size": 96}
    folder = build_tiny_model(tmp_path / "m", arch="qwen2", shape=shape, dtype=torch.bfloat16)
    from safetensors import safe_open

    model = AutoModelForCausalLM.from_pretrained(folder)
    assert {k: getattr(model.config, k) for k in shape} == shape
    with safe_open(folder / "model.safetensors", "pt") as weights:  # as saved, whatever a load defaults to
        assert {weights.get_tensor(name).dtype for name in weights.keys()} == {torch.bfloat16}
