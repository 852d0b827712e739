"""The `sft` phase: data refused before any model loads, the LoRA gradient check, resume, metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from phasegate.pipeline.errors import PhaseInputError
from phasegate.pipeline.model import loader
from phasegate.pipeline.model.modeldir import ModelDirKind, describe_model_dir
from phasegate.pipeline.model.spec import ModelSpec
from phasegate.pipeline.training.data import (
    IGNORE_INDEX,
    collate,
    encode_example,
    pack,
    render_system_prompt,
)
from phasegate.pipeline.training.lora import (
    GradientCheckError,
    LoraSettings,
    attach_lora,
    check_gradients,
    gradient_problems,
)
from phasegate.pipeline.training.sft import SftParams, system_prompt
from tests.scale_sft_eval.conftest import (
    SFT_PARAMS,
    run_child,
    run_phase,
    sft_root,
    training_rows,
    write_context,
    write_jsonl,
)

GOOD = {"instruction": "Name two colors.", "response": "Red and blue."}


@pytest.fixture
def no_model_load(monkeypatch) -> None:
    """Make any model load fail the test: bad data must be refused before one."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the data was validated")
    monkeypatch.setattr(loader, "load_clean", refuse)


@pytest.mark.parametrize(("rows", "message"), [
    ([], r"train\.jsonl has no rows"),
    ([GOOD, {"instruction": "x"}, "not json", {"instruction": "", "response": "y"}, GOOD],
     r"3 of 5 rows do not match the schema \{instruction, response\}: line 2 has no string "
     r"'response'; line 3 is not JSON .*; line 4 has an empty 'instruction'"),
    ([GOOD, {"instruction": "List " + "very " * 80 + "long things.", "response": "ok"}],
     r"1 of 2 rows exceed max_length = 96 tokens: line 2 has \d+ tokens"),
])
def test_bad_data_is_refused_before_a_model_loads(tmp_path: Path, tiny_model_dir: Path, capsys,
                                                  no_model_load, rows: list, message: str) -> None:
    write_jsonl(tmp_path / "train.jsonl", rows)
    context = write_context(tmp_path, "sft", "sft", tiny_model_dir, SFT_PARAMS)
    assert run_phase("sft", context) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "train.jsonl") in err and re.search(message, err), err
    assert not (tmp_path / "run" / "state" / "sft" / "checkpoints").exists()


def test_nf4_training_on_cpu_is_refused_first(tmp_path: Path, tiny_model_dir: Path, capsys,
                                              no_model_load) -> None:
    context = write_context(tmp_path, "sft", "sft", tiny_model_dir, SFT_PARAMS)
    data = json.loads(context.read_text())
    data["model"]["quantization"] = "nf4"
    context.write_text(json.dumps(data))
    assert run_phase("sft", context) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_loss_is_only_on_the_response(loaded_tokenizer) -> None:
    example = encode_example(loaded_tokenizer, GOOD, "Today is 2026-01-02.")
    prompt_len = sum(label == IGNORE_INDEX for label in example.labels)
    text = loaded_tokenizer.decode(example.input_ids[:prompt_len])
    assert text == "Today is 2026-01-02.\n\nInstruction: Name two colors.\nResponse:"
    assert loaded_tokenizer.decode(example.labels[prompt_len:]) == " Red and blue."
    assert example.labels[-1] in loaded_tokenizer.eos_token_ids
    assert all(label != IGNORE_INDEX for label in example.labels[prompt_len:])


def test_packed_examples_do_not_attend_to_each_other(loaded_model) -> None:
    model, tok = loaded_model
    first, second = (encode_example(tok, row, None) for row in training_rows(2, seed=4))
    assert len(pack([first, second], 96)) == 1
    with torch.no_grad():
        packed = model(**collate([[first, second]], tok.pad_token_id, packed=True),
                       use_cache=False).loss
        padded = model(**collate([[first], [second]], tok.pad_token_id, packed=False),
                       use_cache=False).loss
        # Control: the same row under one causal mask over both examples scores differently.
        joined = collate([[first, second]], tok.pad_token_id, packed=False)
        leaky = model(**joined, use_cache=False).loss
    assert packed.item() == pytest.approx(padded.item(), rel=1e-5)
    assert abs(leaky.item() - padded.item()) > 1e-4


def _one_step(model) -> None:
    """A real forward, backward and optimizer step on one tiny batch."""
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12]])
    model(input_ids=ids, labels=ids).loss.backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()


def test_gradient_check_catches_4bit_on_cpu_for_real(tiny_model_dir: Path) -> None:
    # The pitfall itself: nf4 on CPU after the loader's eval-mode checks gives zero LoRA grads.
    quantized = loader.load_clean(ModelSpec(path=str(tiny_model_dir), quantization="nf4",
                                            device="cpu"), strict=False)
    model = attach_lora(quantized.model, LoraSettings(4, 8, 0.0, "all-linear"), quantized=True,
                        checkpointing=False)
    _one_step(model)
    problems = gradient_problems(model, step=1)
    assert any("q_proj.lora_B" in p and "(all zeros)" in p for p in problems)
    with pytest.raises(GradientCheckError) as caught:
        check_gradients(model, step=1)
    assert caught.value.exit_code == 3 and "quantization = 'none'" in str(caught.value)


def test_gradient_check_passes_a_healthy_model(tiny_model_dir: Path) -> None:
    plain = loader.load_clean(ModelSpec(path=str(tiny_model_dir)), strict=False)
    model = attach_lora(plain.model, LoraSettings(4, 8, 0.0, "all-linear"), quantized=False,
                        checkpointing=True)
    _one_step(model)
    assert gradient_problems(model, step=1) == []  # B moves, A is exactly zero (B starts at 0)
    assert all(not torch.any(p.grad != 0) for n, p in model.named_parameters() if "lora_A" in n)
    model.zero_grad()
    _one_step(model)
    assert gradient_problems(model, step=2) == []


@pytest.mark.parametrize(("pattern", "step"), [("lora_B", 1), ("lora_A", 2)])
def test_gradient_check_stops_the_phase(tmp_path: Path, tiny_model_dir: Path, capsys,
                                        monkeypatch, pattern: str, step: int) -> None:
    monkeypatch.setenv("PHASEGATE_FAULT", f"sft_zero_grads:{pattern}")
    context = write_context(sft_root(tmp_path), "sft", "sft", tiny_model_dir, SFT_PARAMS)
    assert run_phase("sft", context) == 3
    err = capsys.readouterr().err
    assert f"after optimizer step {step}, 14 of 28 LoRA parameters received no gradient" in err
    assert f"layers.0.self_attn.q_proj.{pattern}.default.weight (all zeros)" in err
    assert not (tmp_path / "run" / "artifacts" / "sft" / "adapter").exists()


def test_training_writes_the_adapter_metrics_and_provenance(trained: dict) -> None:
    artifacts = trained["artifacts"]
    assert describe_model_dir(artifacts / "adapter") is ModelDirKind.ADAPTER
    metrics = json.loads((artifacts / "sft_metrics.json").read_text())
    assert metrics["steps"] == 4 and len(metrics["losses"]) == 4
    assert metrics["gradient_check"] == {"passed": True, "checked_at_steps": [1, 2]}
    assert metrics["tokens_per_s"] > 0 and metrics["peak_memory_mb"] > 0
    assert metrics["peak_memory_source"] == "ru_maxrss"
    provenance = json.loads((artifacts / "adapter" / "training_provenance.json").read_text())
    assert provenance["base_model"]["weights_sha256"] and provenance["steps"] == 4
    assert provenance["data"][0]["sha256"] and provenance["params"]["lora_r"] == 4
    names = {e["name"] for e in trained["events"] if e["type"] == "metric"}
    assert {"train_loss", "tokens_per_s", "peak_memory_mb", "final_loss"} <= names
    steps = [e["step"] for e in trained["events"] if e["type"] == "progress"]
    assert steps[-1] == "step 4/4"
    # Run by hand (no state folder in the context): checkpoints go where the controller would keep them.
    assert not (artifacts / "checkpoints").exists()
    checkpoints = trained["root"] / "run" / "state" / "sft" / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("step-*")) == ["step-000002", "step-000004"]
    assert not (artifacts / ".accelerate").exists()  # single process is the default


def test_a_crashed_run_resumes_from_its_checkpoint(tmp_path: Path, tiny_model_dir: Path,
                                                   trained: dict, capsys) -> None:
    context = write_context(sft_root(tmp_path), "sft", "sft", tiny_model_dir, SFT_PARAMS)
    crashed = run_child("sft", context, tmp_path / "events.jsonl",
                        env={"PHASEGATE_FAULT": "sft_exit_after_step:3"})
    assert crashed.returncode == 70, crashed.stderr
    checkpoints = tmp_path / "run" / "state" / "sft" / "checkpoints"
    assert [p.name for p in checkpoints.glob("step-*")] == ["step-000002"]
    assert run_phase("sft", context) == 0
    assert "resuming from" in capsys.readouterr().err
    artifacts = tmp_path / "run" / "artifacts" / "sft"
    metrics = json.loads((artifacts / "sft_metrics.json").read_text())
    full = json.loads((trained["artifacts"] / "sft_metrics.json").read_text())
    assert metrics["resumed_from_step"] == 2 and metrics["gradient_check"]["checked_at_steps"] == [3]
    assert metrics["losses"] == pytest.approx(full["losses"][2:], rel=1e-6)
    # Same data order, optimizer, schedule and RNG state: on CPU the resumed adapter is the uninterrupted
    # one bit for bit (see loop.train).
    resumed = load_file(artifacts / "adapter" / "adapter_model.safetensors")
    straight = load_file(trained["artifacts"] / "adapter" / "adapter_model.safetensors")
    assert resumed.keys() == straight.keys()
    assert all(torch.equal(resumed[k], straight[k]) for k in resumed)


def test_system_prompt_from_a_profile(tmp_path: Path, tiny_model_dir: Path) -> None:
    (tmp_path / "profile.toml").write_text('system_prompt_template = "Today is {date}."\n')
    params = {**SFT_PARAMS, "profile": "profile.toml", "max_steps": 1}
    context = write_context(sft_root(tmp_path, rows=8), "sft", "sft", tiny_model_dir, params)
    assert run_phase("sft", context) == 0
    provenance = json.loads(
        (tmp_path / "run/artifacts/sft/adapter/training_provenance.json").read_text())
    assert re.fullmatch(r"Today is \d{4}-\d{2}-\d{2}\.", provenance["system_prompt"])


def test_system_prompt_rules(tmp_path: Path) -> None:
    assert render_system_prompt("Date: {date}", "2026-01-02") == "Date: 2026-01-02"
    with pytest.raises(PhaseInputError, match=r"uses \['name'\]; only \{date\}"):
        render_system_prompt("Hi {name}", "2026-01-02")
    # A resumed run keeps the prompt (and date) it started with.
    (tmp_path / "trainer_state.json").write_text(json.dumps({"system_prompt": "Today is 1999."}))
    assert system_prompt("Today is {date}.", tmp_path) == "Today is 1999."
    assert system_prompt(None, tmp_path) is None


def test_defaults_match_the_reference() -> None:
    params = SftParams()
    assert params.launcher == "none" and params.gradient_checkpointing is True
    assert params.target_modules == "all-linear" and params.packing is False
