"""PhasegateApp: an operator's full-screen view of one run, and `create_app`, the factory the CLI and tests use.

Modes
-----
watch
    `phasegate watch RUN_DIR` attaches to any run: live or finished, started from a terminal or headless
    by an agent. Quitting only detaches; a live controller keeps running.
run
    `phasegate run SESSION` or `phasegate resume RUN_DIR` on a terminal. The controller does not run in
    this process: the CLI spawns `phasegate resume RUN_DIR --headless` as a child in its own session
    (output in RUN_DIR/logs/_controller.log) and this app watches it like any other run. Quitting while
    it runs asks whether to stop the session (a stop command with a reason) or leave it running headless.

How it works
------------
The app never runs session logic: it reads the journal and writes the commands the CLI writes. A sampler
worker thread polls a RunReader and posts frozen RunView messages that replace each other in the queue;
the UI applies the newest to the `view` reactive, which every panel takes through `data_bind`, at once
when its last redraw is a quarter second old and otherwise from an interval, so the screen redraws at
most MAX_REDRAWS_PER_S times a second however fast the journal grows, and a lone event shows at once. Operator keys run
in worker threads; their errors are reported in one place (`_worker_failed`).

There is no pause key: the controller has no pause command (it pauses only at approval gates), and a
pause the controller does not honour would be a lie on the screen.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import DataTable
from textual.worker import Worker, WorkerState, get_current_worker

from phasegate.floor.errors import PhasegateError
from phasegate.floor.states import NextAction
from phasegate.journal.snapshot import GateView
from phasegate.tui.messages import CommandDone, ReaderTrouble, TextLoaded, ViewSampled
from phasegate.tui.operator import Operator
from phasegate.tui.reader import RunReader
from phasegate.tui.screens.approve import ApproveScreen
from phasegate.tui.screens.confirm_stop import ConfirmStopScreen
from phasegate.tui.screens.files import FilesScreen
from phasegate.tui.screens.log_view import LogScreen
from phasegate.tui.screens.metrics import MetricsScreen
from phasegate.tui.screens.quit_run import QuitRunScreen
from phasegate.tui.screens.text_view import TextViewScreen
from phasegate.tui.screens.waive import WaiveScreen
from phasegate.tui.view import RunView
from phasegate.tui.widgets.budget import BudgetPanel
from phasegate.tui.widgets.current_phase import CurrentPhase
from phasegate.tui.widgets.footer import KeyFooter
from phasegate.tui.widgets.gates import GatesPanel
from phasegate.tui.widgets.gpu import GpuPanel
from phasegate.tui.widgets.header import RunHeader
from phasegate.tui.widgets.metrics import MetricsPanel
from phasegate.tui.widgets.timeline import Timeline

MODES = ("watch", "run")
MAX_REDRAWS_PER_S = 4
POLL_S = 0.1  # a poll is one `PRAGMA data_version` query when nothing changed
# What a run needs before `r` can resume it: an approval, a waiver, an amendment or an explicit retry.
DECISIONS_BEFORE_RESUME = frozenset({NextAction.APPROVE, NextAction.RETRY, NextAction.WAIVE_OR_AMEND,
                                     NextAction.NEW_RUN})
OPERATOR_ACTIONS = {"stop", "approve", "waive", "resume", "review", "checkpoint", "incident", "log", "files",
                    "metrics"}


class PhasegateApp(App[str]):
    """The live session view: header, phase timeline, current phase, gates, metrics, GPU, budget, operator keys."""

    CSS_PATH = "app.tcss"
    TITLE = "phasegate"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("s", "stop", "Stop"),
        Binding("a", "approve", "Approve"),
        Binding("w", "waive", "Waive"),
        Binding("r", "resume", "Resume"),
        Binding("v", "review", "Review"),
        Binding("c", "checkpoint", "Checkpoint"),
        Binding("i", "incident", "Incident"),
        Binding("l", "log", "Log"),
        Binding("f", "files", "Files"),
        Binding("m", "metrics", "Chart"),
        Binding("q", "quit", "Quit"),
    ]

    view: reactive[RunView | None] = reactive(None)
    """The run as last applied to the screen; every panel is bound to it."""

    def __init__(self, *, reader: RunReader, operator: Operator, mode: str) -> None:
        super().__init__()
        self.reader = reader
        self.operator = operator
        self.mode = mode
        self._pending: RunView | None = None
        self._applied_at = -1.0
        self._wake = threading.Event()
        self._trouble: str | None = None
        self._offered: frozenset[str] = frozenset()

    def compose(self) -> ComposeResult:
        yield RunHeader(self.mode).data_bind(PhasegateApp.view)
        with Horizontal(id="top"):
            yield Timeline().data_bind(PhasegateApp.view)
            yield CurrentPhase().data_bind(PhasegateApp.view)
        with Horizontal(id="middle"):
            yield GatesPanel().data_bind(PhasegateApp.view)
            yield MetricsPanel().data_bind(PhasegateApp.view)
        with Horizontal(id="bottom"):
            yield GpuPanel().data_bind(PhasegateApp.view)
            yield BudgetPanel().data_bind(PhasegateApp.view)
        yield KeyFooter()

    def on_mount(self) -> None:
        for widget, title in ((Timeline, "Phases"), (CurrentPhase, "Current phase"), (GatesPanel, "Gates"),
                              (MetricsPanel, "Metrics"), (GpuPanel, "GPU"), (BudgetPanel, "Budget")):
            self.query_one(widget).border_title = title
        self.query_one("#gates-table", DataTable).focus()
        # The trailing edge of the throttle: a view that came too soon after a redraw is shown by this tick.
        self.set_interval(1 / (2 * MAX_REDRAWS_PER_S), self._apply_pending)
        # After the first layout: a ProgressBar rounds its value to its width, so it must have one first.
        self.call_after_refresh(self._sample)

    # -- reading: the sampler thread proposes, the interval disposes ---------------------------
    @work(thread=True, exclusive=True, group="reader", exit_on_error=False)
    def _sample(self) -> None:
        worker, force = get_current_worker(), True
        while not worker.is_cancelled:
            try:
                view = self.reader.poll(force=force)
                for problem in self.operator.reap():
                    self.post_message(ReaderTrouble(problem))
            except Exception as exc:  # noqa: BLE001 - one failed read must not end the live view
                self.post_message(ReaderTrouble(f"cannot read the run: {type(exc).__name__}: {exc}"))
                view = None
            if view is not None:
                self.post_message(ViewSampled(view))
            force = self._wake.wait(POLL_S)
            self._wake.clear()

    @on(ViewSampled)
    def _keep(self, message: ViewSampled) -> None:
        self._pending = message.view
        self._apply_pending()  # at once when the last redraw is old enough: a lone event shows without delay

    def _apply_pending(self) -> None:
        """Show the newest view, unless the screen was redrawn less than a redraw gap ago (the interval retries)."""
        now = time.monotonic()
        if self._pending is not None and now - self._applied_at >= 1 / MAX_REDRAWS_PER_S:
            self.view, self._pending, self._applied_at = self._pending, None, now

    def watch_view(self) -> None:
        offered = frozenset(a for a in OPERATOR_ACTIONS if self.check_action(a, ()))
        if offered != self._offered:  # the footer is rebuilt on a refresh, so only when the keys change
            self._offered = offered
            self.refresh_bindings()

    @on(ReaderTrouble)
    def _reader_trouble(self, message: ReaderTrouble) -> None:
        if message.error != self._trouble:  # once per distinct problem, not ten times a second
            self._trouble = message.error
            self.notify(message.error, severity="warning", timeout=8)

    def wake_reader(self) -> None:
        """Read the run now instead of at the next poll (after a command changed it)."""
        self._wake.set()

    def _stop_sampler(self) -> None:
        self.workers.cancel_group(self, "reader")
        self._wake.set()

    def exit(self, *args, **kwargs) -> None:
        # Textual cancels workers too, but only after its message loop ends; this also cuts the poll's wait.
        self._stop_sampler()
        super().exit(*args, **kwargs)

    # -- which keys apply now ----------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if len(self.screen_stack) > 1:  # a dialog or text view is up: only its own keys apply
            return action not in OPERATOR_ACTIONS | {"quit"}
        if action not in OPERATOR_ACTIONS:
            return True
        if self.view is None:
            return False
        snap = self.view.snapshot
        return {
            "stop": snap.state in ("created", "running", "paused") or snap.controller_live,
            "approve": bool(self._approvable()),
            "waive": any(g.status in ("fail", "pending") for g in snap.gates),
            "resume": not (snap.controller_live or self._started_here_running()) and snap.state != "completed",
            "review": bool(snap.gates),
            "checkpoint": snap.checkpoint is not None,
            "incident": snap.incident is not None,
            "log": self.view.log_phase is not None,
            "files": bool(snap.artifacts),
            "metrics": bool(self.view.metrics),
        }[action]

    def _approvable(self) -> list[GateView]:
        """Pending gates no operator has approved yet."""
        return self.view.snapshot.waiting_gates if self.view else []

    def _started_here_running(self) -> bool:
        return any(child.poll() is None for child in self.operator.children)

    def _session_running(self) -> bool:
        if self.view is None:
            return self._started_here_running()
        snap = self.view.snapshot
        # A controller (this UI's or another) that has written a stop, a pause or the end is only finishing its
        # last writes (incident report, checkpoint, lock): quitting then leaves nothing running.
        return snap.state in ("created", "running") and (snap.controller_live or self._started_here_running())

    # -- operator actions --------------------------------------------------------------------
    def action_stop(self) -> None:
        self.push_screen(ConfirmStopScreen(self.view.snapshot.name), self._stop_confirmed)

    def _stop_confirmed(self, reason: str | None, *, then_exit: bool = False) -> None:
        if reason:
            self._command("stop", partial(self.operator.stop, reason), then_exit)

    def action_approve(self) -> None:
        candidates = self._approvable()
        selected = self.query_one(GatesPanel).selected
        gate = next((g for g in candidates if g.gate_id == selected), candidates[0])
        self.push_screen(ApproveScreen(gate.gate_id, gate.summary), partial(self._approve, gate.gate_id))

    def _approve(self, gate_id: str, note: str | None) -> None:
        if note is not None:
            self._command("approve", partial(self.operator.approve, gate_id, note))

    def action_waive(self) -> None:
        gate = self.query_one(GatesPanel).selected_gate()
        if gate is None or gate.status not in ("fail", "pending"):
            self.notify("Select a FAIL or PENDING gate in the gates table (↑/↓), then press w.",
                        severity="warning")
            return
        self.push_screen(WaiveScreen(gate.gate_id, gate.status.upper()), partial(self._waive, gate.gate_id))

    def _waive(self, gate_id: str, reason: str | None) -> None:
        if reason:
            self._command("waive", partial(self.operator.waive, gate_id, reason))

    def action_resume(self) -> None:
        step = self.view.snapshot.next if self.view is not None else None
        if step is not None and step.action in DECISIONS_BEFORE_RESUME:  # a plain resume would not run: say why
            self.notify(f"{step.reason}\n" + "\n".join(step.commands), title=f"next: {step.action}", timeout=30)
            return
        self._command("resume", self.operator.resume)

    def action_review(self) -> None:
        gate = self.query_one(GatesPanel).selected_gate()
        if gate is not None:
            self._load_text(f"Review of gate {gate.gate_id}",
                            partial(self.reader.review_files, gate.gate_id, gate.evidence.get("review_dir")))

    def action_checkpoint(self) -> None:
        self._load_text("Checkpoint", partial(list, [self.view.snapshot.checkpoint]))

    def action_incident(self) -> None:
        self._load_text("Latest incident report", partial(list, [self.view.snapshot.incident]))

    def action_log(self) -> None:
        self.push_screen(LogScreen(self.reader, self.view.log_phase.id))

    def action_files(self) -> None:
        current = self.view.current_phase
        self.push_screen(FilesScreen(self.reader, self.view.snapshot.artifacts, current.id if current else None))

    def action_metrics(self) -> None:
        self.push_screen(MetricsScreen(self.query_one(MetricsPanel).selected))

    def action_quit(self) -> None:
        if self.mode == "run" and self._session_running():
            self.push_screen(QuitRunScreen(self.view.snapshot.name if self.view else "?"), self._quit_chosen)
        else:
            self.exit("detached" if self.mode == "watch" else "finished")

    def _quit_chosen(self, choice: str | None) -> None:
        if choice == "leave":
            self.exit("left running")
        elif choice == "stop":
            self.push_screen(ConfirmStopScreen(self.view.snapshot.name), partial(self._stop_confirmed, then_exit=True))

    # -- workers -----------------------------------------------------------------------------
    @work(thread=True, group="commands", exit_on_error=False)
    def _command(self, label: str, call: Callable[[], str], then_exit: bool = False) -> None:
        try:
            result = call()
        except (PhasegateError, ValueError, OSError) as exc:  # the core's messages say what to do
            self.post_message(CommandDone(f"{label} failed: {exc}", failed=True))
            return
        self.post_message(CommandDone(f"{label}: {result}", then_exit=then_exit))

    @work(thread=True, group="files", exit_on_error=False)
    def _load_text(self, title: str, find: Callable[[], list[Path]]) -> None:
        paths = [p for p in find() if p is not None]
        if not paths:
            self.post_message(CommandDone(f"{title}: nothing to show (no such files in the run folder)"))
            return
        self.post_message(TextLoaded(title, self.reader.document(paths)))

    @on(CommandDone)
    def _command_done(self, message: CommandDone) -> None:
        self.notify(message.result, severity="error" if message.failed else "information", timeout=8)
        self.wake_reader()
        if message.then_exit:
            self.exit("stopped")

    @on(TextLoaded)
    def _show_text(self, message: TextLoaded) -> None:
        self.push_screen(TextViewScreen(message.title, message.text))

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        """Every worker's unexpected error ends here, on screen, instead of ending the app."""
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.notify(f"{event.worker.group}: {type(error).__name__}: {error}", severity="error", timeout=10)
            self.wake_reader()


def create_app(run_dir: Path, *, mode: str = "watch", clock: Callable[[], float] = time.time,
               reader: RunReader | None = None, operator: Operator | None = None,
               child: subprocess.Popen | None = None) -> PhasegateApp:
    """Build the app for the CLI and for tests: the clock, the reader and the operator are injectable."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    reader = reader or RunReader.open(run_dir, clock=clock)
    operator = operator or Operator(reader.run_dir)
    if child is not None:
        operator.children.append(child)
    return PhasegateApp(reader=reader, operator=operator, mode=mode)
