"""The phase context file: parsing, strictness and actionable errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phasegate.pipeline.context import PhaseContext
from phasegate.pipeline.errors import PhaseInputError


def _context(tmp_path: Path, **extra) -> dict:
    data = {
        "phase_id": "pilot",
        "kind": "generate",
        "run_dir": str(tmp_path / "run"),
        "session_dir": str(tmp_path),
        "artifacts_dir": str(tmp_path / "run" / "artifacts" / "pilot"),
        "model": {"path": "models/base", "quantization": "nf4"},
        "params": {"count": 8},
    }
    return {**data, **extra}


def test_parses_a_context_file(tmp_path: Path) -> None:
    path = tmp_path / "ctx.json"
    path.write_text(json.dumps(_context(tmp_path, attempt=2, seed=9)))
    ctx = PhaseContext.from_file(path)
    assert (ctx.phase_id, ctx.attempt, ctx.seed, ctx.params) == ("pilot", 2, 9, {"count": 8})
    assert ctx.require_model().quantization == "nf4" and ctx.model_base == tmp_path
    ctx.reporter.progress(1, 2, step="no controller: a no-op")


def test_defaults_and_missing_model(tmp_path: Path) -> None:
    path = tmp_path / "ctx.json"
    path.write_text(json.dumps(_context(tmp_path, model=None)))
    ctx = PhaseContext.from_file(path)
    assert (ctx.attempt, ctx.seed) == (1, 0)
    with pytest.raises(PhaseInputError, match=r"no \[model\] table"):
        ctx.require_model()


def test_resumable_work_goes_to_the_state_folder(tmp_path: Path) -> None:
    given = PhaseContext.model_validate(_context(tmp_path, state_dir=str(tmp_path / "kept")))
    assert given.work_dir == tmp_path / "kept"
    # Run by hand without one: the folder the controller would give, never the artifact folder it wipes.
    by_hand = PhaseContext.model_validate(_context(tmp_path))
    assert by_hand.state_dir is None and by_hand.work_dir == tmp_path / "run" / "state" / "pilot"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("{not json", "not valid JSON"),
        (json.dumps({"phase_id": "x"}), "not a valid phase context"),
    ],
)
def test_bad_context_files_are_named(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "ctx.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(PhaseInputError, match=message) as caught:
        PhaseContext.from_file(path)
    assert str(path) in str(caught.value)


def test_unknown_keys_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "ctx.json"
    path.write_text(json.dumps(_context(tmp_path, model={"path": "m", "precision": "fp8"})))
    with pytest.raises(PhaseInputError, match="precision"):
        PhaseContext.from_file(path)
