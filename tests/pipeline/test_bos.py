"""BOS per the model's own convention: added to whole sequences exactly when its tokenizer does so."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from phasegate.pipeline.generation.critic import score_ab_plain
from phasegate.pipeline.generation.generate import GenerationSettings, generate_texts
from phasegate.pipeline.model.contamination import check_template_markers, check_token_delta
from phasegate.pipeline.model.loader import LoadedModel, ModelSpec, load_clean
from phasegate.pipeline.tokenizer import CleanTokenizer
from phasegate.pipeline.training.data import IGNORE_INDEX, collate, encode_example
from tests.pipeline.conftest import forward_inputs

PROMPTS = ["Instruction: Name three fruits.\nResponse:", "Instruction: hi\nResponse:", "x"]
ROW = {"instruction": "Name two colors.", "response": "Red and blue."}


def _hf_tokenizer(model_dir: Path, post_processor: str = "keep") -> object:
    """The tiny model's tokenizer; `post_processor` "none" drops its BOS, "bos_eos" adds EOS too."""
    from tokenizers import processors
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    bos, eos = (tok.bos_token, tok.bos_token_id), (tok.eos_token, tok.eos_token_id)
    if post_processor == "none":  # GPT-2 style: a BOS token declared, never put in front
        tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single="$A", pair="$A $B"
        )
    elif post_processor == "bos_eos":  # a default mode that also appends EOS
        tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos[0]} $A {eos[0]}", pair=f"{bos[0]} $A {eos[0]} $B", special_tokens=[bos, eos]
        )
    return tok


@pytest.fixture(scope="module")
def no_bos_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny model with a tokenizer that declares BOS but, like GPT-2's, never starts with it."""
    out = tmp_path_factory.mktemp("tiny-no-bos")
    shutil.copytree(tiny_model_dir, out, dirs_exist_ok=True)
    _hf_tokenizer(tiny_model_dir, "none").save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def no_bos(no_bos_model_dir: Path) -> LoadedModel:
    """The no-BOS tiny model through the clean loader, checks included."""
    return load_clean(ModelSpec(path=str(no_bos_model_dir)))


def test_a_whole_sequence_starts_with_bos_exactly_once(loaded: LoadedModel) -> None:
    tok = loaded.tokenizer
    bos = tok.hf_tokenizer.bos_token_id
    assert tok.adds_bos and (tok.bos_token_id, tok.bos_token) == (bos, "<s>")
    for text in PROMPTS:
        ids = tok.encode_sequence(text)
        assert ids == [bos, *tok.encode(text)] == tok.hf_tokenizer(text)["input_ids"]
        assert ids.count(bos) == 1
        assert bos not in tok.encode(text)  # a piece for concatenation gets none


def test_declared_but_unused_or_undeclared_bos_is_never_added(tiny_model_dir: Path) -> None:
    unused = CleanTokenizer(_hf_tokenizer(tiny_model_dir, "none"))
    undeclared_hf = _hf_tokenizer(tiny_model_dir, "none")
    undeclared_hf.bos_token = None  # like Qwen: no BOS token at all
    undeclared = CleanTokenizer(undeclared_hf)
    for tok in (unused, undeclared):
        assert not tok.adds_bos and tok.bos_token is None and tok.sequence_start() == []
        for text in PROMPTS:
            raw = tok.hf_tokenizer(text, add_special_tokens=False)["input_ids"]
            assert tok.encode_sequence(text) == raw
        assert check_token_delta(tok, PROMPTS).passed


def test_bos_comes_after_the_left_pads(loaded: LoadedModel) -> None:
    tok = loaded.tokenizer
    batch = tok.encode_batch(PROMPTS)
    expected = tok.hf_tokenizer(PROMPTS, padding=True, return_tensors="pt")  # default mode: BOS only
    assert torch.equal(batch["input_ids"], expected["input_ids"])
    for row, mask, text in zip(batch["input_ids"], batch["attention_mask"], PROMPTS, strict=True):
        first = int(mask.argmax())
        assert row[:first].tolist() == [tok.pad_token_id] * first and bool(mask[first:].all())
        assert row[first:].tolist() == tok.encode_sequence(text)


def test_eos_is_never_added_even_where_the_default_mode_appends_it(tiny_model_dir: Path) -> None:
    hf = _hf_tokenizer(tiny_model_dir, "bos_eos")
    assert hf("hi")["input_ids"][-1] == hf.eos_token_id
    tok = CleanTokenizer(hf)
    assert tok.adds_bos
    batch = tok.encode_batch(PROMPTS)
    real = batch["input_ids"][batch["attention_mask"].bool()].tolist()
    assert hf.eos_token_id not in real and hf.eos_token_id not in tok.encode_sequence(PROMPTS[0])
    assert check_token_delta(tok, PROMPTS).passed
    assert check_template_markers(tok, PROMPTS).passed


def test_sft_example_starts_with_bos_and_learns_only_the_response(loaded: LoadedModel) -> None:
    tok = loaded.tokenizer
    example = encode_example(tok, ROW, None)
    response = tok.encode(" Red and blue.") + [min(tok.eos_token_ids)]
    assert example.input_ids[0] == tok.bos_token_id
    assert list(example.input_ids).count(tok.bos_token_id) == 1  # none before the response
    n_prompt = len(example.input_ids) - len(response)
    assert list(example.input_ids[n_prompt:]) == response == list(example.labels[n_prompt:])
    assert list(example.labels[:n_prompt]) == [IGNORE_INDEX] * n_prompt  # BOS included
    packed = collate([[example, example]], tok.pad_token_id, packed=True)
    starts = (packed["position_ids"][0] == 0).nonzero().flatten().tolist()
    assert starts == [0, len(example.input_ids)]
    assert [int(packed["input_ids"][0, s]) for s in starts] == [tok.bos_token_id] * 2


def test_sft_example_without_a_bos_convention_has_none(no_bos: LoadedModel) -> None:
    tok = no_bos.tokenizer
    example = encode_example(tok, ROW, None)
    assert tok.hf_tokenizer.bos_token_id not in example.input_ids
    assert example.input_ids[: len(tok.encode("Instruction:"))] == tuple(tok.encode("Instruction:"))


def _first_forward_rows(model: object, run) -> list[list[int]]:
    """The real (unpadded) token ids of every row in the model's first forward during `run()`."""
    first = forward_inputs(model, run)[0]
    return [row[m.bool()].tolist() for row, m in zip(first["input_ids"], first["attention_mask"], strict=True)]


def test_generation_and_critic_prompts_start_with_bos(loaded: LoadedModel) -> None:
    model, tok = loaded.model, loaded.tokenizer
    settings = GenerationSettings(max_new_tokens=2, batch_size=8, bucket=False)
    for run in (
        lambda: generate_texts(model, tok, PROMPTS, settings),
        lambda: score_ab_plain(model, tok, PROMPTS, batch_size=8),
    ):
        rows = _first_forward_rows(model, run)
        assert sorted(rows) == sorted(tok.encode_sequence(p) for p in PROMPTS)
        assert all(row[0] == tok.bos_token_id and row.count(tok.bos_token_id) == 1 for row in rows)


def test_generation_without_a_bos_convention_sends_the_text_only(no_bos: LoadedModel) -> None:
    tok = no_bos.tokenizer
    settings = GenerationSettings(max_new_tokens=2, batch_size=8, bucket=False)
    rows = _first_forward_rows(no_bos.model, lambda: generate_texts(no_bos.model, tok, PROMPTS, settings))
    assert rows == [tok.encode(p) for p in PROMPTS]


def test_provenance_records_the_bos_decision(loaded: LoadedModel, no_bos: LoadedModel) -> None:
    assert (loaded.provenance.bos_added, loaded.provenance.bos_token) == (True, "<s>")
    assert (no_bos.provenance.bos_added, no_bos.provenance.bos_token) == (False, None)
    assert no_bos.provenance.to_dict()["bos_added"] is False
    for prov in (loaded.provenance, no_bos.provenance):
        checks = {c.name: c for c in prov.checks}
        assert checks["template_markers"].passed and checks["token_delta"].passed
        assert checks["token_delta"].evidence["bos_added"] is prov.bos_added
