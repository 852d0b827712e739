"""The small API a built-in phase receives: its context file, parsed and checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from phasegate.floor.events import ChildReporter, reporter
from phasegate.floor.rundir import RunDir
from phasegate.pipeline.errors import PhaseInputError
from phasegate.pipeline.model.spec import ModelSpec


class UpstreamPhase(BaseModel):
    """What the controller knows of one earlier phase of the session."""

    # The controller may add keys over time; a phase reads only these.
    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: str = Field(description="The earlier phase's kind, e.g. 'generate'.")
    state: str = Field(description="Its state: pending, running, passed, failed or skipped.")
    artifacts_dir: Path = Field(description="Where that phase wrote its outputs.")
    gates: dict[str, str] = Field(
        default_factory=dict,
        description="Its gates' statuses by gate id: pass, fail, warn, pending or waived.",
    )


class PhaseContext(BaseModel):
    """What the controller tells a built-in phase (the JSON file named by `--context`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    phase_id: str = Field(description="The phase's id in the session file.")
    kind: str = Field(description="The built-in phase kind, e.g. 'generate'.")
    attempt: int = Field(
        1, ge=1, description="1 for the first run of the phase, 2 for its retry, ..."
    )
    run_dir: Path = Field(description="The run folder (runs/<id>/).")
    session_dir: Path = Field(
        description="The folder of the session file; relative paths start here."
    )
    artifacts_dir: Path = Field(description="Where this phase writes its outputs.")
    state_dir: Path | None = Field(
        None, description="Where this phase keeps resumable work across attempts; None outside a session."
    )
    model: ModelSpec | None = Field(None, description="The session file's [model] table.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="The phase's [phases.with] table."
    )
    seed: int = Field(0, description="The session seed; a phase's own `seed` param wins.")
    gpu_expected: bool = Field(
        False,
        description="True in a GPU session ([session] gpu_hourly_usd or gpu set): the model must then run "
        "on CUDA, and `[model] device = \"auto\"` without usable CUDA stops the phase instead of falling "
        "back to CPU.",
    )
    upstream: dict[str, UpstreamPhase] = Field(
        default_factory=dict,
        description="Every earlier phase of the session by phase id, in session order: its kind, "
        "state, artifacts folder and gate statuses (how a phase finds and vets its inputs).",
    )

    @classmethod
    def from_file(cls, path: str | Path) -> PhaseContext:
        """Read and validate a context file, with errors that name the file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise PhaseInputError(f"context file {path} does not exist") from error
        except json.JSONDecodeError as error:
            raise PhaseInputError(f"context file {path} is not valid JSON: {error}") from error
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise PhaseInputError(
                f"context file {path} is not a valid phase context:\n{error}"
            ) from error

    @property
    def work_dir(self) -> Path:
        """Where resumable work (step checkpoints, shards, batches) goes: the state folder.

        Run by hand without one, the phase uses the folder the controller would give it,
        `RUN_DIR/state/<phase>/`, not its artifact folder: outputs and work stay apart in both cases, and
        the controller's wipe of the artifact folder at every attempt never takes resumable work with it.
        """
        return self.state_dir if self.state_dir is not None else RunDir(self.run_dir).state(self.phase_id)

    @property
    def model_base(self) -> Path:
        """The folder a relative model path is read from."""
        return self.session_dir

    def require_model(self) -> ModelSpec:
        """The `[model]` table as this phase must use it, or an error saying how to add one.

        In a GPU session `device = "auto"` becomes `"cuda"`: billed GPU hours never run on CPU unnoticed.
        """
        if self.model is None:
            raise PhaseInputError(
                f"phase {self.phase_id!r} ({self.kind}) needs a model, but the session file has "
                'no [model] table; add one, e.g. [model] path = "models/base"'
            )
        if self.gpu_expected and self.model.device == "auto":
            return self.model.model_copy(update={"device": "cuda"})
        return self.model

    def latest_upstream(self, *kinds: str) -> tuple[str, UpstreamPhase] | None:
        """The last earlier phase whose kind is one of `kinds` (earlier in `kinds` wins), or None."""
        for kind in kinds:
            found = [(pid, up) for pid, up in self.upstream.items() if up.kind == kind]
            if found:
                return found[-1]
        return None

    @property
    def reporter(self) -> ChildReporter:
        """Progress, metric and artifact events for the controller (no-ops outside a session)."""
        return reporter()
