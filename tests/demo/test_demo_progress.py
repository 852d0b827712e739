"""The demo model's training shows its progress: steps, loss and an ETA, as JSON lines, plain lines or a bar."""

from __future__ import annotations

import io
import json

from rich.console import Console

from phasegate.cli.progress_view import terminal_progress
from phasegate.demo.model import INFO_FILE, BuildProgress, TrainSettings, build_demo_model
from phasegate.demo.run import progress_json_lines, progress_lines

# A real build, cut to a few small steps: the default settings train for a minute.
QUICK = TrainSettings(hidden_size=32, layers=1, heads=2, batch_size=2, steps=6, warmup_steps=2)


def test_a_fresh_build_streams_every_step_with_an_eta_as_json_lines(tmp_path):
    stream = io.StringIO()
    said: list[str] = []
    model_dir = build_demo_model(tmp_path / "cache", log=said.append, progress=progress_json_lines(stream, every_s=0),
                                 settings=QUICK)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert {r["type"] for r in records} == {"demo_progress"} and {r["total"] for r in records} == {QUICK.steps}
    assert [r["done"] for r in records] == list(range(QUICK.steps + 1))
    assert records[0]["eta_s"] is None and all(r["eta_s"] >= 0 for r in records[1:]) and records[-1]["eta_s"] == 0
    assert all(isinstance(r["loss"], float) for r in records[1:])
    assert (model_dir / INFO_FILE).is_file() and "demo model trained in" in said[-1]
    cached = io.StringIO()  # the model is cached now: nothing trains, nothing is reported
    assert build_demo_model(tmp_path / "cache", progress=progress_json_lines(cached), settings=QUICK) == model_dir
    assert cached.getvalue() == ""


def test_plain_lines_come_every_few_seconds_with_the_first_and_the_last():
    now = [0.0]
    said: list[str] = []
    report = progress_lines(said.append, every_s=5, clock=lambda: now[0])
    for done in range(0, 21):
        now[0] = done * 1.0  # one step a second
        report(BuildProgress(done, 20, elapsed_s=now[0], loss=2.0 if done else None))
    assert said[0] == "demo model: step 0/20 (0 %)"
    assert said[1:] == [f"demo model: step {n}/20 ({n * 5} %), loss 2.000, about {20 - n} s left" for n in (5, 10, 15)] \
        + ["demo model: step 20/20 (100 %), loss 2.000, about 0 s left"]


def test_on_a_terminal_a_bar_shows_the_steps_and_the_time_left():
    screen = io.StringIO()
    with terminal_progress(Console(file=screen, force_terminal=True, width=120, color_system=None)) as report:
        for done in range(4):
            report(BuildProgress(done, 3 * 50, elapsed_s=done * 0.2, loss=3.5 if done else None))
    text = screen.getvalue()
    assert "demo model" in text and "3/150 steps" in text and "ETA" in text and "loss 3.500" in text
    quiet = io.StringIO()  # a cached model draws no bar
    with terminal_progress(Console(file=quiet, force_terminal=True)):
        pass
    assert "demo model" not in quiet.getvalue()
