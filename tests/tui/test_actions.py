"""Pilot tests for every operator action, on real run folders, checked against the journal."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest
from textual.widgets import Sparkline

from phasegate.floor.rundir import RunDir, controller_is_live
from phasegate.journal.events import EventKind
from phasegate.journal.store import Journal
from phasegate.tui.app import create_app
from phasegate.tui.screens.confirm_stop import ConfirmStopScreen
from phasegate.tui.screens.files import FilesScreen
from phasegate.tui.screens.log_view import LogScreen
from phasegate.tui.screens.metrics import MetricsScreen
from phasegate.tui.screens.quit_run import QuitRunScreen
from phasegate.tui.screens.text_view import TextViewScreen
from phasegate.tui.screens.waive import WaiveScreen
from tests.tui.conftest import settle, wait_for_view


def journal(run_dir, sql, *args):
    with sqlite3.connect(run_dir / "state.db") as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, args).fetchall()


async def type_text(pilot, text: str) -> None:
    await pilot.press(*[{" ": "space"}.get(ch, ch) for ch in text])


def shown_text(app) -> str:
    return str(app.screen.query_one("#text-body").render())


async def test_stop_a_live_run_writes_the_stop_and_an_incident(live_run):
    app = create_app(live_run.run_dir, mode="watch")
    async with app.run_test() as pilot:
        await wait_for_view(app, lambda v: v.snapshot.controller_live)
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmStopScreen)
        await type_text(pilot, "wrong lr")
        await pilot.press("enter")
        await settle(pilot, "commands")
        # The state and the incident report are two commits: wait for both.
        view = await wait_for_view(app, lambda v: v.snapshot.state == "stopped" and v.snapshot.incident)
        assert "wrong lr" in view.snapshot.reason
    assert live_run.process.wait(timeout=30) == 3
    [command] = journal(live_run.run_dir, "SELECT * FROM commands")
    assert command["kind"] == "stop" and json.loads(command["args"]) == {"reason": "wrong lr"}
    assert command["result"] == "stop requested" and command["handled_at"] is not None
    assert "wrong lr" in view.snapshot.incident.read_text()


async def test_stop_needs_a_reason_and_escape_cancels(run_copy):
    run_dir = run_copy("paused")
    app = create_app(run_dir, mode="watch")
    async with app.run_test() as pilot:
        await wait_for_view(app)
        await pilot.press("s", "enter")
        assert isinstance(app.screen, ConfirmStopScreen)
        assert "required" in str(app.screen.query_one("#reason-error").render())
        await pilot.press("escape")
        assert not isinstance(app.screen, ConfirmStopScreen)
    assert journal(run_dir, "SELECT * FROM commands") == []
    assert journal(run_dir, "SELECT state FROM run")[0]["state"] == "paused"


async def test_stop_a_paused_run_without_a_controller(run_copy):
    run_dir = run_copy("paused")
    app = create_app(run_dir, mode="watch")
    async with app.run_test() as pilot:
        await wait_for_view(app)
        await pilot.press("s")
        await type_text(pilot, "budget")
        await pilot.press("enter")
        await settle(pilot, "commands")
        view = await wait_for_view(app, lambda v: v.snapshot.state == "stopped" and v.snapshot.incident)
    assert "budget" in view.snapshot.reason


async def test_approve_then_resume_runs_the_rest_of_the_session(run_copy, notices):
    run_dir = run_copy("paused")
    app = create_app(run_dir, mode="watch")
    seen = notices(app)
    async with app.run_test() as pilot:
        await wait_for_view(app)
        assert app.check_action("approve", ()) and app.check_action("checkpoint", ()) is not False
        await pilot.press("a")
        await type_text(pilot, "looks ok")
        await pilot.press("enter")
        await settle(pilot, "commands")
        # Applying the approval here takes the controller lock for a moment; a read in that moment sees "live".
        await wait_for_view(app, lambda v: any(a["action"] == "approved" for a in v.snapshot.operator_actions)
                            and not v.snapshot.controller_live)
        assert app.query_one("#gates-table").get_row("eval.pre.approval")[0].plain == "PENDING (approved)"
        assert app.check_action("resume", ())
        spawn, started = app.operator._spawn, []
        app.operator._spawn = lambda run: started.append(spawn(run)) or started[-1]  # kept even once reaped
        await pilot.press("r")
        await settle(pilot, "commands")
        assert len(started) == 1, seen  # the UI reaps a controller that ended quickly: count the one it started
        started[0].wait(timeout=30)
        log = (run_dir / "logs" / "_controller.log").read_text()
        view = await wait_for_view(app, lambda v: v.snapshot.state == "completed", timeout=10)
    [action] = journal(run_dir, "SELECT * FROM operator_actions")
    assert (action["gate_id"], action["action"], action["note"]) == ("eval.pre.approval", "approved",
                                                                     "looks ok")
    assert [p.state for p in view.snapshot.phases] == ["passed", "passed", "passed"]
    assert any(n.startswith("approve: approved eval.pre.approval") for n in seen)
    assert any(n.startswith("resume: controller started") for n in seen)
    assert log.strip().startswith("{")


async def test_waive_refuses_an_empty_reason_then_records_the_reason(run_copy):
    run_dir = run_copy("paused")
    app = create_app(run_dir, mode="watch")
    async with app.run_test() as pilot:
        await wait_for_view(app)
        assert app.query_one("GatesPanel").selected == "eval.pre.approval"  # the cursor starts on what waits
        await pilot.press("w", "enter")
        assert isinstance(app.screen, WaiveScreen)
        assert "required" in str(app.screen.query_one("#reason-error").render())
        await type_text(pilot, "by phone")
        await pilot.press("enter")
        await settle(pilot, "commands")
        await wait_for_view(app, lambda v: any(g.status == "waived" for g in v.snapshot.gates))
        assert app.query_one("#gates-table").get_row("eval.pre.approval")[0].plain == "WAIVED"
    [action] = journal(run_dir, "SELECT * FROM operator_actions")
    assert (action["action"], action["note"]) == ("waived", "by phone")


async def test_waive_refuses_a_passed_gate(run_copy, notices):
    run_dir = run_copy("paused")
    app = create_app(run_dir, mode="watch")
    seen = notices(app)
    async with app.run_test() as pilot:
        await wait_for_view(app)
        await pilot.press("up", "w")
        assert app.query_one("GatesPanel").selected == "prepare.threshold"
        assert not isinstance(app.screen, WaiveScreen)
    assert any("Select a FAIL or PENDING gate" in n for n in seen)
    assert journal(run_dir, "SELECT * FROM commands") == []


async def test_open_checkpoint_incident_and_review_views(templates, notices):
    app = create_app(templates["stopped"], mode="watch")
    seen = notices(app)
    async with app.run_test() as pilot:
        await wait_for_view(app)
        await pilot.press("i")
        await settle(pilot, "files")
        assert isinstance(app.screen, TextViewScreen) and "CUDA out of memory (simulated)" in shown_text(app)
        await pilot.press("escape", "c")
        await settle(pilot, "files")
        assert app.screen.view_title == "Checkpoint" and "state: stopped" in shown_text(app)
        await pilot.press("q")
        assert not isinstance(app.screen, TextViewScreen) and app.is_running
        await pilot.press("v")  # this run's gate has no review folder
        await settle(pilot, "files")
        assert not isinstance(app.screen, TextViewScreen)
    assert any("nothing to show" in n for n in seen)

    app = create_app(templates["completed"], mode="watch")
    async with app.run_test() as pilot:
        await wait_for_view(app)
        await pilot.press("v")
        await settle(pilot, "files")
        text = shown_text(app)
        assert "── reviews/prepare.threshold-1/prompt.md ──" in text and "DECISION: SCALE" in text
        assert "── reviews/prepare.threshold-1/output.txt ──" in text
    assert app.check_action("incident", ()) is False  # a completed run has no incident to open


async def test_quit_in_watch_detaches_and_leaves_the_controller_running(live_run):
    app = create_app(live_run.run_dir, mode="watch")
    async with app.run_test() as pilot:
        await wait_for_view(app, lambda v: v.snapshot.controller_live)
        await pilot.press("q")
    assert app.return_value == "detached"
    assert controller_is_live(RunDir(live_run.run_dir)) and live_run.process.poll() is None


async def test_quit_in_run_mode_can_leave_the_session_running(live_run):
    app = create_app(live_run.run_dir, mode="run")
    async with app.run_test() as pilot:
        await wait_for_view(app, lambda v: v.snapshot.controller_live)
        await pilot.press("q")
        assert isinstance(app.screen, QuitRunScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, QuitRunScreen) and app.is_running
        await pilot.press("q", "l")
    assert app.return_value == "left running"
    assert controller_is_live(RunDir(live_run.run_dir))
    assert journal(live_run.run_dir, "SELECT * FROM commands") == []


async def test_quit_in_run_mode_can_stop_the_session(live_run):
    app = create_app(live_run.run_dir, mode="run")
    async with app.run_test() as pilot:
        await wait_for_view(app, lambda v: v.snapshot.controller_live)
        await pilot.press("q", "s")
        assert isinstance(app.screen, ConfirmStopScreen)
        await type_text(pilot, "done")
        await pilot.press("enter")
        await settle(pilot, "commands")
    assert app.return_value == "stopped"
    assert live_run.process.wait(timeout=30) == 3
    assert journal(live_run.run_dir, "SELECT state FROM run")[0]["state"] == "stopped"


async def test_quit_in_run_mode_on_a_finished_run_asks_nothing(templates):
    app = create_app(templates["completed"], mode="run")
    async with app.run_test() as pilot:
        await wait_for_view(app)
        await pilot.press("q")
    assert app.return_value == "finished"


async def test_quit_right_after_the_stop_asks_nothing_while_the_controller_finishes(templates):
    # The journal says stopped; the controller this UI started is still writing its report (a live child).
    finishing = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    app = create_app(templates["stopped"], mode="run", child=finishing)
    try:
        async with app.run_test() as pilot:
            await wait_for_view(app)
            await pilot.press("q")
        assert app.return_value == "finished"
    finally:
        finishing.kill()
        finishing.wait()


async def test_keys_offered_follow_the_run_state(templates):
    expected = {
        "completed": {"checkpoint", "review"},
        "paused": {"stop", "approve", "waive", "resume", "checkpoint", "review"},
        "stopped": {"resume", "checkpoint", "incident", "review"},
    }
    for state, keys in expected.items():
        app = create_app(templates[state], mode="watch")
        async with app.run_test():
            await wait_for_view(app)
            offered = {a for a in ("stop", "approve", "waive", "resume", "review", "checkpoint", "incident")
                       if app.check_action(a, ())}
        assert offered == keys, state


@pytest.mark.parametrize(("state", "needed"), [("stopped", "--retry"), ("paused", "phasegate approve")])
async def test_resume_of_a_run_that_needs_a_decision_names_it_and_starts_nothing(run_copy, notices, state, needed):
    run_dir = run_copy(state)
    app = create_app(run_dir, mode="watch")
    seen = notices(app)
    async with app.run_test() as pilot:
        await wait_for_view(app)
        await pilot.press("r")
        await pilot.pause()
    assert app.operator.children == [] and any(needed in n for n in seen), seen


async def test_log_view_follows_the_phase_log_and_searches_it(run_copy):
    run_dir = run_copy("completed")
    app = create_app(run_dir, mode="watch")
    async with app.run_test() as pilot:
        await wait_for_view(app)
        await pilot.press("l")
        assert isinstance(app.screen, LogScreen)
        await settle(pilot, "log")
        assert app.screen._shown[-1].endswith(" eval: starting (ok)")
        journal_ = Journal.open(run_dir / "state.db")  # a new event makes the app read the run again
        with open(run_dir / "logs" / "eval.log", "a") as handle:
            handle.write("step 10 loss 0.42\nstep 20 loss 0.31\n")
        journal_.append_event("log", "eval", {"message": "more output"})
        journal_.close()
        await wait_for_view(app, lambda v: v.feed[-1].text.endswith("step 20 loss 0.31"))
        await settle(pilot, "log")
        assert app.screen._shown[-1].endswith("step 20 loss 0.31")  # followed
        await pilot.press("slash", *"LOSS 0.4")
        await pilot.pause()
        assert [line.split(" ", 1)[1] for line in app.screen._shown] == ["step 10 loss 0.42"]
        await pilot.press("escape", "escape")  # the first clears the search, the second returns
        assert not isinstance(app.screen, LogScreen)


async def test_files_screen_shows_the_head_of_an_artifact(run_copy):
    run_dir = run_copy("completed")
    rows = "".join(f'{{"prompt": "row {i}"}}\n' for i in range(500))
    (run_dir / "artifacts" / "eval" / "metrics.json").write_text(rows)  # what a phase's train.jsonl looks like
    app = create_app(run_dir, mode="watch")
    async with app.run_test() as pilot:
        await wait_for_view(app)
        await pilot.press("f")
        assert isinstance(app.screen, FilesScreen)
        await pilot.press("enter")  # the current (last) phase's artifact comes first
        await settle(pilot, "files")
        assert isinstance(app.screen, TextViewScreen)
        text = shown_text(app)
        assert text.startswith('{"prompt": "row 0"}') and '"row 199"' in text and '"row 200"' not in text
        assert text.endswith(f"[first 200 lines of {len(rows)} bytes shown]")


async def test_metrics_key_charts_the_selected_metric(run_copy):
    run_dir = run_copy("completed")
    app = create_app(run_dir, mode="watch")
    async with app.run_test() as pilot:
        await wait_for_view(app)
        assert not app.check_action("metrics", ())  # nothing to chart yet
        journal_ = Journal.open(run_dir / "state.db")
        for value in (2.0, 1.0, 0.5):
            journal_.append_event(EventKind.METRIC, "eval", {"name": "loss", "value": value})
        journal_.close()
        await wait_for_view(app, lambda v: len(v.metrics) == 1)
        await pilot.press("m")
        assert isinstance(app.screen, MetricsScreen)
        await pilot.pause()
        assert app.screen.query_one(Sparkline).data == [2.0, 1.0, 0.5]
        assert str(app.screen.query_one("#chart-title").render()) == "eval/loss · 3 values · last 0.5"
