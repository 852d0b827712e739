"""`launcher = "accelerate"`: the sft phase re-runs itself under `accelerate launch` (data parallel).

The phase process (the controller's child) starts `python -m accelerate.commands.launch ... -m
phasegate.pipeline sft --context COPY`, relays the rank-0 worker's events (written to a file,
since accelerate closes inherited descriptors) to the controller, and exits with the worker's
exit code (accelerate itself turns every failure into 1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from phasegate.pipeline.context import PhaseContext
from phasegate.pipeline.errors import PhaseInputError
from phasegate.pipeline.files import atomic_write_json, atomic_write_text

UNDER_ACCELERATE_ENV = "PHASEGATE_UNDER_ACCELERATE"
RELAY_ENV = "PHASEGATE_EVENTS_RELAY"
RESULT_ENV = "PHASEGATE_LAUNCH_RESULT"
_POLL_S = 0.5


def under_accelerate() -> bool:
    """Whether this process is a worker started by our own accelerate launch."""
    return os.environ.get(UNDER_ACCELERATE_ENV) == "1"


def accelerate_argv(context_file: Path, num_processes: int, *, cpu: bool) -> list[str]:
    """The argv that runs the sft phase under `accelerate launch` with `num_processes` workers."""
    if num_processes < 1:
        raise PhaseInputError(f"num_processes must be at least 1, not {num_processes}")
    if cpu and num_processes > 1:
        raise PhaseInputError("launcher = 'accelerate' with more than one process needs CUDA "
                              "GPUs; on CPU set num_processes = 1 (or launcher = 'none')")
    argv = [sys.executable, "-m", "accelerate.commands.launch",
            "--num_processes", str(num_processes), "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no"]
    if cpu:
        argv.append("--cpu")
    elif num_processes > 1:
        argv.append("--multi_gpu")
    return argv + ["-m", "phasegate.pipeline", "sft", "--context", str(context_file)]


def bind_one_gpu(env: Mapping[str, str]) -> dict[str, str]:
    """Env overrides that give a multi-GPU worker only its own GPU, seen as cuda:0.

    The clean loader places a model on cuda:0; with one visible device per worker (and
    LOCAL_RANK 0 to match) every rank loads onto its own GPU. NCCL works across such processes.
    """
    world = int(env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE", "1")))
    if world <= 1 or "LOCAL_RANK" not in env:
        return {}
    visible = env.get("CUDA_VISIBLE_DEVICES")
    devices = visible.split(",") if visible else [str(i) for i in range(world)]
    return {"CUDA_VISIBLE_DEVICES": devices[int(env["LOCAL_RANK"])].strip(), "LOCAL_RANK": "0"}


def prepare_worker() -> None:
    """In a launched worker: bind its GPU and, on rank 0, report events into the relay file."""
    os.environ.update(bind_one_gpu(os.environ))
    os.environ.pop("PHASEGATE_EVENTS_FD", None)
    relay = os.environ.get(RELAY_ENV)
    if relay and os.environ.get("RANK", "0") == "0":
        fd = os.open(relay, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.environ["PHASEGATE_EVENTS_FD"] = str(fd)


def record_result(code: int) -> None:
    """In a launched worker (rank 0): leave the phase's exit code for the launching process."""
    path = os.environ.get(RESULT_ENV)
    if path and os.environ.get("RANK", "0") == "0":
        atomic_write_text(path, f"{code}\n")


def _forward(ctx: PhaseContext, line: str) -> None:
    """Re-emit one relayed event through this process's reporter."""
    try:
        event: dict[str, Any] = json.loads(line)
    except json.JSONDecodeError:
        return
    kind = event.pop("type", None)
    method = getattr(ctx.reporter, kind, None) if kind in {
        "progress", "metric", "artifact", "heartbeat", "log"} else None
    if method is not None:
        method(**event)


class _Relay:
    """Reads the relay file as it grows and forwards complete lines."""

    def __init__(self, ctx: PhaseContext, path: Path) -> None:
        self.ctx, self.path, self.offset, self.partial = ctx, path, 0, ""

    def pump(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
            self.offset = handle.tell()
        *lines, self.partial = (self.partial + chunk).split("\n")
        for line in lines:
            _forward(self.ctx, line)


def run_under_accelerate(ctx: PhaseContext, num_processes: int, *, cpu: bool) -> int:
    """Run the phase under accelerate launch and return the rank-0 worker's exit code."""
    work = ctx.artifacts_dir / ".accelerate"
    work.mkdir(parents=True, exist_ok=True)
    context_file = atomic_write_json(work / "context.json", ctx.model_dump(mode="json"))
    relay, result = work / "events.jsonl", work / "exit_code"
    relay.unlink(missing_ok=True)
    result.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PHASEGATE_EVENTS_FD"}
    env.update({UNDER_ACCELERATE_ENV: "1", RELAY_ENV: str(relay), RESULT_ENV: str(result)})
    argv = accelerate_argv(context_file, num_processes, cpu=cpu)
    print(f"sft: launching {' '.join(argv)}", file=sys.stderr)
    # Workers' stdout goes to stderr: this process's stdout carries only its own outcome line.
    proc = subprocess.Popen(argv, env=env, stdout=sys.stderr.fileno())
    pump = _Relay(ctx, relay)
    while True:
        try:
            proc.wait(timeout=_POLL_S)
            break
        except subprocess.TimeoutExpired:
            pump.pump()
    pump.pump()
    if result.exists():
        return int(result.read_text().strip())
    return proc.returncode or 1
