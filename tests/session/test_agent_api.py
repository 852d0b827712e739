"""The agent API: `status --json` and every `--headless` line of real runs validate against `phasegate schema`."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from phasegate.floor.states import NextAction
from phasegate.journal.event_schema import EVENT_MODELS, event_kind
from phasegate.journal.events import EventKind
from phasegate.journal.store import Journal
from phasegate.session.printers import QUIET_KINDS, json_lines_printer
from tests.conftest import run_cli, session_toml, status_json

ROOT = Path(__file__).resolve().parents[2]
APPROVAL = '\n[[phases.pre_gates]]\nid = "look"\nkind = "approval"\nmessage = "check the data"\n'


def printed_schema(flag: str) -> Draft202012Validator:
    result = run_cli("schema", flag)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@pytest.fixture(scope="module")
def schemas() -> dict[str, Draft202012Validator]:
    return {"status": printed_schema("--status"), "events": printed_schema("--events")}


def problems(validator: Draft202012Validator, document: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def checked_status(run_dir: Path, schemas) -> dict:
    """`status --json`, which must validate against `schema --status`."""
    status = status_json(run_dir)
    assert problems(schemas["status"], status) == []
    return status


def checked_stream(stdout: str, schemas) -> list[dict]:
    """Every line of a `--headless` stdout, each of which must validate against `schema --events`."""
    events = [json.loads(line) for line in stdout.splitlines()]
    for event in events:
        assert problems(schemas["events"], event) == [], event
    return events


def journal_stream(run_dir: Path, schemas) -> list[dict]:
    """Every event the run journaled, printed by the headless printer (also those no controller published, such as
    an approval or an amendment of a run at rest), each validated against `schema --events`."""
    journal, out = Journal.open(run_dir / "state.db"), io.StringIO()
    try:
        emit = json_lines_printer(out)
        for record in journal.events_since(0):
            emit(record.published())
    finally:
        journal.close()
    return checked_stream(out.getvalue(), schemas)


def setup(workspace: Path, phases: list[str], **kw) -> tuple[Path, Path]:
    (workspace / "s.toml").write_text(session_toml("t", phases, **kw))
    return workspace / "s.toml", workspace / "run"


def start_headless(session: Path, run_dir: Path, *flags: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "phasegate", "run", str(session), "--run-dir", str(run_dir),
                             "--headless", *flags], stdout=subprocess.PIPE, text=True, env=env)


def read_until_started(controller: subprocess.Popen, phase: str) -> list[str]:
    """The stream's lines up to the start of `phase` (the test waits on the stream itself)."""
    lines = []
    for line in controller.stdout:
        lines.append(line)
        event = json.loads(line)
        if event["type"] == "phase_started" and event["phase"] == phase:
            return lines
    raise AssertionError(f"the stream ended before {phase} started")


def test_a_completed_run_validates(workspace, schemas):
    session, run_dir = setup(workspace, ["a", "b"], extra="budget_usd = 5.0\ngpu_hourly_usd = 2.0\n")
    result = run_cli("run", session, "--run-dir", run_dir, "--headless")
    assert result.returncode == 0, result.stderr
    events = checked_stream(result.stdout, schemas)
    assert {"run_created", "session_state", "phase_started", "progress", "phase_exited", "phase_finished",
            "checkpoint_written"} <= {e["type"] for e in events}
    status = checked_status(run_dir, schemas)
    assert status["state"] == "completed" and status["next_action"]["action"] == "none"
    assert status["running"] is None and status["budget"]["allocation_usd"] == 5.0
    # the schema is exact: a key it does not describe is refused, at the top and inside
    assert problems(schemas["status"], {**status, "new_key": 1})
    assert problems(schemas["status"], {**status, "next_action": {**status["next_action"], "extra": True}})
    assert problems(schemas["events"], {**events[0], "extra": 1})


def test_a_run_stopped_by_a_failing_phase_then_amended_validates(workspace, schemas):
    session, run_dir = setup(workspace, ["a", "b"])
    result = run_cli("run", session, "--run-dir", run_dir, "--headless", env={**os.environ, "PHASE_EXIT_B": "7"})
    assert result.returncode == 3, result.stderr
    events = checked_stream(result.stdout, schemas)
    assert any(e["type"] == "incident_written" for e in events)
    status = checked_status(run_dir, schemas)
    assert status["state"] == "stopped" and status["next_action"]["action"] == "retry" and status["incident"]
    assert status["phases"][1]["state"] == "failed" and status["stop_trigger"]
    amended = run_cli("amend", run_dir, "--set", "session.budget_usd=60", "--reason", "more room")
    assert amended.returncode == 0, amended.stderr
    status = checked_status(run_dir, schemas)
    assert status["plan_version"] == 2 and [a["reason"] for a in status["amendments"]] == ["more room"]
    resumed = run_cli("resume", run_dir, "--retry", "--headless")
    assert resumed.returncode == 0, resumed.stderr
    checked_stream(resumed.stdout, schemas)
    assert checked_status(run_dir, schemas)["state"] == "completed"
    assert "session_amended" in {e["type"] for e in journal_stream(run_dir, schemas)}


def test_a_run_paused_on_an_approval_gate_validates(workspace, schemas):
    session, run_dir = setup(workspace, ["a", "b"], phase_extra={"b": APPROVAL})
    result = run_cli("run", session, "--run-dir", run_dir, "--headless")
    assert result.returncode == 4, result.stderr
    checked_stream(result.stdout, schemas)
    status = checked_status(run_dir, schemas)
    assert status["state"] == "paused" and status["next_action"]["action"] == "approve"
    assert status["next_action"]["requires_human"] is True
    assert [g["gate_id"] for g in status["pending_gates"]] == ["look"]
    assert run_cli("approve", run_dir, "look", "--note", "looked").returncode == 0
    checked_status(run_dir, schemas)
    resumed = run_cli("resume", run_dir, "--headless")
    assert resumed.returncode == 0, resumed.stderr
    checked_stream(resumed.stdout, schemas)
    assert checked_status(run_dir, schemas)["operator_actions"][0]["action"] == "approved"
    assert "gate_approved" in {e["type"] for e in journal_stream(run_dir, schemas)}


def test_a_run_stopped_by_an_operator_validates(workspace, schemas):
    session, run_dir = setup(workspace, ["slow"])
    controller = start_headless(session, run_dir, env={**os.environ, "PHASE_SLEEP": "20"})
    lines = read_until_started(controller, "slow")
    assert checked_status(run_dir, schemas)["running"]["phase"] == "slow"
    assert run_cli("stop", run_dir, "--reason", "wrong learning rate").returncode == 0
    lines.append(controller.stdout.read())
    assert controller.wait(timeout=60) == 3
    events = checked_stream("".join(lines), schemas)
    assert [e.get("trigger") for e in events if e["type"] == "session_state" and e["state"] == "stopped"] == \
        ["operator_stop"]
    status = checked_status(run_dir, schemas)
    assert status["stop_trigger"] == "operator_stop" and status["next_action"]["requires_human"] is True


def test_a_crashed_run_validates_and_so_does_its_resume(workspace, schemas):
    session, run_dir = setup(workspace, ["slow"])
    controller = start_headless(session, run_dir, env={**os.environ, "PHASE_SLEEP": "20"})
    lines = read_until_started(controller, "slow")
    os.kill(controller.pid, signal.SIGKILL)
    lines.append(controller.stdout.read())
    assert controller.wait(timeout=60) == -signal.SIGKILL
    checked_stream("".join(lines), schemas)
    status = checked_status(run_dir, schemas)
    assert status["state"] == "running" and status["controller_live"] is False
    assert status["running"]["phase"] == "slow" and status["next_action"]["action"] == "resume"
    resumed = run_cli("resume", run_dir, "--headless", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    kinds = {e["type"] for e in checked_stream(resumed.stdout, schemas)}
    assert "attempt_discarded" in kinds and "phase_finished" in kinds and "phase_exited" not in kinds
    assert checked_status(run_dir, schemas)["state"] == "completed"


def test_quiet_keeps_every_state_change_and_spaces_progress(workspace, schemas):
    session, run_dir = setup(workspace, ["a", "b"])
    result = run_cli("run", session, "--run-dir", run_dir, "--headless", "--quiet", "--progress-every", "1",
                     env={**os.environ, "PHASE_SLEEP": "0.4"})
    assert result.returncode == 0, result.stderr
    quiet, journaled = checked_stream(result.stdout, schemas), journal_stream(run_dir, schemas)
    assert len(quiet) < len(journaled)
    assert [e for e in quiet if e["type"] != "progress"] == [e for e in journaled if e["type"] in QUIET_KINDS]
    shown = [e for e in quiet if e["type"] == "progress"]
    assert {e["phase"] for e in shown} == {"a", "b"}  # each phase's first progress at once
    for phase in ("a", "b"):
        times = [datetime.fromisoformat(e["ts"]).timestamp() for e in shown if e["phase"] == phase]
        assert all(later - earlier >= 1 for earlier, later in zip(times, times[1:], strict=False))


def test_quiet_without_headless_and_two_schemas_at_once_are_refused(workspace):
    session, run_dir = setup(workspace, ["a"])
    quiet = run_cli("run", session, "--run-dir", run_dir, "--quiet")
    assert quiet.returncode == 2 and "--headless" in quiet.stderr and not run_dir.exists()
    both = run_cli("schema", "--status", "--events")
    assert both.returncode == 2 and "give one of them" in both.stderr and "Traceback" not in both.stderr
    session_schema = run_cli("schema")
    assert session_schema.returncode == 0 and json.loads(session_schema.stdout)["title"] == "SessionSpec"


def test_the_event_schema_has_every_kind_of_the_journal(schemas):
    kinds = {branch["$ref"].rsplit("/", 1)[1] for branch in schemas["events"].schema["oneOf"]}
    assert {event_kind(model) for model in EVENT_MODELS} == set(EventKind)
    assert kinds == {model.__name__ for model in EVENT_MODELS}


def agent_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("\n## Driving phasegate from an agent\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_documents_the_agent_api():
    section = agent_section()
    for flag in ("phasegate schema --status", "phasegate schema --events", "--quiet", "--progress-every",
                 "schema_version", "requires_human", "pending_gates", "running"):
        assert flag in section, flag
    for action in NextAction:
        assert f"`{action}`" in section, f"README: next_action `{action}` is not explained"
    for model in EVENT_MODELS:
        row = next((line for line in section.splitlines() if line.startswith(f"| `{event_kind(model)}` |")), None)
        assert row is not None, f"README event table: no row for {event_kind(model)}"
        for name, field in model.model_fields.items():
            if name not in ("seq", "ts", "phase", "type"):
                assert f"`{field.alias or name}`" in row, f"README event table, {event_kind(model)}: no `{name}`"
