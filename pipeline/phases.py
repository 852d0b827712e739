"""The built-in phases by kind: load_check, baseline_eval, generate (the pilot) here; scale,
testset, sft and evaluate in their own modules."""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from phasegate.pipeline.context import PhaseContext
from phasegate.pipeline.data.pilot import GenerateParams, generate_rows, seed_pool
from phasegate.pipeline.data.qc import merge_thresholds, qc_metrics, write_qc_summary
from phasegate.pipeline.data.rounds import target_metrics
from phasegate.pipeline.engines.engine import Engine, engine_record, open_engine, require_engine
from phasegate.pipeline.errors import EXIT_STOPPED
from phasegate.pipeline.files import atomic_write_jsonl, sha256_file
from phasegate.pipeline.generation.generate import GenerationSettings
from phasegate.pipeline.generation.prompts import RESPONSE_STOPS
from phasegate.pipeline.model.following import HELDOUT_CASES, follow_rate, run_cases
from phasegate.pipeline.model.loader import LoadedModel, load_clean
from phasegate.pipeline.phase_io import environment as _environment
from phasegate.pipeline.phase_io import file_entry as _file_entry
from phasegate.pipeline.phase_io import parse_params as _params
from phasegate.pipeline.phase_io import write_output as _write


class NoParams(BaseModel):
    """A phase that takes no `[phases.with]` parameters."""

    model_config = ConfigDict(extra="forbid")


class BaselineParams(BaseModel):
    """The `baseline_eval` phase's `[phases.with]` table."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(32, ge=1, description="Token limit of one answer.")
    batch_size: int = Field(16, ge=1, description="Prompts per generation batch.")


def _write_provenance(ctx: PhaseContext, loaded: LoadedModel, engine: Engine | None = None) -> dict[str, str]:
    """Write provenance.json (with the engine that generated, when one did); rows refer to it by path and sha256."""
    record = loaded.provenance.to_dict()
    if engine is not None:
        record["engine"] = engine_record(engine)
    path = _write(ctx, "provenance.json", record)
    return {"path": path.name, "sha256": sha256_file(path)}


def load_check(ctx: PhaseContext) -> int:
    """Load the model and run the contamination checks; exit 3 with the evidence if one fails."""
    _params(ctx, NoParams)
    loaded = load_clean(ctx.require_model(), base=ctx.model_base, strict=False)
    for check in loaded.provenance.checks:
        if check.name == "sentinel":
            ctx.reporter.metric("sentinel_follow_rate", check.evidence["follow_rate"])
    failed = loaded.failed_checks
    report = {
        "passed": not failed,
        "failed_checks": [c.name for c in failed],
        "provenance": loaded.provenance.to_dict(),
    }
    _write(ctx, "load_check.json", report)
    _write_provenance(ctx, loaded)
    if failed:
        print(json.dumps([c.to_dict() for c in failed], indent=2), file=sys.stderr)
        summary = "; ".join(c.summary for c in failed)
        print(f"contamination: {summary}", file=sys.stderr)
        ctx.reporter.early_stop("contamination", summary, {c.name: c.to_dict() for c in failed})
        return EXIT_STOPPED
    return 0


def baseline_eval(ctx: PhaseContext) -> int:
    """Record the base model's instruction-following rate on the held-out rule cases."""
    params = _params(ctx, BaselineParams)
    loaded = load_clean(ctx.require_model(), base=ctx.model_base)
    ref = _write_provenance(ctx, loaded)
    settings = GenerationSettings(
        max_new_tokens=params.max_new_tokens, stop=RESPONSE_STOPS, batch_size=params.batch_size
    )
    details = run_cases(loaded.model, loaded.tokenizer, HELDOUT_CASES, settings)
    rate = follow_rate(details)
    ctx.reporter.metric("baseline_follow_rate", rate)
    _write(
        ctx,
        "baseline_eval.json",
        {
            "follow_rate": rate,
            "n": len(details),
            "cases": details,
            "generation_params": settings.to_dict(),
            "provenance_ref": ref,
        },
    )
    return 0


def throughput(model_load_s: float, gen_s: float, generated: int, n_kept: int,
               n_candidates: int) -> dict[str, float]:
    """The measured rates a later phase's budget projection reads from the journal.

    `rows_per_s` is candidates per second of generation (one worker, model load excluded); it is
    left out when this attempt generated nothing (every batch was reused).
    """
    measured = {"model_load_s": model_load_s, "gen_s": gen_s}
    if generated and gen_s > 0:
        measured["rows_per_s"] = generated / gen_s
    if n_candidates:
        measured["kept_per_candidate"] = n_kept / n_candidates
    return measured


def report_metrics(ctx: PhaseContext, metrics: Mapping[str, object]) -> None:
    """Send every numeric metric to the controller's journal."""
    for name, value in metrics.items():
        if isinstance(value, int | float):
            ctx.reporter.metric(name, value)


def generate(ctx: PhaseContext) -> int:
    """The pilot: generate, judge, answer, judge, then write the data, QC summary and manifest."""
    params = _params(ctx, GenerateParams)
    rules = merge_thresholds(params.thresholds, target_kept=params.target_kept)
    seed = ctx.seed if params.seed is None else params.seed
    seed_pool(ctx, params)  # a bad seed file is refused before minutes of model loading
    spec = ctx.require_model()
    require_engine(spec)
    started = time.monotonic()
    loaded = load_clean(spec, base=ctx.model_base)
    engine = open_engine(loaded, spec)
    model_load_s = time.monotonic() - started
    ref = _write_provenance(ctx, loaded, engine)
    run = generate_rows(ctx, loaded, engine, params, seed, ref)
    rows = run.rows
    outputs = {
        "pilot_candidates.jsonl": atomic_write_jsonl(
            ctx.artifacts_dir / "pilot_candidates.jsonl", rows
        ),
        "pilot_data.jsonl": atomic_write_jsonl(
            ctx.artifacts_dir / "pilot_data.jsonl", [r for r in rows if r["kept"]]
        ),
    }
    metrics = qc_metrics(rows)
    metrics |= target_metrics(params.target_kept, params.candidate_cap, metrics["n_kept"], len(rows))
    if "stop_reason" in metrics:
        print(f"pilot: {metrics['stop_reason']}", file=sys.stderr)
    summary = write_qc_summary(ctx.artifacts_dir / "qc_summary.json", metrics, rules)
    outputs["qc_summary.json"] = ctx.artifacts_dir / "qc_summary.json"
    outputs["provenance.json"] = ctx.artifacts_dir / "provenance.json"
    report_metrics(ctx, metrics)
    report_metrics(ctx, throughput(model_load_s, run.gen_s, run.generated, metrics["n_kept"], len(rows)))
    manifest = {
        "phase_id": ctx.phase_id,
        "kind": ctx.kind,
        "attempt": ctx.attempt,
        "seed": seed,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "params": params.model_dump(),
        "thresholds": rules,
        "model": ctx.require_model().model_dump(),
        "provenance_ref": ref,
        "environment": _environment(),
        "batches": run.batches,
        "rounds": run.rounds,
        "counts": {k: metrics[k] for k in ("n_candidates", "n_responses", "n_kept")},
        "qc_passed": summary["passed"],
        "artifacts": {n: _file_entry(p) for n, p in outputs.items()},
    }
    for path in outputs.values():
        ctx.reporter.artifact(path)
    _write(ctx, "session_manifest.json", manifest)
    return 0


def _lazy(module: str, name: str) -> Callable[[PhaseContext], int]:
    """A phase whose module is imported only when it runs (peft, ray: only where needed)."""

    def run(ctx: PhaseContext) -> int:
        return getattr(importlib.import_module(f"{__package__}.{module}"), name)(ctx)

    run.__name__ = run.__qualname__ = name
    return run


PHASES: dict[str, Callable[[PhaseContext], int]] = {
    "load_check": load_check,
    "baseline_eval": baseline_eval,
    "generate": generate,
    "scale": _lazy("data.scale", "scale"),
    "testset": _lazy("data.testset", "testset"),
    "sft": _lazy("training.sft", "sft"),
    "evaluate": _lazy("evaluation.evaluate", "evaluate"),
}
