"""Shared fixtures: write session files, run the real `phasegate` CLI as a child process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PHASE_SCRIPT = textwrap.dedent('''
    """A phase for tests: logs its start and end, writes a marker artifact, speaks the events protocol."""
    import json, os, sys, time
    phase, attempt = os.environ["PHASEGATE_PHASE"], os.environ["PHASEGATE_ATTEMPT"]
    ledger = sys.argv[1]
    def note(what):
        with open(ledger, "a") as f:
            f.write(f"{what} {phase} {attempt}\\n"); f.flush(); os.fsync(f.fileno())
    note("start")
    fd = os.environ.get("PHASEGATE_EVENTS_FD")
    events = os.fdopen(int(fd), "w", buffering=1, closefd=False) if fd else None
    for i in range(3):
        if events: events.write(json.dumps({"type": "progress", "done": i + 1, "total": 3}) + "\\n")
        time.sleep(float(os.environ.get("PHASE_SLEEP", "0")))
    out = os.path.join(os.environ["PHASEGATE_ARTIFACTS"], "marker.txt")
    with open(out, "w") as f:
        f.write(f"{phase}\\n")
    note("end")
    sys.exit(int(os.environ.get("PHASE_EXIT_" + phase.upper().replace("-", "_"), "0")))
''')


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A folder with the test phase script in it."""
    (tmp_path / "phase.py").write_text(PHASE_SCRIPT)
    return tmp_path


def session_toml(name: str, phases: list[str], *, extra: str = "", phase_extra: dict[str, str] | None = None) -> str:
    """A session file of test phases that append to ledger.txt in the session folder."""
    out = [f'[session]\nname = "{name}"\n{extra}']
    for phase in phases:
        out.append(f'[[phases]]\nid = "{phase}"\nrun = ["{sys.executable}", "phase.py", "{{session_dir}}/ledger.txt"]\n'
                   + (phase_extra or {}).get(phase, ""))
    return "\n".join(out)


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real `phasegate` command."""
    return subprocess.run([sys.executable, "-m", "phasegate", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def events_of(run_dir: Path, kind) -> list:
    """The journal's events of one kind, oldest first (read with the journal's own reader)."""
    from phasegate.journal.store import Journal

    journal = Journal.open(run_dir / "state.db")
    try:
        return [e for e in journal.events_since(0) if e.type == kind]
    finally:
        journal.close()


def status_json(run_dir: Path) -> dict:
    result = run_cli("status", run_dir, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
