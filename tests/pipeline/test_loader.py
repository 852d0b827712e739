"""The clean loader: neutralised chat templates, the tokenizer wrapper, errors, provenance."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from phasegate.pipeline.errors import CudaRequiredError, ModelLoadError, PipelineError
from phasegate.pipeline.files import sha256_file
from phasegate.pipeline.model.loader import (
    LoadedModel,
    ModelSpec,
    load_clean,
    require_cuda_for_4bit_training,
)

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")


def test_chat_template_is_neutralised(templated_model_dir: Path) -> None:
    loaded = load_clean(ModelSpec(path=str(templated_model_dir)), checks=False)
    assert loaded.provenance.chat_template_removed is True
    with pytest.raises(ValueError):
        loaded.tokenizer.hf_tokenizer.apply_chat_template([{"role": "user", "content": "hi"}])


def test_wrapper_refuses_add_special_tokens(loaded: LoadedModel) -> None:
    with pytest.raises(TypeError):
        loaded.tokenizer.encode("hello", add_special_tokens=True)  # type: ignore[call-arg]


def test_a_piece_gets_no_bos_where_the_raw_tokenizer_would(loaded: LoadedModel) -> None:
    tok = loaded.tokenizer
    raw_default = tok.hf_tokenizer("Instruction: hi")["input_ids"]
    assert raw_default[0] == tok.hf_tokenizer.bos_token_id  # the tokenizer's default adds BOS
    assert tok.encode("Instruction: hi") == raw_default[1:]


def test_batch_encoding_is_left_padded(loaded: LoadedModel) -> None:
    batch = loaded.tokenizer.encode_batch(["a much longer prompt than the other", "short"])
    mask = batch["attention_mask"]
    assert mask[1, 0] == 0 and mask[1, -1] == 1 and bool(mask[0].all())


def test_provenance_hashes_the_files(loaded: LoadedModel, tiny_model_dir: Path) -> None:
    prov = loaded.provenance
    assert prov.config_sha256 == sha256_file(tiny_model_dir / "config.json")
    assert prov.weight_files == {
        "model.safetensors": sha256_file(tiny_model_dir / "model.safetensors")
    }
    assert prov.weights_sha256 and prov.tokenizer_sha256
    assert (prov.dtype, prov.quantization, prov.device) == ("float32", "none", "cpu")
    assert [c.name for c in prov.checks] == ["template_markers", "token_delta", "sentinel"]
    assert all(c.passed for c in prov.checks)


def test_missing_path_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match="no-such-model.*does not exist"):
        load_clean(ModelSpec(path=str(missing)))


def test_folder_without_config_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a model folder.*config.json"):
        load_clean(ModelSpec(path=str(tmp_path)))


def test_uncached_hub_id_says_how_to_get_it() -> None:
    with pytest.raises(ModelLoadError, match="nor in the Hugging Face cache.*download"):
        load_clean(ModelSpec(path="nobody-org/not-a-cached-model"))


def test_relative_path_is_read_from_the_session_folder(tiny_model_dir: Path) -> None:
    spec = ModelSpec(path=tiny_model_dir.name)
    loaded = load_clean(spec, base=tiny_model_dir.parent, checks=False)
    assert loaded.provenance.resolved_path == str(tiny_model_dir.resolve())


def test_spec_is_strict_and_documented() -> None:
    with pytest.raises(ValidationError):
        ModelSpec(path="x", precision="fp8")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        ModelSpec(path="x", quantization="gptq")  # type: ignore[arg-type]
    assert all(field.description for field in ModelSpec.model_fields.values())
    assert ModelSpec(path="x").sentinel_max == 0.70


@NO_CUDA
def test_4bit_training_on_cpu_is_refused_with_a_way_out() -> None:
    with pytest.raises(CudaRequiredError, match="CUDA GPU.*zero gradients.*quantization = 'none'"):
        require_cuda_for_4bit_training(ModelSpec(path="x", quantization="nf4"))
    require_cuda_for_4bit_training(ModelSpec(path="x", quantization="none"))


@NO_CUDA
def test_cuda_device_without_cuda_is_an_error() -> None:
    with pytest.raises(CudaRequiredError, match="device = 'auto' or 'cpu'"):
        ModelSpec(path="x", device="cuda").resolved_device()


def test_errors_share_one_base() -> None:
    assert issubclass(ModelLoadError, PipelineError) and issubclass(
        CudaRequiredError, PipelineError
    )


@NO_CUDA
def test_nf4_loads_for_inference_on_cpu_but_not_for_training(tiny_model_dir: Path) -> None:
    pytest.importorskip("bitsandbytes")
    spec = ModelSpec(path=str(tiny_model_dir), quantization="nf4")
    loaded = load_clean(spec, checks=False)
    assert type(loaded.model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    assert loaded.provenance.quantization == "nf4"
    ids = loaded.tokenizer.encode_batch(["Instruction: hi\nResponse:"])
    assert loaded.model(**ids).logits.shape[-1] == len(loaded.tokenizer)
    with pytest.raises(CudaRequiredError):
        require_cuda_for_4bit_training(spec)
