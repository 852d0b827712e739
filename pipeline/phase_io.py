"""Helpers every built-in phase shares: strict params, declared outputs, manifest entries."""

from __future__ import annotations

import platform
import shutil
import sys
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from phasegate.pipeline.context import PhaseContext
from phasegate.pipeline.errors import PhaseInputError
from phasegate.pipeline.files import atomic_write_json, atomic_write_text, sha256_file

ParamsT = TypeVar("ParamsT", bound=BaseModel)


def parse_params(ctx: PhaseContext, model: type[ParamsT]) -> ParamsT:
    """The phase's parameters, validated, with an error that names the phase."""
    try:
        return model.model_validate(ctx.params)
    except ValidationError as error:
        raise PhaseInputError(
            f"phase {ctx.phase_id!r} ({ctx.kind}): invalid [phases.with]:\n{error}"
        ) from error


def write_output(ctx: PhaseContext, name: str, data: Any) -> Path:
    """Write one JSON output atomically and declare it to the controller."""
    path = atomic_write_json(ctx.artifacts_dir / name, data)
    ctx.reporter.artifact(path)
    return path


def file_entry(path: Path) -> dict[str, Any]:
    """A manifest entry: size and sha256 of one output."""
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def environment() -> dict[str, Any]:
    """Where this phase ran."""
    import torch
    import transformers

    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda_available": cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
    }


def resolve_path(ctx: PhaseContext, path: str | Path) -> Path:
    """A path from the session file: absolute, or relative to the session folder."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else ctx.session_dir / path


def upstream_file(ctx: PhaseContext, kinds: tuple[str, ...], names: dict[str, str]) -> Path:
    """The output of the latest earlier phase of one of `kinds` (`names` maps kind -> file name)."""
    found = ctx.latest_upstream(*kinds)
    if found is None:
        raise PhaseInputError(
            f"phase {ctx.phase_id!r} ({ctx.kind}) finds no earlier phase of kind "
            f"{' or '.join(kinds)} to read its input from; put one before it in the session "
            "file or name the input file in [phases.with]"
        )
    phase_id, upstream = found
    path = upstream.artifacts_dir / names[upstream.kind]
    if not path.exists():
        raise PhaseInputError(
            f"phase {ctx.phase_id!r} ({ctx.kind}) reads {path} from phase {phase_id!r} "
            f"(state {upstream.state}), but it does not exist; run {phase_id!r} first"
        )
    return path


def model_files_sha(ctx: PhaseContext) -> str | None:
    """One sha256 over every file of the [model] folder: what 'the same model' means on resume."""
    from phasegate.pipeline.files import hash_files
    from phasegate.pipeline.model.loader import resolve_model_dir

    folder = resolve_model_dir(ctx.require_model().path, base=ctx.model_base)
    return hash_files([p for p in folder.iterdir() if p.is_file()], folder)["sha256"]


def prepare_work_dir(batch_dir: Path, fingerprint: str) -> None:
    """Keep a work folder (batches, shards, checkpoints) only if made with the same inputs; set a stale one aside."""
    marker = batch_dir / "fingerprint.txt"
    if batch_dir.exists():
        old = marker.read_text().strip() if marker.exists() else "unknown"
        if old == fingerprint:
            return
        aside = batch_dir.with_name(f"{batch_dir.name}.stale-{old[:12]}")
        shutil.rmtree(aside, ignore_errors=True)
        batch_dir.rename(aside)
        print(
            f"parameters or model changed since the work in {batch_dir} was done; "
            f"moved them to {aside} and starting over",
            file=sys.stderr,
        )
    batch_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, fingerprint + "\n")
