"""Phases resume in place from their state folder: after kill -9 of the controller, an operator stop, a retry.

Real controller (`python -m phasegate`), real SQLite journal, real child processes, a real tiny model on CPU.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from phasegate.session.runs import open_run
from tests.conftest import run_cli, status_json

# No test may reach a model hub; child processes inherit this too.
os.environ["HF_HUB_OFFLINE"] = "1"

from phasegate.demo.tinymodel import build_tiny_model  # noqa: E402
from phasegate.pipeline.__main__ import main as run_phase  # noqa: E402
from tests.scale_sft_eval.conftest import training_rows, write_jsonl  # noqa: E402

SFT_WITH = '''data = ["train.jsonl"]
max_length = 96
batch_size = 4
max_steps = 6
save_every = 2
gradient_checkpointing = false
lora_r = 4
lora_alpha = 8
lora_dropout = 0.1
log_every = 1
learning_rate = 0.01
'''
ADAPTER = Path("artifacts/train/adapter/adapter_model.safetensors")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama-shaped model, built offline once for this module."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"), arch="llama", seed=0)


def sft_session(folder: Path, model: Path, phase_extra: str = "") -> Path:
    """A session of one `sft` phase named 'train' (dropout on, so the RNG matters) over 24 short rows."""
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "train.jsonl", training_rows(24))
    session = folder / "s.toml"
    session.write_text(f'[session]\nname = "resume"\nseed = 5\n\n[model]\npath = "{model}"\n\n'
                       f'[[phases]]\nid = "train"\nkind = "sft"\n{phase_extra}[phases.with]\n{SFT_WITH}')
    return session


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> dict[str, torch.Tensor]:
    """The adapter of an uninterrupted run of the same session."""
    folder = tmp_path_factory.mktemp("straight")
    result = run_cli("run", sft_session(folder, model_dir), "--run-dir", folder / "run", timeout=300)
    assert result.returncode == 0, result.stderr
    return load_file(folder / "run" / ADAPTER)


def start(args: list, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A controller in the background, as an operator's terminal would run it."""
    return subprocess.Popen([sys.executable, "-m", "phasegate", *map(str, args)], env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for_progress(run_dir: Path, phase: str, done: int, controller: subprocess.Popen) -> None:
    """Poll `status --json` until the phase's journaled progress reaches `done`."""
    while True:
        assert controller.poll() is None, f"the controller ended (exit {controller.returncode}) before step {done}"
        status = run_cli("status", run_dir, "--json") if (run_dir / "state.db").exists() else None
        if status is not None and status.returncode == 0:
            progress = next(p["progress"] for p in json.loads(status.stdout)["phases"] if p["id"] == phase)
            if progress is not None and progress[0] >= done:
                return


def interrupt(how: str, run_dir: Path, controller: subprocess.Popen) -> tuple[str, ...]:
    """End the run under way: SIGKILL its controller, or an operator stop; returns the flags its resume needs."""
    if how == "kill":
        os.kill(controller.pid, signal.SIGKILL)
        controller.wait(timeout=60)
        return ()
    stopped = run_cli("stop", run_dir, "--reason", "x")
    assert stopped.returncode == 0, stopped.stderr
    assert controller.wait(timeout=60) == 3
    return ("--force",)  # a run an operator stopped on purpose is resumed only on purpose


def resume(run_dir: Path, *flags: str) -> None:
    """`phasegate resume` (without any fault) carries the run to its end."""
    resumed = run_cli("resume", run_dir, *flags, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert status_json(run_dir)["state"] == "completed"


def newest_checkpoint(run_dir: Path) -> int:
    """The newest complete step checkpoint in the phase's state folder."""
    folders = (run_dir / "state" / "train" / "checkpoints").glob("step-*")
    return max(int(p.name.removeprefix("step-")) for p in folders if (p / "trainer_state.json").is_file())


def assert_resumed_in_place(run_dir: Path, step: int, straight: dict[str, torch.Tensor]) -> None:
    """The last attempt started at `step`, said so in the journal, and made the uninterrupted run's adapter."""
    metrics = json.loads((run_dir / "artifacts" / "train" / "sft_metrics.json").read_text())
    assert (metrics["resumed_from_step"], metrics["steps_this_run"]) == (step, 6 - step)
    assert status_json(run_dir)["metrics"]["train"]["resumed_from_step"] == step
    logs = [e.data["message"] for e in open_run(run_dir).journal.events_since(0) if e.type == "log"]
    assert any(f"resuming from {run_dir / 'state' / 'train'}" in m and f"(step {step} of 6)" in m for m in logs)
    # Bit for bit on CPU: optimizer, schedule, RNG (dropout) and data order all continue (see loop.train).
    resumed = load_file(run_dir / ADAPTER)
    assert resumed.keys() == straight.keys()
    assert all(torch.equal(resumed[name], straight[name]) for name in resumed)


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_sft_resumes_at_its_last_checkpoint_after_a_kill_or_a_stop(tmp_path: Path, model_dir: Path,
                                                                   straight: dict, how: str) -> None:
    run_dir = tmp_path / "run"
    # Held after step 5 (checkpoints at 2 and 4): the controller is ended mid-training, never between runs.
    controller = start(["run", sft_session(tmp_path, model_dir), "--run-dir", run_dir],
                       {"PHASEGATE_FAULT": "sft_hold_after_step:5"})
    wait_for_progress(run_dir, "train", 5, controller)
    flags = interrupt(how, run_dir, controller)
    assert newest_checkpoint(run_dir) == 4
    resume(run_dir, *flags)
    assert status_json(run_dir)["phases"][0]["attempts"] == 2
    assert_resumed_in_place(run_dir, 4, straight)


def test_sft_retry_after_a_crash_resumes_from_the_saved_step(tmp_path: Path, model_dir: Path,
                                                             straight: dict) -> None:
    run_dir = tmp_path / "run"
    # Attempt 1 dies right after step 3 (its checkpoint is step 2); the retry runs without the crash.
    result = run_cli("run", sft_session(tmp_path, model_dir, "retries = 1\n"), "--run-dir", run_dir,
                     env={**os.environ, "PHASEGATE_FAULT": "sft_exit_after_step:3:1"}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert status_json(run_dir)["phases"][0]["attempts"] == 2
    assert_resumed_in_place(run_dir, 2, straight)


# A command phase that keeps its step counter in $PHASEGATE_STATE_DIR: steps 1-6, each written down once.
COUNTER = '''
import json, os, pathlib, sys, time
state, artifacts = pathlib.Path(os.environ["PHASEGATE_STATE_DIR"]), pathlib.Path(os.environ["PHASEGATE_ARTIFACTS"])
attempt, mode, ledger = int(os.environ["PHASEGATE_ATTEMPT"]), sys.argv[1], sys.argv[2]
events = os.fdopen(int(os.environ["PHASEGATE_EVENTS_FD"]), "w", buffering=1, closefd=False)
counter = state / "step"
start = int(counter.read_text()) if counter.exists() else 0
(artifacts / "started_after.txt").write_text(str(start))
for step in range(start + 1, 7):
    with open(ledger, "a") as f:
        f.write(f"{step} {attempt}\\n")
    (state / "step.tmp").write_text(str(step))
    os.replace(state / "step.tmp", counter)
    events.write(json.dumps({"type": "progress", "done": step, "total": 6}) + "\\n")
    if step == 3 and attempt == 1:
        if mode == "retry":
            sys.exit(1)
        while True:  # held until its controller is killed or stopped
            time.sleep(60)
'''


@pytest.mark.parametrize("how", ["kill", "stop", "retry"])
def test_a_command_phase_resumes_from_its_state_folder(tmp_path: Path, how: str) -> None:
    (tmp_path / "counter.py").write_text(COUNTER)
    session = tmp_path / "s.toml"
    session.write_text(f'[session]\nname = "counter"\n\n[[phases]]\nid = "count"\nretries = 1\n'
                       f'run = ["{sys.executable}", "counter.py", "{how}", "{{session_dir}}/ledger.txt"]\n')
    run_dir = tmp_path / "run"
    if how == "retry":
        assert run_cli("run", session, "--run-dir", run_dir).returncode == 0
    else:
        controller = start(["run", session, "--run-dir", run_dir])
        wait_for_progress(run_dir, "count", 3, controller)
        resume(run_dir, *interrupt(how, run_dir, controller))
    ledger = [line.split() for line in (tmp_path / "ledger.txt").read_text().splitlines()]
    assert [int(step) for step, _ in ledger] == [1, 2, 3, 4, 5, 6]  # no step done twice
    assert {attempt for step, attempt in ledger if int(step) > 3} == {"2"}
    assert (run_dir / "artifacts" / "count" / "started_after.txt").read_text() == "3"
    assert (run_dir / "state" / "count" / "step").read_text() == "6"


SCALE_SESSION = '''[session]
name = "scale"
seed = 5

[model]
path = "{model}"

[[phases]]
id = "pilot"
kind = "generate"
[phases.with]
count = 4
batch_size = 4
max_new_tokens = 12
instruction_max_new_tokens = 10
filter_instructions = false
keep_truncated_instructions = true

[[phases]]
id = "scale"
kind = "scale"
[phases.with]
{scale_with}'''
# Two shards of two batches each, so a worker can die with one batch of its shard written.
SCALE_WITH = {"count": 8, "num_shards": 2, "workers": 2, "batch_size": 2}


def uninterrupted_scale(root: Path, run_dir: Path, model: Path) -> Path:
    """The same scale phase over the same pilot, run by hand from start to end; returns its artifacts folder."""
    context = {"phase_id": "scale", "kind": "scale", "run_dir": str(root / "run"), "session_dir": str(root),
               "artifacts_dir": str(root / "run" / "artifacts" / "scale"), "model": {"path": str(model)},
               "params": SCALE_WITH, "seed": 5,
               "upstream": {"pilot": {"kind": "generate", "state": "passed", "gates": {},
                                      "artifacts_dir": str(run_dir / "artifacts" / "pilot")}}}
    root.mkdir()
    (root / "context.json").write_text(json.dumps(context))
    assert run_phase(["scale", "--context", str(root / "context.json")]) == 0
    return root / "run" / "artifacts" / "scale"


def test_scale_resumes_inside_a_shard_whose_worker_died(tmp_path: Path, model_dir: Path) -> None:
    scale_with = "".join(f"{key} = {value}\n" for key, value in SCALE_WITH.items())
    (tmp_path / "s.toml").write_text(SCALE_SESSION.format(model=model_dir, scale_with=scale_with))
    run_dir = tmp_path / "run"
    # Shard 1's worker dies right after its batch 0 is durably written: the phase fails, the run stops.
    crashed = run_cli("run", tmp_path / "s.toml", "--run-dir", run_dir, timeout=300,
                      env={**os.environ, "PHASEGATE_FAULT": "scale_crash_shard:1:0"})
    assert crashed.returncode == 3, crashed.stderr
    log = run_dir / "state" / "scale" / "shards" / "shard-00001.batches.jsonl"
    assert [json.loads(line)["batch"] for line in log.read_text().splitlines()] == [0]
    resume(run_dir, "--retry")  # the operator's retry of the failed phase: a new attempt, the same state folder
    artifacts = run_dir / "artifacts" / "scale"
    manifest = json.loads((artifacts / "session_manifest.json").read_text())
    assert manifest["shards"]["reused"] == [0] and manifest["shards"]["resumed_at_batch"] == {"1": 1}
    assert "shard 1: resuming at batch 1" in (run_dir / "logs" / "scale.log").read_text()
    reference = uninterrupted_scale(tmp_path / "reference", run_dir, model_dir)
    assert len((artifacts / "scale_candidates.jsonl").read_text().splitlines()) == 8
    for name in ("scale_candidates.jsonl", "scale_data.jsonl"):
        assert (artifacts / name).read_bytes() == (reference / name).read_bytes(), name
