"""Where a phase's Python finds `phasegate_reporter`, the stdlib-only events reporter."""

from __future__ import annotations

import os
from pathlib import Path

# A folder holding only phasegate_reporter.py: on a child's PYTHONPATH it exposes that one module,
# never phasegate's own packages under bare names (`session`, `floor`, …).
CHILD_LIB = Path(__file__).resolve().with_name("child_lib")
REPORTER_FILE = CHILD_LIB / "phasegate_reporter.py"
REPORTER_ENV = "PHASEGATE_REPORTER"


def reporter_env(pythonpath: str | None) -> dict[str, str]:
    """PHASEGATE_REPORTER and a PYTHONPATH with the reporter's folder first (the phase's own path kept after it)."""
    # Kept verbatim: an empty entry in it means the working directory, and the phase may rely on that.
    path = f"{CHILD_LIB}{os.pathsep}{pythonpath}" if pythonpath else str(CHILD_LIB)
    return {REPORTER_ENV: str(REPORTER_FILE), "PYTHONPATH": path}
