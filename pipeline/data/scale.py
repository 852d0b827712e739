"""The `scale` phase: the pilot's generation, sharded to `count` candidates, merged and QC'd.

It refuses to start unless the pilot phase passed with every gate pass, warn or waived. It
generates with the pilot's parameters (read from the pilot's session_manifest.json; any
generation field given here overrides it) over `num_shards` deterministic shards, run as local
worker processes or Ray tasks. Shards live in the phase's state folder
(`RUN_DIR/state/<phase>/shards/`), which outlives the attempt: finished shards are never run
twice, and a local worker that dies mid-shard leaves its finished batches, which the next attempt
keeps (a Ray task, which may run where that folder is not, redoes its whole shard). The merged
rows, in shard order and then row order, are de-duplicated by instruction (exact after
normalization, and near-duplicates by MinHash LSH, `near_dup_threshold`) across all shards and QC'd
with the pilot's thresholds.

Outputs: scale_data.jsonl (kept rows), scale_candidates.jsonl, qc_summary.json (the pilot's
format, for the same `threshold` gate), provenance.json, session_manifest.json.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, create_model

from phasegate.pipeline.context import PhaseContext, UpstreamPhase
from phasegate.pipeline.data.dedup import drop_repeated_instructions
from phasegate.pipeline.data.executors import local_slots, run_local, run_ray
from phasegate.pipeline.data.pilot import (
    JUDGING_FIELDS,
    SEED_INSTRUCTIONS,
    GenerateParams,
    pool_key,
    seed_pool,
)
from phasegate.pipeline.data.qc import merge_thresholds, qc_metrics, write_qc_summary
from phasegate.pipeline.data.rounds import SAFETY_MARGIN, TargetFields, next_round, target_metrics
from phasegate.pipeline.data.shards import (
    ShardJob,
    ShardSpec,
    marker_path,
    plan_round,
    plan_shards,
    provenance_sha,
    read_marker,
    rows_path,
    shard_throughput,
)
from phasegate.pipeline.engines.engine import require_engine
from phasegate.pipeline.errors import (
    EXIT_INVALID_INPUT,
    EXIT_STOPPED,
    PhaseInputError,
    PipelineError,
)
from phasegate.pipeline.files import (
    atomic_write_json,
    atomic_write_jsonl,
    read_jsonl,
    sha256_file,
    sha256_text,
)
from phasegate.pipeline.phase_io import (
    environment,
    file_entry,
    model_files_sha,
    parse_params,
    prepare_work_dir,
    write_output,
)

PASSING_GATES = frozenset({"pass", "warn", "waived"})
_OWN_FIELDS = ("count", "seed", "target_kept", "max_candidates")


class ScaleOptions(TargetFields):
    """The `scale` phase's own `[phases.with]` keys (the generation keys are added below)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pilot: str | None = Field(
        None, description="Id of the pilot phase; default: the latest earlier `generate` phase."
    )
    count: int = Field(
        15000, ge=1, description="How many instruction candidates to generate; with `target_kept`, "
        "how many the first round generates (default then: target_kept over the pilot's kept / "
        f"candidates, plus {SAFETY_MARGIN:.0%}).",
    )
    num_shards: int = Field(10, ge=1, description="Resumable, deterministic units of work.")
    seed: int | None = Field(None, description="Base seed of the shards; default: the session seed.")
    executor: Literal["local", "ray"] = Field(
        "local", description="local: worker processes on this machine; ray: Ray tasks."
    )
    workers: int | None = Field(
        None, ge=1, description="local: concurrent workers (default one per visible GPU, on CPU "
        "one per core; never more than shards); ray: CPUs of a Ray started here.",
    )
    ray_address: str | None = Field(
        None, description="Ray cluster address, e.g. 'ray://head:10001' or 'auto'; default: "
        "use the Ray this process already joined, else start a local one.",
    )
    num_gpus: float | None = Field(
        None, ge=0, description="GPUs per Ray task; default: 1 when the cluster has GPUs, else 0."
    )



def _inherited_fields() -> dict[str, Any]:
    """Every pilot generation field, optional here: None means 'as the pilot had it'."""
    fields = {}
    for name, info in GenerateParams.model_fields.items():
        if name not in _OWN_FIELDS:
            note = f"{info.description} Default: the pilot's value."
            fields[name] = (info.annotation | None, Field(None, description=note))
    return fields


ScaleParams = create_model(
    "ScaleParams", __base__=ScaleOptions, __doc__="The `scale` phase's `[phases.with]` table.",
    **_inherited_fields(),
)


def _refuse(ctx: PhaseContext, message: str) -> PhaseInputError:
    """An input error that says the scale phase refused to start."""
    return PhaseInputError(f"phase {ctx.phase_id!r} (scale) refuses to start: {message}")


def _gate_fix(ctx: PhaseContext, gate: str, status: str) -> str:
    """How to get past one pilot gate."""
    if status == "pending":
        return (f"decide it first: `phasegate approve {ctx.run_dir} {gate}` (or waive it with "
                f"`phasegate waive {ctx.run_dir} {gate} --reason '...'`)")
    return (f"fix the pilot (adjust its [phases.with] and re-run it) or, if you accept the "
            f"result, `phasegate waive {ctx.run_dir} {gate} --reason '...'`")


def find_pilot(ctx: PhaseContext, name: str | None) -> tuple[str, UpstreamPhase]:
    """The pilot phase, vetted: it passed and none of its gates failed or is undecided."""
    if name is not None:
        if name not in ctx.upstream:
            known = ", ".join(ctx.upstream) or "none"
            raise _refuse(ctx, f"no earlier phase {name!r} (earlier phases: {known}); "
                               "set `pilot` to the id of the pilot phase")
        found = (name, ctx.upstream[name])
    else:
        found = ctx.latest_upstream("generate")
        if found is None:
            raise _refuse(ctx, "no earlier `generate` phase to scale up; add the pilot before "
                               "it or set `pilot` to the pilot phase's id")
    phase_id, pilot = found
    for gate, status in pilot.gates.items():
        if status not in PASSING_GATES:
            raise _refuse(ctx, f"pilot phase {phase_id!r} gate {gate!r} is {status}; "
                               + _gate_fix(ctx, gate, status))
    if pilot.state != "passed":
        raise _refuse(ctx, f"pilot phase {phase_id!r} is {pilot.state}, not passed; run it to "
                           f"completion first (`phasegate resume {ctx.run_dir}`)")
    return phase_id, pilot


def _pilot_manifest(pilot_id: str, pilot: UpstreamPhase) -> tuple[dict[str, Any], str]:
    """The pilot's session manifest and its sha256."""
    path = pilot.artifacts_dir / "session_manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")), sha256_file(path)
    except (OSError, json.JSONDecodeError) as error:
        raise PhaseInputError(
            f"scale reads the pilot's generation parameters from {path} (phase {pilot_id!r}), "
            f"but cannot: {error}; the pilot must be a `generate` phase that finished"
        ) from error


def first_round(params: Any, manifest: dict[str, Any]) -> int:
    """Candidates of the first round: `count`, or with a target and no `count` given, the target
    over the pilot's measured kept / candidates plus the safety margin (never past the cap)."""
    if params.target_kept is None or "count" in params.model_fields_set:
        return params.count
    counts = manifest.get("counts") or {}
    kept, candidates = counts.get("n_kept"), counts.get("n_candidates")
    measured = isinstance(kept, int) and isinstance(candidates, int) and kept > 0 and candidates > 0
    acceptance = kept / candidates if measured else 1.0
    planned = math.ceil(params.target_kept * (1 + SAFETY_MARGIN) / acceptance)
    return max(1, min(planned, params.candidate_cap))


def generation_params(params: Any, manifest: dict[str, Any]) -> GenerateParams:
    """The pilot's generation parameters with this phase's overrides and `count` (the first
    round's candidates when there is a target; each shard runs to its own count, never a target)."""
    inherited = dict(manifest.get("params", {}))
    overrides = {k: getattr(params, k) for k in _inherited_fields() if getattr(params, k) is not None}
    thresholds = {**inherited.get("thresholds", {}), **(params.thresholds or {})}
    merged = {**inherited, **overrides, "thresholds": thresholds,
              "count": first_round(params, manifest), "seed": None, "target_kept": None,
              "max_candidates": None}
    try:
        return GenerateParams.model_validate(merged)
    except ValidationError as error:
        raise PhaseInputError(f"the pilot's parameters cannot be used for scale:\n{error}") from error


def _fingerprint(ctx: PhaseContext, gen: GenerateParams, seed: int, num_shards: int,
                 pool: tuple[str, ...]) -> str:
    """What the shard files depend on: parameters, seed pool, seed, shard split and the model's files."""
    key = {"params": gen.model_dump(exclude=JUDGING_FIELDS | {"target_kept", "max_candidates"}),
           **pool_key(pool), "seed": seed,
           "num_shards": num_shards, "model": ctx.require_model().model_dump(exclude={"engine_memory"}),
           "model_files": model_files_sha(ctx)}
    return sha256_text(json.dumps(key, sort_keys=True))


class ShardsFailed(PipelineError):
    """Some shards did not finish; the finished ones are kept for the re-run."""

    def __init__(self, outcome: dict[int, int]) -> None:
        failed = {i: code for i, code in sorted(outcome.items()) if code != 0}
        codes = set(failed.values())
        self.exit_code = next((c for c in (EXIT_STOPPED, EXIT_INVALID_INPUT) if c in codes), 1)
        listed = ", ".join(f"{i} (exit {c})" for i, c in failed.items())
        super().__init__(f"shard(s) {listed} failed (see the phase log); finished shards are "
                         f"kept: re-run the phase to run only shards {sorted(failed)}")


class Progress:
    """Progress across shards, in the pilot's units (batches x steps), sent to the controller."""

    def __init__(self, ctx: PhaseContext, job: ShardJob, reused: list[int]) -> None:
        self.ctx, self.job = ctx, job
        self.total = sum(job.units(s.index) for s in job.shards)
        self.done = {i: job.units(i) for i in reused}

    def __call__(self, shard: int, done: int, total: int) -> None:
        self.done[shard] = done
        finished = sum(self.done.get(s.index) == self.job.units(s.index) for s in self.job.shards)
        self.ctx.reporter.progress(sum(self.done.values()), self.total,
                                   step=f"shards {finished}/{len(self.job.shards)} done")


def _execute(ctx: PhaseContext, params: Any, job: ShardJob, job_file: Path,
             pending: list[int], progress: Progress) -> dict[int, int]:
    """Run the pending shards on the chosen executor."""
    if params.executor == "ray":
        return run_ray(job, pending, address=params.ray_address, num_gpus=params.num_gpus,
                       num_cpus=params.workers, on_progress=progress)
    use_gpus = job.model.device != "cpu"
    slots = local_slots(len(pending), params.workers, use_gpus)
    print(f"scale: {len(pending)} shard(s) on {len(slots)} local worker(s)", file=sys.stderr)
    return run_local(job, job_file, pending, slots, progress)


def merge(job: ShardJob) -> tuple[list[dict[str, Any]], dict[str, Any], int]:
    """All shards' rows in shard order, repeats (exact or near) of an earlier kept instruction
    un-kept across shards; returns the rows, the model provenance and how many were un-kept."""
    shard_dir = Path(job.shard_dir)
    rows, provenance = [], None
    for shard in job.shards:
        marker = json.loads(marker_path(shard_dir, shard.index).read_text())
        if provenance is None:
            provenance = marker["provenance"]
        elif provenance_sha(_model_identity(marker["provenance"])) != provenance_sha(
                _model_identity(provenance)):
            raise PhaseInputError(f"shard {shard.index} was generated by other model files "
                                  "than shard 0; delete the shards folder and re-run")
        rows.extend(read_jsonl(rows_path(shard_dir, shard.index)))
    duplicates = drop_repeated_instructions(rows, job.params.near_dup_threshold)
    return rows, provenance or {}, duplicates


def _resumed(job: ShardJob, generated: list[int]) -> dict[str, int]:
    """The shards this attempt finished from a batch past the first, by shard index: where each went on."""
    found = {}
    for index in generated:
        marker = read_marker(Path(job.shard_dir), index, job.fingerprint) or {}
        if marker.get("resumed_from_batch"):
            found[str(index)] = marker["resumed_from_batch"]
    return found


def _model_identity(provenance: dict[str, Any]) -> dict[str, Any]:
    """The parts of a provenance record that identify the model's files."""
    keys = ("config_sha256", "weights_sha256", "tokenizer_sha256", "dtype", "quantization", "engine")
    return {k: provenance.get(k) for k in keys}


def _next_shards(params: Any, job: ShardJob, n_kept: int, n_candidates: int) -> list[ShardSpec]:
    """The shards of the next round; none when done.

    Without a target: `count` split over `num_shards`, once. With one: whole shards of the first
    round's shard size (the last one cut at the cap), numbered on from the earlier ones, so every
    shard keeps its index and seed and the merge keeps shard order in a resumed run.
    """
    count = job.params.count
    if params.target_kept is None:
        return [] if job.shards else plan_shards(count, params.num_shards, job.seed)
    shard_size = -(-count // params.num_shards)
    size = next_round(params.target_kept, n_kept, n_candidates, params.candidate_cap, count, shard_size)
    return plan_round(len(job.shards), size, shard_size, job.seed) if size else []


def _run_rounds(ctx: PhaseContext, params: Any, job: ShardJob
                ) -> tuple[ShardJob, dict[str, Any], tuple[list[dict[str, Any]], dict[str, Any], int]]:
    """Run round after round of shards (a finished shard is reused), merging after each one;
    returns the job with every shard, which shards ran or were reused, and the last merge."""
    shard_dir = Path(job.shard_dir)
    done: dict[str, Any] = {"generated": [], "reused": [], "rounds": []}
    merged: tuple[list[dict[str, Any]], dict[str, Any], int] = ([], {}, 0)
    while new := _next_shards(params, job, sum(bool(r["kept"]) for r in merged[0]), len(merged[0])):
        job = job.model_copy(update={"shards": [*job.shards, *new]})
        job_file = atomic_write_json(shard_dir / "job.json", job.model_dump(mode="json"))
        reused = [s.index for s in new if read_marker(shard_dir, s.index, job.fingerprint)]
        pending = [s.index for s in new if s.index not in reused]
        progress = Progress(ctx, job, [*done["generated"], *done["reused"], *reused])
        outcome = _execute(ctx, params, job, job_file, pending, progress) if pending else {}
        if any(code != 0 for code in outcome.values()):
            raise ShardsFailed(outcome)
        done["generated"] += pending
        done["reused"] += reused
        done["rounds"].append(sum(s.count for s in new))
        merged = merge(job)
    return job, done, merged


def scale(ctx: PhaseContext) -> int:
    """Check the pilot, run the unfinished shards, merge, de-duplicate, QC, write the outputs."""
    params = parse_params(ctx, ScaleParams)
    pilot_id, pilot = find_pilot(ctx, params.pilot)
    manifest, manifest_sha = _pilot_manifest(pilot_id, pilot)
    gen = generation_params(params, manifest)
    rules = merge_thresholds(gen.thresholds, target_kept=params.target_kept)
    seed = ctx.seed if params.seed is None else params.seed
    pool = seed_pool(ctx, gen)
    require_engine(ctx.require_model())  # before any worker loads the model
    fingerprint = _fingerprint(ctx, gen, seed, params.num_shards, pool)
    shard_dir = ctx.work_dir / "shards"
    prepare_work_dir(shard_dir, fingerprint)
    job = ShardJob(model=ctx.require_model(), model_base=str(ctx.model_base), params=gen,
                   seed=seed, fingerprint=fingerprint, shard_dir=str(shard_dir), shards=[],
                   seed_pool=None if pool == SEED_INSTRUCTIONS else list(pool))
    job, done, (rows, provenance, duplicates) = _run_rounds(ctx, params, job)
    _write_outputs(ctx, params, job, rows, provenance, duplicates, rules, {
        "pilot": {"phase_id": pilot_id, "manifest_sha256": manifest_sha},
        "shards": {"generated": done["generated"], "reused": done["reused"],
                   "resumed_at_batch": _resumed(job, done["generated"]),
                   "plan": [s.model_dump() for s in job.shards]},
        "rounds": done["rounds"],
    }, shard_throughput(job, done["generated"]))
    return 0


def _write_outputs(ctx: PhaseContext, params: Any, job: ShardJob, rows: list[dict],
                   provenance: dict, duplicates: int, rules: dict[str, str],
                   extra: dict[str, Any], measured: dict[str, float]) -> None:
    """Write provenance, data, candidates, QC summary and the manifest; report metrics."""
    prov_path = write_output(ctx, "provenance.json", provenance)
    ref = {"path": prov_path.name, "sha256": sha256_file(prov_path)}
    for row in rows:
        row["provenance_ref"] = ref
    out = ctx.artifacts_dir
    outputs = {
        "scale_candidates.jsonl": atomic_write_jsonl(out / "scale_candidates.jsonl", rows),
        "scale_data.jsonl": atomic_write_jsonl(out / "scale_data.jsonl",
                                               [r for r in rows if r["kept"]]),
        "provenance.json": prov_path,
    }
    metrics = qc_metrics(rows)  # its n_duplicates counts the rows merge un-kept, as `duplicates` does
    metrics |= target_metrics(params.target_kept, params.candidate_cap, metrics["n_kept"], len(rows))
    if "stop_reason" in metrics:
        print(f"scale: {metrics['stop_reason']}", file=sys.stderr)
    summary = write_qc_summary(out / "qc_summary.json", metrics, rules)
    outputs["qc_summary.json"] = out / "qc_summary.json"
    if rows:
        measured = {**measured, "kept_per_candidate": metrics["n_kept"] / len(rows)}
    for name, value in {**metrics, **measured}.items():
        if isinstance(value, int | float):
            ctx.reporter.metric(name, value)
    manifest = {
        "phase_id": ctx.phase_id, "kind": ctx.kind, "attempt": ctx.attempt, "seed": job.seed,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "params": job.params.model_dump(), "scale_params": params.model_dump(),
        "thresholds": rules, "model": job.model.model_dump(), "provenance_ref": ref,
        "environment": environment(), "executor": params.executor,
        "counts": {k: metrics[k] for k in ("n_candidates", "n_responses", "n_kept")}
        | {"n_duplicates": duplicates},
        "qc_passed": summary["passed"],
        "artifacts": {n: file_entry(p) for n, p in outputs.items()},
        **extra,
    }
    for path in outputs.values():
        ctx.reporter.artifact(path)
    write_output(ctx, "session_manifest.json", manifest)
