"""Fixtures for the pipeline tests: real tiny models built offline once per test session."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# No test may reach a model hub; child processes inherit this too.
os.environ["HF_HUB_OFFLINE"] = "1"

from phasegate.demo.tinymodel import build_tiny_model  # noqa: E402
from phasegate.pipeline.model.loader import LoadedModel, ModelSpec, load_clean  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama-shaped model and tokenizer, without a chat template."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"), arch="llama", seed=0)


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2-shaped model."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"), arch="qwen2", seed=1)


@pytest.fixture(scope="session")
def templated_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model whose tokenizer carries a ChatML chat template."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-chat"), with_chat_template=True)


@pytest.fixture(scope="session")
def contaminated_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A tiny model whose tokenizer turns the prompt delimiter "Response:" into a special token."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("tiny-contaminated")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": ["Response:"]})
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.resize_token_embeddings(len(tokenizer))
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def loaded(tiny_model_dir: Path) -> LoadedModel:
    """The tiny model loaded through the clean loader (checks run once per session)."""
    return load_clean(ModelSpec(path=str(tiny_model_dir)))


def forward_inputs(model: Any, run: Callable[[], object]) -> list[dict[str, Any]]:
    """The keyword inputs (input_ids, attention_mask, ...) of every forward the model ran during `run()`."""
    calls: list[dict[str, Any]] = []
    handle = model.register_forward_pre_hook(lambda _module, _args, kwargs: calls.append(dict(kwargs)),
                                             with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    return calls
