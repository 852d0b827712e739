"""Fixtures for gate tests: gate contexts over a temp session folder and real git repos."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import git
import pytest

from phasegate.gates.base import GateContext


@pytest.fixture
def make_context(tmp_path: Path) -> Callable[..., GateContext]:
    """Build a GateContext whose session folder is `tmp_path` (artifacts under runs/r1/artifacts)."""

    def build(
        options: Mapping[str, Any], *, session_dir: Path | None = None, phase: str = "pilot"
    ) -> GateContext:
        base = session_dir or tmp_path
        run_dir = base / "runs" / "r1"
        return GateContext(
            gate_id="g1",
            phase_id=phase,
            options=options,
            session_dir=base,
            run_dir=run_dir,
            artifacts_dir=run_dir / "artifacts",
        )

    return build


def write_files(root: Path, files: Mapping[str, str | bytes]) -> None:
    """Write files (dedented text, or raw bytes) under root, creating folders."""
    for relpath, content in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content).lstrip("\n"), encoding="utf-8")


def init_repo(root: Path, files: Mapping[str, str | bytes] | None = None) -> git.Repo:
    """A real git repo at root on branch `main`, with `files` committed when given."""
    root.mkdir(parents=True, exist_ok=True)
    repo = git.Repo.init(root, initial_branch="main")
    with repo.config_writer() as config:
        config.set_value("user", "name", "Gate Tests")
        config.set_value("user", "email", "gates@example.invalid")
    if files:
        write_files(root, files)
        repo.index.add([str(root / relpath) for relpath in files])
        repo.index.commit("add scripts")
    return repo


@pytest.fixture
def repo_with() -> Callable[..., git.Repo]:
    """The `init_repo` helper, as a fixture (test modules cannot import conftest)."""
    return init_repo


@pytest.fixture
def write() -> Callable[..., None]:
    """The `write_files` helper, as a fixture."""
    return write_files
