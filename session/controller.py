"""The controller loop: runs phases in order as child processes, routes on gates, stops or pauses safely."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from phasegate.floor.errors import ExitCode, InvalidInput, ResumeRefused, RunDirError, RunWaits
from phasegate.floor.events import EARLY_STOP_EXIT, ChildEvent
from phasegate.floor.faults import child_faults, crash_point
from phasegate.floor.processes import StopSignal, owning_processes, stop_signal
from phasegate.floor.reporter_path import reporter_env
from phasegate.floor.states import PhaseState, Route, SessionState
from phasegate.journal.events import EventKind
from phasegate.journal.store import STORAGE_ERRORS, is_disk_full
from phasegate.session.artifacts import clear_folder, fresh_folder, verify_completed
from phasegate.session.budget import BudgetMeter
from phasegate.session.gating import (
    StageOutcome,
    declared_gates,
    evaluate_stage,
    gate_context,
    recheck_gates,
)
from phasegate.session.gpu import GpuReader, default_reader
from phasegate.session.notify import Notices
from phasegate.session.outcomes import (
    PhaseOutcome,
    early_stop,
    interrupted,
    invalid_input,
    out_of_memory,
)
from phasegate.session.phase_events import PhaseEvents
from phasegate.session.phase_inputs import PhaseInputs, hourly_rate, session_redactor
from phasegate.session.pod import PodActions
from phasegate.session.reporting import Reporter
from phasegate.session.resuming import may_continue, resumable_attempt
from phasegate.session.runner import (
    ChildExit,
    Interruption,
    Trigger,
    attempt_tag,
    end_leftovers,
    run_scope,
    spawn,
)
from phasegate.session.runs import OpenRun
from phasegate.session.spec import PhaseSpec
from phasegate.session.watchdog import Watchdog

Listener = Callable[[dict[str, Any]], None]


class Controller:
    """Drives one run to completion, a stop or a pause; the only writer of its journal."""

    def __init__(self, run: OpenRun, *, listeners: tuple[Listener, ...] = (), clock=time.time,
                 base_env: dict[str, str] | None = None, replay: bool = False, gpu_reader: GpuReader | None = None) -> None:
        self.run = run
        self.journal = run.journal
        self.listeners = listeners
        self.clock = clock
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.reporter = Reporter(run, clock)
        self.inputs = PhaseInputs(run, self.reporter)
        self.redactor = session_redactor(run.loaded.spec, self.base_env)  # secrets never reach a log or a report
        self.journal.redactor = self.redactor
        reader = gpu_reader or default_reader(self.base_env)
        self.meter = BudgetMeter(self.journal, hourly_rate(run.loaded.spec.session, reader), clock)
        self.notices = Notices(run, self.base_env, clock)  # [[notify]] and [[hooks]], sent off this thread
        self.pod = PodActions(run, self.meter, self.reporter, self.base_env, clock, before_release=self.notices.flush)
        self.watchdog = Watchdog(self.journal, run.loaded.spec.session, reader, self.meter)
        # Listeners see new events only, unless asked to replay the run's history from its start.
        self._published = 0 if replay else self.journal.last_event_seq()
        self._oom_line: str | None = None
        self._events: PhaseEvents | None = None  # the running attempt's events
        # A stop posted from here on, even one handled before this controller takes the lock, is this run's stop.
        self._commands_seen = self.journal.last_command_id()

    # -- public ------------------------------------------------------------------------------
    def execute(self, *, retry: bool = False, force: bool = False) -> ExitCode:
        """Run (or resume) the session; returns the exit code for the process. A stop the phase caused needs
        `retry` (or a waiver or an amendment since), one an operator made needs `force` (session/resuming.py)."""
        self._retry = retry
        self._force = force
        from phasegate.floor.rundir import ControllerLock

        lock = ControllerLock(self.run.run_dir)
        if not lock.acquire():
            raise RunDirError(f"{self.run.run_dir.root}: another phasegate controller is running this run; "
                              f"watch it with `phasegate status {self.run.run_dir.root}`")
        try:
            # Orphans of the phases become ours, SIGTERM and SIGINT are a stop (see floor/processes.py).
            with owning_processes(run_scope(self.run.run_dir.root)):
                if self._stopped_while_starting():
                    self.journal.append_event(EventKind.LOG, None, {"message": "a stop arrived while this resume was "
                                                                    "starting: the run stays stopped"})
                    return ExitCode.STOPPED
                try:
                    code = self._execute()
                except StopSignal as stop:
                    return self._stop_on_signal(stop.signum)
                if code is ExitCode.PAUSED and (signum := stop_signal()) is not None:
                    return self._stop_on_signal(signum)  # it came while the pause was written: still a stop
                return code
        except (ResumeRefused, RunWaits):  # the run stays as it was: nothing ran
            raise
        except InvalidInput as exc:  # the user's to fix (a phase cannot start, say): stopped, not an internal error
            self._stop_on_invalid_input(exc)
            raise
        except STORAGE_ERRORS as exc:
            if not is_disk_full(exc):
                self._fail(exc)
                raise
            raise self.reporter.disk_full(exc) from None
        except Exception as exc:
            self._fail(exc)
            raise
        finally:
            self.notices.close()  # bounded (session/notify.py); what it journals is published next
            self._publish()
            lock.release()

    # -- the loop ----------------------------------------------------------------------------
    def _execute(self) -> ExitCode:
        self._reconcile()
        verify_completed(self.run)  # a later phase must not build on a deleted or changed artifact
        if self.journal.session_state() == SessionState.COMPLETED:
            self._publish()
            return ExitCode.COMPLETED
        may_continue(self.reporter.report_snapshot(), retry=self._retry, force=self._force)
        self.pod.bill_pause()  # none of a pause after its pod was stopped
        self.journal.set_session_state(SessionState.RUNNING)
        self._publish()
        while (phase := self._next_phase()) is not None:
            outcome = self._run_phase(phase)
            if outcome.route is Route.PAUSE:  # with a `[pod]` table an operator may still decide in time
                outcome = self._pause(phase, outcome)
            if outcome.route is not Route.ADVANCE:
                return self._stop(phase, outcome) if outcome.route is Route.STOP else ExitCode.PAUSED
        self.meter.tick(None, force=True)
        self.journal.set_session_state(SessionState.COMPLETED)
        self.reporter.checkpoint(None)
        self._publish()
        self.pod.release(SessionState.COMPLETED, self._publish)  # when `[pod] stop_on` asks
        return ExitCode.COMPLETED

    def _next_phase(self) -> PhaseSpec | None:
        """The first phase of the plan as it stands now (amendments apply at phase boundaries) not yet passed."""
        return next((p for p in self.run.loaded.spec.phases if self.journal.phase_state(p.id) != PhaseState.PASSED),
                    None)

    def _run_phase(self, phase: PhaseSpec) -> PhaseOutcome:
        failures = 0
        resumed = resumable_attempt(self.journal, phase.id, self.inputs.definition_key(phase), retry=self._retry)
        self._retry = False  # a retry is the first phase's left to run (the one that failed), never a later one's
        while True:
            if (stop := self._stop_requested()) is not None:
                return PhaseOutcome(Route.STOP, f"operator stop: {stop}", "operator_stop")
            attempt = resumed
            if attempt is None:
                pre = self._gates(phase, "pre", self.journal.phase(phase.id).attempts + 1)
                if pre.failed:
                    gate_id, summary = pre.failed[0]
                    trigger = "policy_recheck_failed" if pre.recheck_failed else "gate_failed"
                    return PhaseOutcome(Route.STOP, f"pre-gate {gate_id} failed: {summary}", trigger,
                                        evidence={"gate": gate_id, "summary": summary})
                if pre.pending:
                    return PhaseOutcome(Route.PAUSE, f"waiting for an operator on {pre.pending[0][0]}")
                attempt, exit = self._attempt(phase)
                if exit.interrupted is not None:
                    return interrupted(self.journal, phase, attempt, exit, self.watchdog.evidence)
                if exit.exit_code == EARLY_STOP_EXIT:
                    return early_stop(self.journal, phase, attempt, self._events.stop_request)
                if not exit.succeeded and self._oom_line:
                    return out_of_memory(self.journal, phase, attempt, exit, self._oom_line)
                if (refused := invalid_input(self.journal, phase, attempt, exit, self.run.run_dir)) is not None:
                    return refused
                if not exit.succeeded:
                    failures += 1
                    reason = f"exit code {exit.exit_code}" if exit.signal is None else f"killed by signal {exit.signal}"
                    self.journal.finish_attempt(phase.id, attempt, passed=False, exit_code=exit.exit_code, reason=reason)
                    self._publish()
                    if failures <= phase.retries:
                        continue
                    return PhaseOutcome(Route.STOP, f"phase {phase.id} failed ({reason}) after {failures} attempt(s)",
                                        "phase_failed", attempt, {"exit_code": exit.exit_code, "signal": exit.signal})
            post = self._gates(phase, "post", attempt)
            if post.failed and post.route is Route.STOP:
                gate_id, summary = post.failed[0]
                self.journal.finish_attempt(phase.id, attempt, passed=False, reason=f"gate {gate_id}: stop")
                return PhaseOutcome(Route.STOP, f"{gate_id}: {summary}", "reviewer_stop", attempt,
                                    {"gate": gate_id, "summary": summary})
            if post.failed:
                gate_id, summary = post.failed[0]
                if post.changes:  # a reviewer's ITERATE: the next attempt runs with its accepted changes
                    self.journal.set_param_overrides(phase.id, post.changes, gate_id)
                if resumed is None:
                    failures += 1
                if resumed is not None or failures <= phase.retries:
                    self.journal.finish_attempt(phase.id, attempt, passed=False, reason=f"gate {gate_id} failed")
                    resumed = None
                    continue
                return PhaseOutcome(Route.STOP, f"gate {gate_id} failed: {summary}", "gate_failed", attempt,
                                    {"gate": gate_id, "summary": summary})
            if post.errors:  # the reviewer broke: pause for an operator, with a report of what broke
                gate_id, error = post.errors[0]
                return PhaseOutcome(Route.PAUSE, f"waiting for an operator on {gate_id}: the reviewer failed ({error})",
                                    "reviewer_error", attempt, {"gate": gate_id, "error": error})
            if post.pending:
                return PhaseOutcome(Route.PAUSE, f"waiting for an operator on {post.pending[0][0]}", attempt=attempt)
            self.journal.finish_attempt(phase.id, attempt, passed=True)
            self.reporter.checkpoint(phase.id)
            self._publish()
            return PhaseOutcome(Route.ADVANCE)

    def _attempt(self, phase: PhaseSpec) -> tuple[int, ChildExit]:
        """Run one attempt of a phase's child process and make its outputs durable."""
        artifacts = self.run.run_dir.artifacts(phase.id)
        values = self.inputs.placeholders(phase, artifacts)
        argv = self.inputs.argv(phase, values)
        params = self.inputs.params(phase)
        attempt = self.journal.begin_attempt(phase.id, self.inputs.definition_key(phase))
        self._publish()
        crash_point("after_intent")
        fresh_folder(artifacts)  # every attempt starts from a clean state (a link left in its place is removed)
        state = self.inputs.state_folder(phase, argv, params, self.clock)  # kept across attempts, unless the inputs changed
        self._events = PhaseEvents(self.journal, self.watchdog, phase.id, artifacts)
        inherited = child_faults(self.base_env)  # the controller's own faults are not the child's
        env = {**inherited, **phase.env, "PHASEGATE_RUN_DIR": str(self.run.run_dir.root),
               "PHASEGATE_PHASE": phase.id, "PHASEGATE_ATTEMPT": str(attempt), "PHASEGATE_ARTIFACTS": str(artifacts),
               "PHASEGATE_STATE_DIR": str(state), "PHASEGATE_PARAMS": json.dumps(params, sort_keys=True, default=str)}
        env |= reporter_env(env.get("PYTHONPATH"))  # `import phasegate_reporter` works from any python
        try:
            child = spawn(argv, cwd=self.run.session_dir, env=env, log_path=self.run.run_dir.log(phase.id),
                          redact=self.redactor.redact, tag=attempt_tag(self.run.run_dir.root, phase.id, attempt))
        except OSError as exc:  # what no check foresaw (a script without `#!`, say): the user's to fix
            raise InvalidInput(f"phase {phase.id!r} cannot start: {argv[0]}: {exc.strerror or exc}; fix it, then "
                               f"continue with `phasegate resume {self.run.run_dir.root}`") from None
        self.journal.attempt_spawned(phase.id, attempt, child.pid, child.start_time)
        self.reporter.checkpoint(phase.id, numbered=False)  # after a crash from here on, it says what was running
        crash_point("after_spawn")
        self.watchdog.start(phase, child.pid)
        exit = child.wait(self._on_event,
                          lambda: self._on_tick(child.output.last_output), phase.timeout_s)
        crash_point("after_child_exit")
        peak = self.watchdog.finish()
        if peak is not None:
            self.journal.record_metric(phase.id, "gpu_peak_mem_mb", round(peak, 1))
        self._oom_line = child.output.oom_line
        if exit.succeeded:
            self.journal.mark_exited(phase.id, attempt, 0, self.reporter.durable_artifacts(artifacts, self._events.artifact_paths))
        self._publish()
        return attempt, exit

    # -- child events and ticks ----------------------------------------------------------------
    def _on_event(self, event: ChildEvent) -> None:
        self._events.handle(event)
        self._publish()

    def _on_tick(self, last_output: float) -> Interruption | None:
        self.journal.flush_updates()  # a phase gone quiet still shows its latest progress and metrics
        self._publish()
        if (signum := stop_signal()) is not None:
            return Interruption(Trigger.SIGNAL, f"stopped by {signal.Signals(signum).name}")
        stop = self._stop_requested()
        if stop is not None:
            return Interruption(Trigger.OPERATOR_STOP, f"operator stop: {stop}")
        return self.watchdog.check(last_output)

    # -- commands, stop, pause -------------------------------------------------------------------
    def _stop_requested(self) -> str | None:
        """Handle queued commands; returns the reason of a stop request, if any."""
        from phasegate.session.commands import apply_command

        if (signum := stop_signal()) is not None:
            raise StopSignal(signum)
        for command in self.journal.pending_commands():
            apply_command(self.run, command, self.clock)
            if command.kind == "amend":
                self._adopt_plan()
            self._publish()
            if command.kind == "stop":
                return command.args.get("reason") or "no reason given"
        return None

    def _adopt_plan(self) -> None:
        """An amended plan: its session limits (budget, rate, watchdog) count at once, its phases from the next
        phase boundary on (the running phase keeps the definition it started with)."""
        spec = self.run.loaded.spec
        self.redactor = session_redactor(spec, self.base_env)
        self.journal.redactor = self.redactor
        self.watchdog.info = spec.session
        self.meter.rate = hourly_rate(spec.session, self.watchdog.reader)

    def _stop(self, phase: PhaseSpec, outcome: PhaseOutcome) -> ExitCode:
        self.meter.tick(phase.id, force=True)
        self.journal.set_session_state(SessionState.STOPPED, outcome.reason, outcome.trigger or "stopped")
        self.reporter.incident(outcome.trigger or "stopped", phase.id, outcome.attempt,
                               {"reason": outcome.reason, **outcome.evidence})
        self.reporter.checkpoint(phase.id)
        self._publish()
        self.pod.release(SessionState.STOPPED, self._publish)  # when `[pod] stop_on` asks (not on a signal)
        outcome.raise_if_invalid_input()  # the user's to fix: exit 2 with the phase's own message
        return ExitCode.STOPPED

    def _stop_on_signal(self, signum: int) -> ExitCode:
        """A stop signal outside a phase's child (between phases, in a reviewer, during a pause): stop where the
        run stands."""
        phase_id = self.journal.running_phase()
        name = signal.Signals(signum).name
        self.meter.tick(phase_id, force=True)
        self.journal.set_session_state(SessionState.STOPPED, f"stopped by {name}", str(Trigger.SIGNAL))
        self.reporter.incident(str(Trigger.SIGNAL), phase_id, None, {"reason": f"stopped by {name}", "signal": name})
        self.reporter.checkpoint(phase_id)
        self._publish()
        return ExitCode.STOPPED

    def _stopped_while_starting(self) -> bool:
        """True when a stop was handled without us after this controller was made (it raced our start)."""
        return (self.journal.session_state() == SessionState.STOPPED
                and bool(self.journal.handled_stops_after(self._commands_seen)))

    def _pause(self, phase: PhaseSpec, outcome: PhaseOutcome) -> PhaseOutcome:
        self.meter.tick(None, force=True)
        self.journal.set_session_state(SessionState.PAUSED, outcome.reason)
        if outcome.trigger:  # nobody may be watching: say in a report why the run waits
            self.reporter.incident(outcome.trigger, phase.id, outcome.attempt, {"reason": outcome.reason,
                                                                                **outcome.evidence})
        self.reporter.checkpoint(None)
        self._publish()
        return self.pod.wait_for_operator(outcome, self._stop_requested, self._publish)  # then stops the pod

    def _stop_on_invalid_input(self, exc: InvalidInput) -> None:
        """Leave a run stopped by bad input resumable once it is fixed; the error itself is the message."""
        try:
            if self.journal.session_state() == SessionState.RUNNING:
                self.journal.set_session_state(SessionState.STOPPED, str(exc), "invalid_input")
                self.reporter.checkpoint(self.journal.running_phase())
        except Exception:  # noqa: BLE001 - a damaged journal: the input error is still the message that matters
            pass

    def _fail(self, exc: Exception) -> None:
        """An internal error: record it so the run is never left looking alive."""
        try:
            if self.journal.session_state() == SessionState.RUNNING:
                self.journal.set_session_state(SessionState.FAILED, f"internal error: {type(exc).__name__}: {exc}")
                self.reporter.checkpoint(None)
        except Exception:  # noqa: BLE001 - the original error matters more than this one
            pass

    # -- resume ------------------------------------------------------------------------------
    def _reconcile(self) -> None:
        """End what a crashed controller left running and discard its unfinished attempts."""
        open_attempts = self.journal.open_attempts()
        # Whether or not a group's leader is alive: a wrapper's workers must not run beside the next attempt.
        end_leftovers(self.run.run_dir.root, open_attempts)
        for open_attempt in open_attempts:
            clear_folder(self.run.run_dir.artifacts(open_attempt.phase))
            self.journal.discard_attempt(open_attempt.phase, open_attempt.attempt, "interrupted by a controller crash")
        if open_attempts:  # the checkpoint stops naming a phase as running
            self.reporter.checkpoint(open_attempts[0].phase, numbered=False)

    # -- helpers -----------------------------------------------------------------------------
    def _gates(self, phase: PhaseSpec, stage: str, attempt: int) -> StageOutcome:
        root = self.run.run_dir.root
        gates = declared_gates(phase, stage)
        if stage == "pre":  # policies that must hold all session long are checked again before each phase
            gates = recheck_gates(self.run.loaded.spec.phases, phase) + gates
        if not gates:
            return StageOutcome()
        services = self.inputs.gate_services(phase)  # reads the journal: only when a gate will use it
        return evaluate_stage(
            self.journal, gates, attempt,
            lambda gate, n: gate_context(gate, n, session_dir=self.run.session_dir, run_dir=root,
                                         history=self.inputs.history(phase, n) if gate.gate.needs_history else {},
                                         **services),
            on_decided=lambda: self._gate_decided(phase),
        )

    def _gate_decided(self, phase: PhaseSpec) -> None:
        self.reporter.checkpoint(phase.id, numbered=False)  # a gate's result is a state change
        self._publish()

    def _publish(self) -> None:
        """Hand journal events nobody has seen yet to the listeners (headless printer, UI)."""
        self.meter.tick(self.watchdog.phase)
        self.notices.pump()  # messages and hooks of the new events; journals what was sent (session/notify.py)
        if not self.listeners:
            return
        for record in self.journal.events_since(self._published):
            self._published = record.seq
            for listener in self.listeners:
                listener(record.published())  # each its own copy
