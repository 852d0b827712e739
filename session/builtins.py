"""How a built-in phase kind becomes a child process: `python -m phasegate.pipeline KIND --context FILE`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from phasegate.floor.durable import atomic_write_text
from phasegate.session.spec import PhaseSpec


def builtin_argv(phase: PhaseSpec, *, context: dict[str, Any], context_path: Path) -> list[str]:
    """Write the phase's context file and return the argv that runs the built-in phase."""
    if phase.kind == "versions":
        out = Path(context["artifacts_dir"]) / "session_versions.json"
        return [sys.executable, "-m", "phasegate.pipeline.versions", "--out", str(out),
                "--repo", str(context["session_dir"])]
    atomic_write_text(context_path, json.dumps(context, indent=2, sort_keys=True, default=str))
    return [sys.executable, "-m", "phasegate.pipeline", phase.kind, "--context", str(context_path)]
