"""`launcher = "accelerate"`: the argv, GPU binding, and a real one-process CPU launch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from phasegate.pipeline.context import PhaseContext
from phasegate.pipeline.errors import PhaseInputError
from phasegate.pipeline.training import launch
from phasegate.pipeline.training.launch import accelerate_argv, bind_one_gpu
from tests.scale_sft_eval.conftest import (
    SFT_PARAMS,
    events_to,
    read_events,
    run_child,
    sft_root,
    write_context,
)


def test_accelerate_argv() -> None:
    argv = accelerate_argv(Path("/r/ctx.json"), 1, cpu=True)
    assert argv == [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1",
                    "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                    "--cpu", "-m", "phasegate.pipeline", "sft", "--context", "/r/ctx.json"]
    multi = accelerate_argv(Path("c.json"), 4, cpu=False)
    assert multi[multi.index("--num_processes") + 1] == "4" and "--multi_gpu" in multi
    assert "--multi_gpu" not in accelerate_argv(Path("c.json"), 1, cpu=False)
    with pytest.raises(PhaseInputError, match="needs CUDA GPUs"):
        accelerate_argv(Path("c.json"), 2, cpu=True)


def test_each_gpu_worker_sees_only_its_gpu() -> None:
    env = {"LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "CUDA_VISIBLE_DEVICES": "4,6"}
    assert bind_one_gpu(env) == {"CUDA_VISIBLE_DEVICES": "6", "LOCAL_RANK": "0"}
    assert bind_one_gpu({"LOCAL_RANK": "2", "WORLD_SIZE": "4"})["CUDA_VISIBLE_DEVICES"] == "2"
    assert bind_one_gpu({"LOCAL_RANK": "0", "WORLD_SIZE": "1"}) == {}
    assert bind_one_gpu({}) == {}


def test_a_real_accelerate_launch_on_one_cpu_process(tmp_path: Path, tiny_model_dir: Path) -> None:
    params = {**SFT_PARAMS, "launcher": "accelerate", "max_steps": 2}
    context = write_context(sft_root(tmp_path, rows=8), "sft", "sft", tiny_model_dir, params)
    result = run_child("sft", context, tmp_path / "events.jsonl", timeout=180)
    assert result.returncode == 0, result.stderr
    assert "accelerate.commands.launch" in result.stderr
    # stdout carries only the launching process's own outcome line.
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"phase": "sft", "exit_code": 0}]
    artifacts = tmp_path / "run" / "artifacts" / "sft"
    metrics = json.loads((artifacts / "sft_metrics.json").read_text())
    assert metrics["processes"] == 1 and metrics["steps"] == 2
    assert (artifacts / "adapter" / "adapter_model.safetensors").is_file()
    events = read_events(tmp_path / "events.jsonl")  # relayed from the launched worker
    assert {"train_loss", "tokens_per_s"} <= {e["name"] for e in events if e["type"] == "metric"}
    assert any(e["type"] == "progress" and e["step"] == "step 2/2" for e in events)


def test_relayed_events_and_the_workers_exit_code_come_back(tmp_path: Path, monkeypatch) -> None:
    # A stand-in for `accelerate launch` that does what its rank-0 worker does: report events
    # into the relay file, record the phase's exit code, and fail as accelerate would (exit 1).
    script = (
        "import json, os, sys\n"
        "with open(os.environ['PHASEGATE_EVENTS_RELAY'], 'a') as f:\n"
        "    f.write(json.dumps({'type': 'metric', 'name': 'train_loss', 'value': 1.5}) + '\\n')\n"
        "open(os.environ['PHASEGATE_LAUNCH_RESULT'], 'w').write('3\\n')\n"
        "sys.exit(1)\n"
    )
    monkeypatch.setattr(launch, "accelerate_argv", lambda *a, **k: [sys.executable, "-c", script])
    context = PhaseContext(phase_id="sft", kind="sft", run_dir=tmp_path, session_dir=tmp_path,
                           artifacts_dir=tmp_path / "sft")
    with events_to(tmp_path / "events.jsonl"):
        assert launch.run_under_accelerate(context, 1, cpu=True) == 3
    assert read_events(tmp_path / "events.jsonl") == [
        {"type": "metric", "name": "train_loss", "value": 1.5}]
