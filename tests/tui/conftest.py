"""Real run folders in every major state, made by running real sessions through the `phasegate` CLI.

Template runs are built once per test session; a test that changes a run gets its own copy
(a finished run folder is self-contained). A live run is a real headless controller whose phase
waits on a file the test controls. `FrozenReader` is the real reader over the real run with the
clock, times, paths and digests fixed, so screenshots repeat exactly.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import textwrap
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from phasegate.journal.snapshot import GpuView
from phasegate.session.runs import open_run
from phasegate.tui.reader import RunReader
from phasegate.tui.view import FeedLine, LogTail, MetricSeries, RunView

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
NOW = T0 + 754.0
PAUSED_AT = NOW - 60.0
LAST_HEARD = T0 + 700.0
FIXED_RUN_DIR = "/runs/demo-20260101T000000Z"
FIXED_SESSION_DIR = "/work/sessions/demo"

PHASE = textwrap.dedent('''
    """A test phase: prints two lines, reports progress and a log line, then passes, fails or waits."""
    import json, os, sys, time
    mode = sys.argv[1]
    fd = os.environ.get("PHASEGATE_EVENTS_FD")
    events = os.fdopen(int(fd), "w", buffering=1, closefd=False) if fd else None
    def send(**event):
        if events:
            events.write(json.dumps(event) + "\\n")
    print(f"{os.environ['PHASEGATE_PHASE']}: starting ({mode})", flush=True)
    send(type="progress", done=1, total=4, step="warming up")
    send(type="log", message="loaded 128 examples")
    if mode.startswith("wait:"):
        while not os.path.exists(mode[5:]):  # the test creates this file to let the phase finish
            time.sleep(0.02)
    if mode == "fail":
        print("CUDA out of memory (simulated)", flush=True)
        sys.exit(1)
    with open(os.path.join(os.environ["PHASEGATE_ARTIFACTS"], "metrics.json"), "w") as f:
        json.dump({"acc": 0.93}, f)
    send(type="progress", done=4, total=4, step="done")
''')


def session_text(train: str, *, approval: bool) -> str:
    """prepare (threshold gate) → train (`train` mode) → eval (optionally behind an approval gate)."""
    py = sys.executable
    text = textwrap.dedent(f'''
        [session]
        name = "demo"
        budget_usd = 10.0
        gpu_hourly_usd = 2.5

        [[phases]]
        id = "prepare"
        run = ["{py}", "phase.py", "ok"]
        [[phases.gates]]
        kind = "threshold"
        file = "{{artifacts}}/metrics.json"
        rules = ["acc >= 0.9"]

        [[phases]]
        id = "train"
        run = ["{py}", "phase.py", "{train}"]

        [[phases]]
        id = "eval"
        run = ["{py}", "phase.py", "ok"]
    ''')
    if approval:
        text += '[[phases.pre_gates]]\nkind = "approval"\nmessage = "Check the pilot samples before the eval."\n'
    return text


def make_session(folder: Path, train: str = "ok", *, approval: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "phase.py").write_text(PHASE)
    session = folder / "demo.toml"
    session.write_text(session_text(train, approval=approval))
    return session


def start_run(folder: Path, train: str, *, approval: bool) -> subprocess.Popen:
    """Start `phasegate run --headless` on a new session in `folder`; the run goes to folder/run."""
    session = make_session(folder, train, approval=approval)
    return subprocess.Popen([sys.executable, "-m", "phasegate", "run", str(session), "--run-dir", str(folder / "run"),
                             "--headless"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def add_review(run_dir: Path, gate_id: str) -> None:
    """A review folder as reviews/ writes it (the review gate kind is not wired to the controller yet)."""
    folder = run_dir / "reviews" / f"{gate_id}-1"
    folder.mkdir(parents=True)
    (folder / "prompt.md").write_text(f"# Review of gate {gate_id}\n\nThe pilot passed QC: acc 0.93 >= 0.9.\n")
    (folder / "output.txt").write_text("DECISION: SCALE\nREASONS:\n- QC holds with margin\n")
    (folder / "meta.json").write_text(json.dumps({"argv": ["claude", "-p"], "exit_code": 0, "cost_usd": 0.04}))


@pytest.fixture(scope="session")
def templates(tmp_path_factory) -> dict[str, Path]:
    """Finished runs, built once: completed, paused at an approval gate, stopped with an incident."""
    base = tmp_path_factory.mktemp("tui-templates")
    wanted = {"completed": ("ok", False, 0), "paused": ("ok", True, 4), "stopped": ("fail", False, 3)}
    started = {state: start_run(base / state, train, approval=approval)  # side by side: they are independent
               for state, (train, approval, _) in wanted.items()}
    for state, process in started.items():
        _, errors = process.communicate(timeout=120)
        assert process.returncode == wanted[state][2], errors
    runs = {state: base / state / "run" for state in wanted}
    add_review(runs["completed"], "prepare.threshold")
    return runs


@pytest.fixture
def run_copy(templates, tmp_path):
    """A private copy of a template run, for a test that changes it."""

    def copy(state: str) -> Path:
        target = tmp_path / f"{state}-run"
        shutil.copytree(templates[state], target)
        return target

    return copy


class LiveRun:
    """A real headless controller whose `train` phase waits until `release()`."""

    def __init__(self, folder: Path) -> None:
        self.go = folder / "go"
        session = make_session(folder, f"wait:{self.go}", approval=True)
        self.run_dir = folder / "run"
        self.process = subprocess.Popen([sys.executable, "-m", "phasegate", "run", str(session), "--run-dir",
                                         str(self.run_dir), "--headless"], stdout=subprocess.PIPE, text=True)
        for line in self.process.stdout:  # block on the controller's own event stream until train waits
            event = json.loads(line)
            if event["type"] == "log" and event["phase"] == "train":
                break
        threading.Thread(target=self.process.stdout.read, daemon=True).start()  # keep the pipe drained

    def release(self) -> None:
        self.go.touch()

    def finish(self) -> int:
        self.release()
        return self.process.wait(timeout=30)


@pytest.fixture
def live_run(tmp_path):
    run = LiveRun(tmp_path / "live")
    yield run
    run.finish()


@pytest.fixture(scope="module")
def shared_live_run(tmp_path_factory):
    """One live run for read-only tests of a module."""
    run = LiveRun(tmp_path_factory.mktemp("shared-live"))
    yield run
    run.finish()


FAKE_GPU = GpuView(available=True, name="NVIDIA H100 80GB HBM3", mem_used_mb=35_021.0, mem_total_mb=81_559.0,
                   util_pct=87.0, temp_c=71.0, power_w=312.0,
                   history_mem_pct=tuple(20.0 + (i * 7) % 30 for i in range(40)), peak_mem_mb=61_440.0)


# What the GPU sampler journals on a machine without NVML; fixed so the screenshot is the same on a GPU pod.
NO_GPU = GpuView(available=False, reason="NVML unavailable: NVML Shared Library Not Found")


class FrozenReader(RunReader):
    """The real reader over a real run, with times, paths, digests, budget figures and the GPU made fixed."""

    def __init__(self, run_dir: Path, *, gpu: GpuView = FAKE_GPU, budget: dict | None = None,
                 metrics: tuple[MetricSeries, ...] | None = None) -> None:
        super().__init__(open_run(run_dir), clock=lambda: NOW)
        self.gpu = gpu
        self.budget = budget or {}
        self.metrics = metrics

    def read(self) -> RunView:
        view = super().read()
        snap = view.snapshot
        finished = snap.state in ("completed", "stopped", "failed")
        phases = tuple(replace(p, started_at=None if p.started_at is None else T0 + 60 * i,
                               ended_at=None if p.ended_at is None else T0 + 60 * i + 30)
                       for i, p in enumerate(snap.phases))
        snap = replace(snap, run_dir=Path(FIXED_RUN_DIR), session_dir=Path(FIXED_SESSION_DIR), created_at=T0,
                       updated_at=T0 + 600 if finished else NOW, phases=phases,
                       budget={**FIXED_BUDGET, **self.budget},
                       gpu=self.gpu,
                       checkpoint=snap.checkpoint, incident=snap.incident)
        feed = tuple(FeedLine(line.n, T0 + line.n, self.mask(line.text)) for line in view.feed)
        # The last minute of a paused run was spent paused; a controller that is gone was last heard at T0 + 700.
        pauses = ((PAUSED_AT, None),) if snap.state == "paused" else ()
        metrics = view.metrics if self.metrics is None else self.metrics
        return RunView(snap, feed, NOW, pauses, metrics, LAST_HEARD)

    def mask(self, text: str) -> str:
        """Replace what differs between test runs: paths, stamps, digests, durations, the interpreter."""
        text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)?", "2026-01-01T00:10:00+00:00", text)
        text = re.sub(r"\d{8}T\d{6}Z", "20260101T001000Z", text)
        text = text.replace(str(self.run_dir), FIXED_RUN_DIR).replace(str(self.run.session_dir), FIXED_SESSION_DIR)
        text = text.replace(sys.executable, "python")
        text = re.sub(r"[0-9a-f]{64}", "<sha256>", text)
        # Durations and money follow the wall clock of the run that made the folder.
        text = re.sub(r"\b\d+\.\d+ (s|min|h)\b", r"1.0 \1", text)
        text = re.sub(r"budget_(\w+): -?[\d.]+", r"budget_\1: 0.0", text)
        text = re.sub(r"\$-?[\d,]+\.\d+", "$0.00", text)
        return re.sub(r"over \d+\.\d+", "over 0.00", text)

    def document(self, paths: list[Path]) -> str:
        return self.mask(super().document(paths))

    def log_tail(self, phase_id: str, *, known_size: int | None = None) -> LogTail | None:
        tail = super().log_tail(phase_id, known_size=known_size)
        if tail is None:
            return None
        return LogTail(tail.size, tuple((None if ts is None else T0 + 600 + i, self.mask(text))
                                        for i, (ts, text) in enumerate(tail.lines)))


# The whole budget is fixed (its figures follow the wall clock), burn figures absent unless a test adds them.
FIXED_BUDGET = {"allocation_usd": 10.0, "gpu_hourly_usd": 2.5, "spent_usd": 4.2, "left_usd": 5.8, "wall_hours": 1.68,
                "burn_rate_usd_h": None, "projected_total_usd": None, "time_left_h": None}


async def wait_for_view(app, predicate=lambda view: True, timeout: float = 20.0) -> RunView:
    """Wait until the app has applied a view that satisfies `predicate` (no sleeping: a reactive watch)."""
    done = asyncio.get_running_loop().create_future()

    def check(view):
        if view is not None and predicate(view) and not done.done():
            done.set_result(view)

    app.watch(app, "view", check)
    return await asyncio.wait_for(done, timeout)


async def settle(pilot, group: str | None = None) -> None:
    """Wait for the app's command and file workers to finish and their messages to be handled."""
    workers = [w for w in pilot.app.workers if w.group != "reader" and (group is None or w.group == group)]
    # Each worker's own wait(): the manager's wait_for_complete([]) would wait for the endless sampler too.
    await asyncio.gather(*(w.wait() for w in workers), return_exceptions=True)
    await pilot.pause()
    await pilot.pause()


@pytest.fixture
def notices(monkeypatch):
    """Collect an app's notifications (tests run without toasts on screen)."""

    def attach(app) -> list[str]:
        seen: list[str] = []
        original = app.notify
        monkeypatch.setattr(app, "notify", lambda message, **kw: (seen.append(str(message)), original(message, **kw)))
        return seen

    return attach

