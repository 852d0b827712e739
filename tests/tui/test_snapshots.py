"""One screenshot per screen and per major session state, at 80×24 (and one large terminal).

Runs are real (see conftest); FrozenReader fixes the clock, times, paths and digests, and gives the
states that would have a GPU on a pod a fixed reading (no GPU here). Update with `--snapshot-update`.
"""

from __future__ import annotations

import pytest

from phasegate.tui.app import create_app
from phasegate.tui.view import MetricSeries
from tests.tui.conftest import NO_GPU, FrozenReader, settle, wait_for_view

BURN = {"burn_rate_usd_h": 2.5, "projected_total_usd": 9.1, "time_left_h": 2.3,
        "per_phase_usd": {"prepare": 0.42, "train": 3.78}}
LOSS = tuple(2.4 * 0.93 ** i + 0.05 * (i % 3) for i in range(60))
METRICS = (MetricSeries("train", "loss", LOSS), MetricSeries("train", "lr", tuple(3e-4 for _ in range(60))),
           MetricSeries("prepare", "acc", (0.93,)))


def app_for(run_dir, *, mode="watch", **reader_options):
    app = create_app(run_dir, mode=mode, reader=FrozenReader(run_dir, **reader_options))
    app.animation_level = "none"  # no scroll or cursor animation half way through a screenshot
    return app


def shown_after(*keys: str, group: str | None = None):
    """A run_before hook: wait for the first view, press keys, wait for the workers they started."""

    async def run_before(pilot) -> None:
        await wait_for_view(pilot.app)
        await pilot.pause()
        if keys:
            await pilot.press(*keys)
            await settle(pilot, group)

    return run_before


@pytest.mark.parametrize("state", ["completed", "paused", "stopped"])
def test_main_screen_of_a_finished_run(snap_compare, templates, state):
    assert snap_compare(app_for(templates[state]), run_before=shown_after())


def test_main_screen_running(snap_compare, shared_live_run):
    """Progress 1 of 4 after 11:34 in train: its ETA is three times that; per-phase cost; metrics as a table."""
    app = app_for(shared_live_run.run_dir, budget=BURN, metrics=METRICS)
    assert snap_compare(app, run_before=shown_after())


def test_main_screen_when_the_controller_is_gone(snap_compare, live_run):
    """A killed controller: the header says so and that r resumes; timers stop at its last journal event."""
    live_run.process.kill()
    live_run.process.wait(timeout=30)
    assert snap_compare(app_for(live_run.run_dir, budget=BURN), run_before=shown_after())


def test_metrics_chart(snap_compare, shared_live_run):
    app = app_for(shared_live_run.run_dir, metrics=METRICS)
    assert snap_compare(app, run_before=shown_after("m"))


def test_log_view_searched(snap_compare, templates):
    """The last phase's log with each line's write time (from the runner's index), filtered by a search."""
    app = app_for(templates["stopped"])
    assert snap_compare(app, run_before=shown_after("l", "slash", "C", "U", "D", "A", group="log"))


def test_files_screen(snap_compare, templates):
    assert snap_compare(app_for(templates["completed"]), run_before=shown_after("f"))


def test_file_head(snap_compare, templates):
    assert snap_compare(app_for(templates["completed"]), run_before=shown_after("f", "enter", group="files"))


def test_main_screen_running_without_a_gpu(snap_compare, shared_live_run):
    assert snap_compare(app_for(shared_live_run.run_dir, gpu=NO_GPU), run_before=shown_after())


def test_main_screen_running_on_a_large_terminal(snap_compare, shared_live_run):
    app = app_for(shared_live_run.run_dir, budget=BURN, metrics=METRICS)
    assert snap_compare(app, terminal_size=(140, 44), run_before=shown_after())


def test_confirm_stop_dialog(snap_compare, shared_live_run):
    assert snap_compare(app_for(shared_live_run.run_dir), run_before=shown_after("s"))


def test_quit_dialog_in_run_mode(snap_compare, shared_live_run):
    assert snap_compare(app_for(shared_live_run.run_dir, mode="run"), run_before=shown_after("q"))


def test_approve_dialog(snap_compare, templates):
    assert snap_compare(app_for(templates["paused"]), run_before=shown_after("a"))


def test_waive_dialog(snap_compare, templates):
    assert snap_compare(app_for(templates["paused"]), run_before=shown_after("w"))


@pytest.mark.parametrize(("state", "key"), [("completed", "c"), ("stopped", "i"), ("completed", "v")],
                         ids=["checkpoint", "incident", "review"])
def test_text_views(snap_compare, templates, state, key):
    assert snap_compare(app_for(templates[state]), run_before=shown_after(key, group="files"))
