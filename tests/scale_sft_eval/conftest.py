"""Fixtures for Pipeline II tests: a real tiny model, contexts like the controller writes, a pilot."""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# No test may reach a model hub; child processes inherit this too.
os.environ["HF_HUB_OFFLINE"] = "1"

from phasegate.demo.tinymodel import build_tiny_model  # noqa: E402
from phasegate.pipeline.__main__ import main  # noqa: E402

# Small and permissive so the random tiny model's rows travel the whole pipeline.
PILOT_PARAMS = {
    "count": 4,
    "batch_size": 4,
    "max_new_tokens": 12,
    "instruction_max_new_tokens": 10,
    "filter_instructions": False,
    "keep_truncated_instructions": True,
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ray: needs Ray (deselect with -m 'not ray')")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama-shaped model and tokenizer, built offline once per test session."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"), arch="llama", seed=0)


def write_context(root: Path, kind: str, phase_id: str, model: Path | None, params: dict,
                  **extra) -> Path:
    """A context file like the controller writes, for phase `phase_id` under `root`."""
    context = {
        "phase_id": phase_id,
        "kind": kind,
        "run_dir": str(root / "run"),
        "session_dir": str(root),
        "artifacts_dir": str(root / "run" / "artifacts" / phase_id),
        "model": {"path": str(model)} if model else None,
        "params": params,
        "seed": 3,
        **extra,
    }
    path = root / f"{phase_id}.context.json"
    path.write_text(json.dumps(context))
    return path


def upstream(root: Path, phase_id: str, kind: str, state: str = "passed",
             gates: dict | None = None) -> dict:
    """One entry of the context's `upstream` table for a phase under `root`."""
    return {phase_id: {"kind": kind, "state": state, "gates": gates or {},
                       "artifacts_dir": str(root / "run" / "artifacts" / phase_id)}}


def run_phase(kind: str, context: Path) -> int:
    """Run a phase in this process (fast: no interpreter start-up)."""
    return main([kind, "--context", str(context)])


def run_child(kind: str, context: Path, events: Path, env: dict | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a phase as the controller does: a child process reporting on an events fd."""
    with open(events, "a") as sink:
        full_env = {**os.environ, **(env or {}), "PHASEGATE_EVENTS_FD": str(sink.fileno())}
        return subprocess.run(
            [sys.executable, "-m", "phasegate.pipeline", kind, "--context", str(context)],
            env=full_env, pass_fds=(sink.fileno(),), capture_output=True, text=True,
            timeout=timeout,
        )


@contextlib.contextmanager
def events_to(path: Path) -> Iterator[None]:
    """Send this process's phase events to `path` (as a controller's pipe would receive them)."""
    from phasegate.floor import events as child
    with open(path, "a") as sink:
        saved, child._default = child._default, child.ChildReporter(fd=sink.fileno())
        try:
            yield
        finally:
            child._default = saved


def read_events(path: Path) -> list[dict]:
    """The JSON events a child wrote."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def pilot_root(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A session folder holding a finished pilot (`generate`) phase named 'pilot'."""
    root = tmp_path_factory.mktemp("session")
    context = write_context(root, "generate", "pilot", tiny_model_dir, PILOT_PARAMS)
    assert run_phase("generate", context) == 0
    return root


def training_rows(n: int, seed: int = 0) -> list[dict]:
    """Short {instruction, response} rows in the completion format's shape."""
    rng = random.Random(seed)
    words = ["red", "blue", "green", "apple", "water", "cold"]
    return [{"instruction": f"Name {i % 5 + 2} {rng.choice(['colors', 'fruits', 'rivers'])}.",
             "response": " ".join(rng.choice(words) for _ in range(rng.randint(2, 5))) + "."}
            for i in range(n)]


def write_jsonl(path: Path, rows: list) -> Path:
    """Rows as JSON lines (strings are written as they are, to make broken lines)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


SFT_PARAMS = {"data": ["train.jsonl"], "max_length": 96, "batch_size": 4, "max_steps": 4,
              "save_every": 2, "gradient_checkpointing": False, "lora_r": 4, "lora_alpha": 8,
              "lora_dropout": 0.1, "log_every": 1, "learning_rate": 1e-2}


def sft_root(root: Path, rows: int = 24) -> Path:
    """A session folder with the training file SFT_PARAMS names."""
    write_jsonl(root / "train.jsonl", training_rows(rows))
    return root


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict:
    """One uninterrupted 4-step SFT run, its events captured as the controller would get them."""
    root = sft_root(tmp_path_factory.mktemp("sft"))
    context = write_context(root, "sft", "sft", tiny_model_dir, SFT_PARAMS)
    with events_to(root / "events.jsonl"):
        assert run_phase("sft", context) == 0
    return {"root": root, "artifacts": root / "run" / "artifacts" / "sft",
            "events": read_events(root / "events.jsonl")}


@pytest.fixture(scope="session")
def loaded_model(tiny_model_dir: Path):
    """The tiny model (through the clean loader) and its clean tokenizer."""
    from phasegate.pipeline.model.loader import load_clean
    from phasegate.pipeline.model.spec import ModelSpec

    loaded = load_clean(ModelSpec(path=str(tiny_model_dir)), strict=False)
    return loaded.model, loaded.tokenizer


@pytest.fixture(scope="session")
def loaded_tokenizer(loaded_model):
    """The tiny model's clean tokenizer."""
    return loaded_model[1]
