"""Where shards run: local worker processes (one per GPU, or N on CPU) or Ray tasks.

Both call `on_progress(shard, done, total)` as work advances and return each run shard's
outcome: 0 when its files are written, else the worker's exit code (1 for a Ray task error).
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from phasegate.pipeline.data.shards import ShardJob, compute_shard_timed, write_shard

ProgressFn = Callable[[int, int, int], None]
# Env vars a worker must not inherit: it reports on stdout, never on the controller's fd.
_DROPPED_ENV = ("PHASEGATE_EVENTS_FD",)


def visible_gpus() -> list[str]:
    """The GPU ids this process may use, as CUDA_VISIBLE_DEVICES entries."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def local_slots(n_shards: int, workers: int | None, use_gpus: bool) -> list[dict[str, str]]:
    """One env overlay per concurrent worker: a GPU each, or a fair share of the CPU cores."""
    gpus = visible_gpus() if use_gpus else []
    if gpus:
        chosen = gpus[: workers or len(gpus)][: max(1, n_shards)]
        return [{"CUDA_VISIBLE_DEVICES": gpu} for gpu in chosen]
    cores = os.cpu_count() or 1
    n = max(1, min(n_shards, workers or cores))
    # Workers sharing the cores must not each start a thread per core; an explicit
    # OMP_NUM_THREADS in the environment is the operator's choice and wins.
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, cores // n))
    return [{"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}] * n


def _spawn(job_file: Path, index: int, overlay: Mapping[str, str]) -> subprocess.Popen:
    """Start one shard worker; its stdout is the driver's, its stderr goes to the phase log."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    env.update(overlay)
    argv = [sys.executable, "-m", "phasegate.pipeline.data.shards", str(job_file), str(index)]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)


def _handle_line(line: str, on_progress: ProgressFn) -> None:
    """Forward one worker line; anything that is not our JSON goes to stderr."""
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        sys.stderr.write(line)
        return
    if event.get("event") == "progress":
        on_progress(event["shard"], event["done"], event["total"])


def run_local(
    job: ShardJob, job_file: Path, pending: list[int], slots: list[dict[str, str]],
    on_progress: ProgressFn,
) -> dict[int, int]:
    """Run `pending` shards in worker processes, at most one per slot at a time."""
    queue, outcome = list(pending), {}
    free = list(range(len(slots)))
    running: dict[int, tuple[subprocess.Popen, int, int]] = {}  # fd -> (process, shard, slot)
    with selectors.DefaultSelector() as selector:
        while queue or running:
            while queue and free:
                slot, index = free.pop(0), queue.pop(0)
                proc = _spawn(job_file, index, slots[slot])
                running[proc.stdout.fileno()] = (proc, index, slot)
                selector.register(proc.stdout, selectors.EVENT_READ)
            for key, _ in selector.select():
                proc, index, slot = running[key.fd]
                line = proc.stdout.readline()
                if line:
                    _handle_line(line, on_progress)
                    continue
                selector.unregister(proc.stdout)
                del running[key.fd]
                outcome[index] = proc.wait()
                free.append(slot)
    return outcome


def _ray_shard(job_json: str, index: int) -> tuple[list[dict], dict, dict]:
    """The Ray task body: compute one shard and return its rows and timing (the driver writes them)."""
    job = ShardJob.model_validate_json(job_json)
    return compute_shard_timed(job, index)


def run_ray(
    job: ShardJob, pending: list[int], *, address: str | None, num_gpus: float | None,
    num_cpus: int | None, on_progress: ProgressFn,
) -> dict[int, int]:
    """Run `pending` shards as Ray tasks; the driver writes each result as it arrives."""
    try:
        import ray
    except ImportError as error:
        from phasegate.pipeline.errors import PhaseInputError

        raise PhaseInputError(
            "executor = 'ray' needs Ray; install it with `pip install 'phasegate[ray]'`, "
            "or use executor = 'local'"
        ) from error
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address else num_cpus,
                 include_dashboard=False, log_to_driver=True)
    try:
        gpus = num_gpus if num_gpus is not None else (
            1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0)
        task = ray.remote(num_gpus=gpus, num_cpus=1, max_retries=0)(_ray_shard)
        payload = job.model_dump_json()
        refs = {task.remote(payload, index): index for index in pending}
        return _collect(ray, job, refs, on_progress)
    finally:
        if started:
            ray.shutdown()


def _collect(ray, job: ShardJob, refs: dict, on_progress: ProgressFn) -> dict[int, int]:
    """Write every finished Ray task's shard as it arrives; a failed task is reported, not fatal."""
    outcome, waiting = {}, list(refs)
    while waiting:
        [ready], waiting = ray.wait(waiting, num_returns=1)
        index = refs[ready]
        try:
            rows, provenance, timing = ray.get(ready)
        except Exception as error:  # a RayTaskError wraps whatever the task raised
            print(f"shard {index}: Ray task failed: {error}", file=sys.stderr)
            outcome[index] = 1
            continue
        write_shard(Path(job.shard_dir), index, job.fingerprint, rows, provenance, timing=timing)
        on_progress(index, job.units(index), job.units(index))
        outcome[index] = 0
    return outcome
