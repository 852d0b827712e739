"""Shards of a scale run: the plan, the job file, done markers and the shard worker.

A shard is done when its rows file and its done marker exist, the marker's fingerprint is the
run's, and the rows file still has the sha256 the marker recorded. Both are written atomically,
rows first, so a crash at any point leaves the shard either done or to be run again. Until then a
local worker appends each finished batch to the shard's batch log (`batch_log.py`), and a worker
started again on that shard goes on from the first batch not yet in it: batches are seeded per
batch, so the rows are those of an uninterrupted run.

Worker: `python -m phasegate.pipeline.data.shards JOB_FILE SHARD_INDEX` computes one shard, writes its
files, and prints JSON lines (progress, done) on stdout for the driver.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from phasegate.floor.faults import fault
from phasegate.pipeline.data.batch_log import BatchLog
from phasegate.pipeline.data.pilot import STEPS, GenerateParams, PilotBatch
from phasegate.pipeline.errors import EXIT_INVALID_INPUT, PipelineError
from phasegate.pipeline.files import atomic_write_json, atomic_write_jsonl, sha256_file, sha256_text
from phasegate.pipeline.generation.prompts import SEED_INSTRUCTIONS
from phasegate.pipeline.model.spec import ModelSpec

ProgressFn = Callable[[int, int], None]


class ShardSpec(BaseModel):
    """One shard: its index, how many candidates it generates, and its seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int
    count: int
    seed: int


class ShardJob(BaseModel):
    """Everything a shard worker needs, written once by the driver as `shards/job.json`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelSpec
    model_base: str
    params: GenerateParams
    seed: int
    fingerprint: str
    shard_dir: str
    shards: list[ShardSpec]
    seed_pool: list[str] | None = None  # the seed file's instructions; None: the built-in ones

    def shard(self, index: int) -> ShardSpec:
        """The shard with this index."""
        return next(s for s in self.shards if s.index == index)

    def units(self, index: int) -> int:
        """Progress units of one shard: its batches times the pilot's steps."""
        return -(-self.shard(index).count // self.params.batch_size) * len(STEPS)


def derive_shard_seed(seed: int, index: int) -> int:
    """The seed of shard `index`: independent of how many shards there are or which ran first."""
    return int(hashlib.sha256(f"{seed}:shard:{index}".encode()).hexdigest()[:8], 16)


def plan_shards(count: int, num_shards: int, seed: int) -> list[ShardSpec]:
    """Split `count` over `num_shards` (the first ones take the remainder), each with its seed."""
    base, extra = divmod(count, num_shards)
    return [
        ShardSpec(index=i, count=base + (i < extra), seed=derive_shard_seed(seed, i))
        for i in range(num_shards)
        if base + (i < extra) > 0
    ]


def plan_round(start: int, candidates: int, shard_size: int, seed: int) -> list[ShardSpec]:
    """Shards `start`, `start + 1`, ... of `shard_size` candidates each (the last takes the rest)."""
    return [
        ShardSpec(index=start + i, count=min(shard_size, candidates - i * shard_size),
                  seed=derive_shard_seed(seed, start + i))
        for i in range(-(-candidates // shard_size))
    ]


def rows_path(shard_dir: Path, index: int) -> Path:
    """Where shard `index` keeps its rows."""
    return shard_dir / f"shard-{index:05d}.jsonl"


def marker_path(shard_dir: Path, index: int) -> Path:
    """Where shard `index` keeps its done marker."""
    return shard_dir / f"shard-{index:05d}.done.json"


def batch_log_path(shard_dir: Path, index: int) -> Path:
    """Where shard `index` keeps its finished batches until it is done."""
    return shard_dir / f"shard-{index:05d}.batches.jsonl"


def read_marker(shard_dir: Path, index: int, fingerprint: str) -> dict[str, Any] | None:
    """The done marker of a finished shard, or None when the shard must (re)run."""
    try:
        marker = json.loads(marker_path(shard_dir, index).read_text())
        if marker["fingerprint"] != fingerprint:
            return None
        if sha256_file(rows_path(shard_dir, index)) != marker["rows_sha256"]:
            return None
    except (OSError, ValueError, KeyError):
        return None
    return marker


def write_shard(
    shard_dir: Path, index: int, fingerprint: str, rows: list[dict], provenance: dict,
    resumed_from_batch: int = 0, timing: dict[str, float] | None = None,
) -> Path:
    """Write a shard's rows, then its done marker (the order makes the marker the commit)."""
    path = atomic_write_jsonl(rows_path(shard_dir, index), rows)
    marker = {
        "fingerprint": fingerprint,
        "index": index,
        "rows": len(rows),
        "rows_sha256": sha256_file(path),
        "provenance": provenance,
        "resumed_from_batch": resumed_from_batch,
        "timing": timing,  # model_load_s, gen_s, generated: the budget projection's throughput
    }
    atomic_write_json(marker_path(shard_dir, index), marker)
    return path


def _shard_row(row: dict[str, Any], shard: ShardSpec, seed: int) -> dict[str, Any]:
    """A pilot row made unique across shards, with the seeds it came from."""
    return {**row, "id": f"s{shard.index:05d}-{row['id']}", "shard": shard.index,
            "shard_seed": shard.seed, "seed": seed}


def compute_shard(
    job: ShardJob, index: int, progress: ProgressFn | None = None, log: BatchLog | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Load the model and generate one shard's rows; returns the rows and the model provenance.

    With a `log`, batches already in it are kept, not generated again, and each new batch is added
    to it as soon as it is done; the rows returned are then the log's.
    """
    rows, provenance, _ = compute_shard_timed(job, index, progress, log)
    return rows, provenance


def compute_shard_timed(
    job: ShardJob, index: int, progress: ProgressFn | None = None, log: BatchLog | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, float]]:
    """`compute_shard`, and how long the model load and the generation took (`timing`)."""
    from phasegate.pipeline.engines.engine import engine_record, open_engine
    from phasegate.pipeline.model.loader import load_clean

    shard = job.shard(index)
    started = time.monotonic()
    loaded = load_clean(job.model, base=Path(job.model_base))
    engine = open_engine(loaded, job.model)  # one engine per shard worker, on its one GPU
    timing = {"model_load_s": time.monotonic() - started, "gen_s": 0.0, "generated": 0}
    n_batches = -(-shard.count // job.params.batch_size)

    def report(batch: int, step: str) -> None:
        if progress is not None:
            progress(batch * len(STEPS) + STEPS.index(step), n_batches * len(STEPS))

    pool = SEED_INSTRUCTIONS if job.seed_pool is None else tuple(job.seed_pool)
    pilot = PilotBatch(engine, job.params, shard.seed, report, pool)
    batches = log.finished() if log is not None else []
    for batch in range(len(batches), n_batches):
        report(batch, "instructions")
        size = min(job.params.batch_size, shard.count - batch * job.params.batch_size)
        started = time.monotonic()
        batch_rows = [_shard_row(r, shard, job.seed) for r in pilot.run(batch, size)]
        timing["gen_s"] += time.monotonic() - started
        timing["generated"] += size
        if log is not None:
            log.append(batch, batch_rows)
            if fault("scale_crash_shard") == f"{index}:{batch}":
                os._exit(70)  # killed right after this batch was written
        batches.append(batch_rows)
    if progress is not None:
        progress(n_batches * len(STEPS), n_batches * len(STEPS))
    if log is not None:  # as read back, so a resumed shard and a fresh one hold rows of one making
        batches = log.finished()
    provenance = {**loaded.provenance.to_dict(), "engine": engine_record(engine)}
    return [row for batch_rows in batches for row in batch_rows], provenance, timing


def provenance_sha(provenance: dict[str, Any]) -> str:
    """A stable hash of a provenance record (for checking that shards used one model)."""
    return sha256_text(json.dumps(provenance, sort_keys=True, default=str))


def load_job(path: str | Path) -> ShardJob:
    """Read the job file the driver wrote."""
    return ShardJob.model_validate_json(Path(path).read_text(encoding="utf-8"))


def _say(**event: Any) -> None:
    """One JSON line to the driver."""
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def worker_main(argv: list[str]) -> int:
    """Run one shard as a worker process; exit code 0 when its files are written."""
    from phasegate.pipeline.errors import ContaminationError

    job_file, index = argv[0], int(argv[1])
    job = load_job(job_file)
    shard_dir = Path(job.shard_dir)
    with BatchLog(batch_log_path(shard_dir, index)) as log:
        if read_marker(shard_dir, index, job.fingerprint) is not None:
            _say(event="done", shard=index)  # a worker of an earlier attempt finished it while we waited
            return 0
        resumed_from = len(log.finished())
        if resumed_from:
            print(f"shard {index}: resuming at batch {resumed_from} (earlier batches kept)", file=sys.stderr)
        try:
            rows, provenance, timing = compute_shard_timed(
                job, index, lambda done, total: _say(event="progress", shard=index, done=done,
                                                     total=total), log)
        except ContaminationError as error:
            print(f"shard {index}: STOPPED: {error}", file=sys.stderr)
            return error.exit_code
        except PipelineError as error:
            print(f"shard {index}: error: {error}", file=sys.stderr)
            return error.exit_code
        if fault("scale_crash_shard") == str(index):
            os._exit(70)  # a crash after the work and before the write, as a killed process would
        write_shard(shard_dir, index, job.fingerprint, rows, provenance, resumed_from, timing)
        log.path.unlink()  # the done shard holds every row now
    _say(event="done", shard=index, rows=len(rows))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python -m phasegate.pipeline.data.shards JOB_FILE SHARD_INDEX", file=sys.stderr)
        sys.exit(EXIT_INVALID_INPUT)
    sys.exit(worker_main(sys.argv[1:]))


def shard_throughput(job: ShardJob, generated: list[int]) -> dict[str, float]:
    """The measured rates of the shards this attempt generated, per worker (from their done markers)."""
    timings = [(read_marker(Path(job.shard_dir), i, job.fingerprint) or {}).get("timing") or {}
               for i in generated]
    timings = [t for t in timings if t.get("gen_s") is not None]
    if not timings:
        return {}
    loads = sorted(t["model_load_s"] for t in timings)
    gen_s, made = sum(t["gen_s"] for t in timings), sum(t["generated"] for t in timings)
    found = {"model_load_s": loads[len(loads) // 2], "gen_s": gen_s}
    if made and gen_s > 0:
        found["rows_per_s"] = made / gen_s
    return found
