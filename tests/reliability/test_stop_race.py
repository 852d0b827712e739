"""A stop is never lost: a `phasegate stop` that races a resume's start either runs first (and the resume obeys it)
or makes the resume refuse; never "stopped" for the operator and a run that goes on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from phasegate.floor.errors import ExitCode
from phasegate.floor.faults import CRASH_EXIT_CODE
from phasegate.session.controller import Controller
from phasegate.session.runs import create_run, open_run
from phasegate.session.spec import load_spec
from tests.conftest import run_cli, session_toml, status_json


def incident_trigger(run_dir: Path) -> str:
    return yaml.safe_load(Path(status_json(run_dir)["incident"]).read_text().split("---")[1])["trigger"]


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


def test_a_stop_signal_while_the_pause_is_written_is_a_stop(workspace):
    session = workspace / "s.toml"
    session.write_text(session_toml("pausing", ["p1"], phase_extra={"p1": '[[phases.pre_gates]]\nkind = "approval"\n'}))
    run = create_run(load_spec(session), workspace / "run")

    def signal_on_pause(event: dict) -> None:  # the controller has journaled `paused`, and goes on writing
        if event["type"] == "session_state" and "paused" in json.dumps(event):
            os.kill(os.getpid(), signal.SIGTERM)

    try:
        assert Controller(run, listeners=(signal_on_pause,), base_env=dict(os.environ)).execute() == ExitCode.STOPPED
    finally:
        run.journal.close()
    assert status_json(workspace / "run")["state"] == "stopped"
    assert incident_trigger(workspace / "run") == "signal"


def test_a_stop_signal_while_the_run_is_created_stops_it_before_any_phase(workspace):
    # The controller blocks in its start (its GPU reader's file is a FIFO) while the signal comes.
    samples = workspace / "gpu.json"
    os.mkfifo(samples)
    session = workspace / "s.toml"
    session.write_text(session_toml("early", ["p1"]))
    run_dir = workspace / "run"
    controller = subprocess.Popen([sys.executable, "-m", "phasegate", "run", str(session), "--run-dir", str(run_dir),
                                   "--headless"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  env={**os.environ, "PHASEGATE_GPU_READER": f"fake:{samples}"})
    with open(samples, "w") as reader_file:  # opens once the controller opens it: the run folder exists by then
        controller.send_signal(signal.SIGTERM)
        reader_file.write("[{}]")
    assert controller.wait(timeout=60) == ExitCode.STOPPED, controller.stderr.read().decode()
    assert status_json(run_dir)["state"] == "stopped"
    assert incident_trigger(run_dir) == "signal"
    assert not (workspace / "ledger.txt").exists(), "no phase may start after the stop signal"
