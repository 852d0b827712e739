"""`phasegate_reporter`: one standard-library file any phase's python imports, writing what ChildReporter writes."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from phasegate.floor.events import (
    EARLY_STOP_EXIT,
    EVENTS_FD_ENV,
    ChildReporter,
    InvalidEvent,
    parse_line,
)
from phasegate.floor.reporter_path import CHILD_LIB, REPORTER_FILE
from tests.conftest import run_cli, status_json

SYSTEM_PYTHON = Path("/usr/bin/python3")

PHASE = textwrap.dedent('''
    import os, sys
    import phasegate_reporter as pg
    import mine  # the phase's own PYTHONPATH still works after the reporter's folder
    assert os.environ["PHASEGATE_REPORTER"] == pg.__file__, (os.environ["PHASEGATE_REPORTER"], pg.__file__)
    pg.progress(1, 2, step="rows")
    pg.metric("x", 1.5)
    out = os.path.join(os.environ["PHASEGATE_ARTIFACTS"], "out.txt")
    with open(out, "w") as f:
        f.write(mine.TEXT)
    pg.artifact(out)
    pg.heartbeat()
    pg.log("half way")
    pg.progress(2, 2, step="rows")
    if sys.argv[1:] == ["stop"]:
        pg.early_stop("too_noisy", "noise above the limit", {"noise": 0.4})
        sys.exit(pg.EARLY_STOP_EXIT)
''')


def load_stdlib_reporter():
    """The shipped file, imported by its path (as a phase's python finds it)."""
    spec = importlib.util.spec_from_file_location("phasegate_reporter", REPORTER_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def written(make, calls) -> list[bytes]:
    """The lines a reporter made by `make(fd)` writes for `calls` (method name, args)."""
    read_fd, write_fd = os.pipe()
    reporter = make(write_fd)
    for name, args in calls:
        getattr(reporter, name)(*args)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        return pipe.read().splitlines()


CALLS = [
    ("progress", (3, 10)),
    ("progress", (3, 10, "shards")),
    ("metric", ("loss", 1.23)),
    ("metric", ("rows", 400)),
    ("metric", ("ok", True)),
    ("artifact", ("relative/out.jsonl",)),
    ("heartbeat", ()),
    ("log", ("shard 2 done: naïve ✓",)),
    ("early_stop", ("contamination", "Response: is a special token", {"token_id": 7, "rows": [1, 2]})),
    ("early_stop", ("contamination", "no evidence")),
]


@pytest.mark.parametrize(("name", "args"), CALLS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CALLS)])
def test_the_stdlib_reporter_writes_what_child_reporter_writes(name, args):
    stdlib = load_stdlib_reporter()
    lines = written(stdlib.Reporter, [(name, args)])
    assert lines == written(ChildReporter, [(name, args)])
    assert len(lines) == 1 and not isinstance(parse_line(lines[0]), InvalidEvent)


def test_the_stdlib_reporter_does_nothing_outside_a_session(monkeypatch):
    monkeypatch.delenv("PHASEGATE_EVENTS_FD", raising=False)
    stdlib = load_stdlib_reporter()
    stdlib.progress(1, 2)
    stdlib.early_stop("x", "y")
    assert stdlib.reporter()._stream is None


def test_the_stdlib_reporter_uses_the_protocol_s_constants():
    stdlib = load_stdlib_reporter()
    assert (stdlib.EVENTS_FD_ENV, stdlib.EARLY_STOP_EXIT) == (EVENTS_FD_ENV, int(EARLY_STOP_EXIT))


def test_the_child_lib_folder_holds_only_the_reporter():
    # Anything else there would be importable by every phase under a bare name.
    assert sorted(p.name for p in CHILD_LIB.iterdir() if p.name != "__pycache__") == ["phasegate_reporter.py"]


def run_phase(workspace: Path, *argv: str):
    (workspace / "phase_reporter.py").write_text(PHASE)
    (workspace / "lib").mkdir()
    (workspace / "lib" / "mine.py").write_text('TEXT = "made"\n')
    run = ", ".join(f'"{arg}"' for arg in [str(SYSTEM_PYTHON), "phase_reporter.py", *argv])
    (workspace / "s.toml").write_text(f'[session]\nname = "stdlib"\n\n[[phases]]\nid = "report"\nrun = [{run}]\n'
                                      f'env = {{ PYTHONPATH = "{workspace / "lib"}" }}\n')
    result = run_cli("run", workspace / "s.toml", "--headless", "--run-dir", workspace / "run")
    return result, status_json(workspace / "run")


needs_system_python = pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="no /usr/bin/python3 here")


@needs_system_python
def test_a_phase_run_by_the_system_python_reports_through_phasegate_reporter(workspace):
    assert subprocess.run([SYSTEM_PYTHON, "-c", "import pydantic"], capture_output=True).returncode != 0, \
        "this test needs a python without phasegate's dependencies"
    result, status = run_phase(workspace)
    assert result.returncode == 0, (result.stderr, (workspace / "run" / "logs" / "report.log").read_text())
    assert status["state"] == "completed"
    assert status["metrics"]["report"]["x"] == 1.5
    assert status["phases"][0]["progress"] == [2, 2]
    assert [a["path"] for a in status["artifacts"]] == ["artifacts/report/out.txt"]
    assert not status["input_warnings"]


@needs_system_python
def test_a_system_python_phase_stops_the_session_with_its_reason(workspace):
    result, status = run_phase(workspace, "stop")
    assert result.returncode == 3
    report = Path(status["incident"]).read_text()
    assert "too_noisy" in report and "noise above the limit" in report and "0.4" in report
