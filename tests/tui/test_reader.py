"""The reader, the feed and the formatting helpers: plain Python, on real run folders."""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from phasegate.journal.events import EventKind
from phasegate.journal.snapshot import GateView
from phasegate.journal.store import Journal
from phasegate.tui.controller_process import exit_code_for
from phasegate.tui.feed import feed_text as describe
from phasegate.tui.format import clock_text, fit_left, gate_detail
from phasegate.tui.reader import FEED_SIZE, RunReader
from phasegate.tui.widgets.budget import budget_lines
from phasegate.tui.widgets.gpu import gpu_lines
from phasegate.tui.widgets.metrics import metric_row


def gpu_lines_of(gpu):
    return gpu_lines(SimpleNamespace(snapshot=SimpleNamespace(gpu=gpu, metrics={})))

ROOT = Path(__file__).resolve().parents[2]


def test_poll_reads_only_when_the_journal_changed(run_copy):
    run_dir = run_copy("paused")
    reader = RunReader.open(run_dir, clock=lambda: 0.0, min_gap_s=0.0)
    first = reader.poll()
    assert first is not None and first.snapshot.state == "paused"
    assert reader.poll() is None  # nothing written, not yet a second later
    other = Journal.open(run_dir / "state.db")
    other.append_event("log", "eval", {"message": "hello from another process"})
    other.close()
    view = reader.poll()
    assert view is not None and view.feed[-1].text == "  eval: hello from another process"
    assert reader.poll(force=True) is not None
    reader.close()


def test_first_read_takes_only_the_tail_of_a_long_history(run_copy):
    run_dir = run_copy("completed")
    journal = Journal.open(run_dir / "state.db")
    for i in range(FEED_SIZE + 50):
        journal.append_event("log", "eval", {"message": f"line {i}"})
    journal.close()
    view = RunReader.open(run_dir).read()
    texts = [line.text for line in view.feed]
    assert len(texts) == FEED_SIZE and f"  eval: line {FEED_SIZE + 49}" in texts and "  eval: line 0" not in texts
    assert [line.n for line in view.feed] == sorted(line.n for line in view.feed)


def test_phase_output_is_followed_line_by_line(run_copy):
    run_dir = run_copy("completed")
    reader = RunReader.open(run_dir, min_gap_s=0.0)
    reader.read()
    log = run_dir / "logs" / "eval.log"  # the current phase of a completed run is its last
    with open(log, "a") as handle:
        handle.write("epoch 1 done\npartial")
    view = reader.poll()
    assert view.feed[-1].text == "eval │ epoch 1 done"
    with open(log, "a") as handle:
        handle.write(" line\n")
    assert reader.poll().feed[-1].text == "eval │ partial line"


def test_review_files_come_from_the_latest_review_of_that_gate(run_copy):
    run_dir = run_copy("completed")
    for name in ("g.review-1", "g.review-2", "g.review-x-9"):
        (run_dir / "reviews" / name).mkdir(parents=True)
        (run_dir / "reviews" / name / "prompt.md").write_text(name)
    (run_dir / "reviews" / "g.review-2" / "output.txt").write_text("SCALE")
    reader = RunReader.open(run_dir)
    files = reader.review_files("g.review")
    assert [p.relative_to(run_dir).as_posix() for p in files] == ["reviews/g.review-2/prompt.md",
                                                                    "reviews/g.review-2/output.txt"]
    assert reader.review_files("nothing") == []
    named = reader.review_files("g.review", str(run_dir / "reviews" / "g.review-1"))  # as a review gate's evidence
    assert [p.parent.name for p in named] == ["g.review-1"]
    assert reader.document(files).startswith("── reviews/g.review-2/prompt.md ──\ng.review-2")


def test_the_gpu_panel_says_what_the_journal_holds(templates):
    gpu = RunReader.open(templates["completed"]).read().snapshot.gpu
    title, _ = gpu_lines_of(gpu)
    # Either a real GPU (on a pod) or the sampler's reason why there is none, never a crash or a blank.
    assert title.startswith("mem ") if gpu.available else title == f"GPU: not available ({gpu.reason})"


def test_the_gpu_panel_names_a_phase_that_ran_on_the_cpu():
    gpu = SimpleNamespace(available=False, reason="NVMLError_LibraryNotFound")
    view = SimpleNamespace(snapshot=SimpleNamespace(gpu=gpu, metrics={"load": {"cpu_fallback": 1.0}, "other": {}}))
    title, _ = gpu_lines(view)
    assert title == "GPU: not available (NVMLError_LibraryNotFound) · load ran on the CPU: no usable CUDA"


def test_events_read_as_words():
    assert describe("progress", "a", "{}") is None
    assert describe("gate_decided", "a", '{"gate_id": "a.qc", "status": "fail", "summary": "low"}') == \
        "  gate a.qc: FAIL — low"
    assert describe("brand_new_kind", "a", "{}") == "  brand_new_kind (a)"


def test_gate_detail_shows_rules_reviewer_and_waiver():
    gate = GateView("qc", "pilot", 1, "post", "threshold", "waived", "1 of 2 fail",
                    {"rules": [{"rule": "acc >= 0.9", "actual": 0.93, "passed": True},
                               {"rule": "dup < 0.1", "actual": 0.2, "passed": False}],
                     "decision": "ITERATE", "reasons": ["too many duplicates"]}, {}, waived="known issue")
    assert gate_detail(gate) == ("qc: WAIVED: known issue · ✓ acc >= 0.9 (got 0.93) · ✗ dup < 0.1 (got 0.2)"
                                 " · reviewer: ITERATE — too many duplicates")


def test_budget_lines_show_a_dash_for_figures_the_budget_lacks():
    spent, burn = budget_lines({"allocation_usd": 10.0, "spent_usd": 12.0, "left_usd": -2.0, "gpu_hourly_usd": 2.0})
    assert spent == "spent $12.00 of $10.00 · OVER BUDGET · GPU $2.00/h"
    assert burn == "burn — · proj — · left —"
    assert budget_lines({"spent_usd": None})[0] == "budget: cost not tracked (no gpu_hourly_usd)"


def test_small_formatters():
    assert clock_text(3725) == "1:02:05" and clock_text(None) == "—"
    assert fit_left("/very/long/path/to/run", 10) == "…th/to/run" and fit_left("/a/b", 10) == "/a/b"
    assert exit_code_for("paused", False) == 4 and exit_code_for("paused", True) == 0


def imports_textual(path: Path) -> bool:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
        if any(name.split(".")[0] == "textual" for name in names):
            return True
    return False


def test_only_tui_imports_textual():
    folders = [p for p in ROOT.iterdir()
               if p.is_dir() and not p.name.startswith(".") and p.name not in ("tui", "runs")]
    files = [*ROOT.glob("*.py"), *(p for folder in folders for p in folder.rglob("*.py"))]
    offenders = [p.relative_to(ROOT).as_posix() for p in files
                 if p.relative_to(ROOT).parts[:2] != ("tests", "tui") and imports_textual(p)]
    assert offenders == []


def test_the_tui_plumbing_the_cli_uses_does_not_load_textual():
    code = ("import sys, phasegate.tui, phasegate.tui.launch, phasegate.tui.reader, phasegate.tui.operator; "
            "print('textual' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_log_lines_carry_the_time_the_runner_wrote_them(run_copy):
    run_dir = run_copy("completed")
    offset, written = (run_dir / "logs" / "eval.log.times").read_text().split()
    assert offset == "0"
    view = RunReader.open(run_dir, clock=lambda: 0.0).read()  # a reader's clock far from the write
    [line] = [line for line in view.feed if line.text.startswith("eval │")]
    assert line.ts == float(written)
    tail = RunReader.open(run_dir).log_tail("eval")
    assert tail.lines == ((float(written), "eval: starting (ok)"),)


def test_paused_time_is_left_out_of_durations(run_copy):
    run_dir = run_copy("paused")
    soon, later = (RunReader.open(run_dir, clock=lambda t=t: time.time() + t).read() for t in (0, 3600))
    [(paused_at, still_open)] = later.pauses
    assert still_open is None
    # A paused run's clock stands still: an hour later it has run exactly as long as when it paused.
    assert later.elapsed_s == soon.elapsed_s == paused_at - later.snapshot.created_at


def test_metrics_keep_their_history_and_stay_out_of_the_log(run_copy):
    run_dir = run_copy("completed")
    journal = Journal.open(run_dir / "state.db")
    for value in (2.5, 1.5, 0.9):
        journal.append_event(EventKind.METRIC, "eval", {"name": "loss", "value": value})
    for i in range(FEED_SIZE + 10):  # metric events older than the feed's tail still draw the curve
        journal.append_event("log", "eval", {"message": f"line {i}"})
    journal.close()
    view = RunReader.open(run_dir).read()
    [series] = view.metrics
    assert (series.label, series.values) == ("eval/loss", (2.5, 1.5, 0.9))
    assert metric_row(series)[:2] == ("eval/loss", "0.9") and metric_row(series)[3:] == ("0.9", "2.5")
    assert describe("metric", "eval", '{"name": "loss", "value": 0.9}') is None


def test_timers_stop_when_the_controller_is_gone(live_run):
    live_run.process.kill()
    live_run.process.wait(timeout=30)
    now, later = (RunReader.open(live_run.run_dir, clock=lambda t=t: time.time() + t).read() for t in (0, 3600))
    assert later.controller_gone and later.elapsed_s == now.elapsed_s
    train = next(p for p in later.snapshot.phases if p.id == "train")
    assert later.phase_word(train) == "lost" and later.phase_elapsed(train) == now.phase_elapsed(train)
    assert later.phase_eta(train) is None
