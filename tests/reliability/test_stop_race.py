"""A stop is never lost: a `phasegate stop` that races a resume's start either runs first (and the resume obeys it)
or makes the resume refuse; never "stopped" for the operator and a run that goes on."""

from __future__ import annotations

import os

from phasegate.floor.errors import ExitCode
from phasegate.floor.faults import CRASH_EXIT_CODE
from phasegate.session.controller import Controller
from phasegate.session.runs import open_run
from tests.conftest import run_cli, session_toml, status_json


def test_a_stop_between_a_resumes_start_and_its_lock_is_obeyed(workspace):
    session = workspace / "s.toml"
    session.write_text(session_toml("race", ["p1", "p2"]))
    run_dir = workspace / "run"
    crashed = run_cli("run", session, "--run-dir", run_dir, env={**os.environ, "PHASEGATE_FAULT": "crash_at:after_intent"})
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr
    # A resume has started (its controller exists) but has not taken the controller lock yet ...
    resuming = Controller(open_run(run_dir), base_env=dict(os.environ))
    # ... when an operator's stop runs from start to end: it takes the lock, stops the run and says so.
    stopped = run_cli("stop", run_dir, "--reason", "wrong data")
    assert stopped.returncode == 0 and "stopped" in stopped.stderr, stopped.stderr
    try:
        assert resuming.execute() == ExitCode.STOPPED
    finally:
        resuming.journal.close()
    status = status_json(run_dir)
    assert status["state"] == "stopped" and "wrong data" in status["reason"]
    assert not (workspace / "ledger.txt").exists(), "no phase may run after the operator was told 'stopped'"
