"""Pod actions: stop the pod phasegate runs on when nobody is needed there, so that it stops billing.

The `[pod]` table (session/pod_spec.py) names how. On a pause the controller stays `release_after_min` minutes,
applying commands, so an approval in that time goes on without a resume; then it stops the pod. The journal
says so before the stop runs (the pod may take this process with it), and a resume bills none of the paused time
after it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from phasegate.floor.states import NextAction, Route, SessionState
from phasegate.journal.events import EventKind
from phasegate.journal.records import EventRecord
from phasegate.session.budget import BudgetMeter
from phasegate.session.outcomes import PhaseOutcome
from phasegate.session.pod_spec import PodSpec, PodUnavailable, stop_argv
from phasegate.session.reporting import Reporter
from phasegate.session.runs import OpenRun

STOP_TIMEOUT_S = 120.0  # a provider's API that answers in none of this is down: the pod is left as it is
POLL_S = 0.2  # how often a waiting pause reads the commands (`phasegate approve` waits 10 s for an answer)
# Pod events of a pause are among its last session events; a resume looks this far back for them.
_RECENT_SESSION_EVENTS = 500
_POD_EVENTS = (EventKind.POD_STOPPED, EventKind.POD_STOP_FAILED)


class PodActions:
    """The controller's pod actions: the wait on a pause, the stop, and what a resume bills of the pause."""

    def __init__(self, run: OpenRun, meter: BudgetMeter, reporter: Reporter, env: Mapping[str, str], clock,
                 *, before_release: Callable[[], None] = lambda: None, sleep=time.sleep) -> None:
        self.run = run
        self.journal = run.journal
        self.meter = meter
        self.reporter = reporter
        self.env = dict(env)
        self.clock = clock
        # What must happen before the pod may go away (the notifications flushed): once it stops, nothing is sent.
        self.before_release = before_release
        self.sleep = sleep

    @property
    def pod(self) -> PodSpec | None:
        """The `[pod]` table of the plan as it stands (an amendment may add, change or remove it)."""
        return self.run.loaded.spec.pod

    def wait_for_operator(self, paused: PhaseOutcome, handle_commands: Callable[[], str | None],
                          publish: Callable[[], None]) -> PhaseOutcome:
        """On a pause with a `[pod]` table, apply commands for `release_after_min`, then stop the pod.

        Returns what an operator chose in that time (ADVANCE: the run is running again; STOP: an operator stop),
        else `paused`; at once without a `[pod]` table. `handle_commands` returns a stop's reason."""
        if self.pod is None:
            return paused
        minutes = self.pod.release_after_min
        deadline = self.clock() + minutes * 60
        self.journal.append_event(EventKind.LOG, None, {"message": (
            f"waiting {minutes:g} min for an operator: an approval or a waiver in that time goes on without a "
            f"resume; then the pod is stopped ([pod] provider = \"{self.pod.provider}\")")})
        publish()
        queued = self.journal.pending_commands()  # queued before the pause: they count as ones in it
        seen = queued[0].id - 1 if queued else self.journal.last_command_id()
        while True:
            posted = self.journal.last_command_id()  # every command up to here is applied by the next line
            if (reason := handle_commands()) is not None:
                return PhaseOutcome(Route.STOP, f"operator stop: {reason}", "operator_stop")
            if posted != seen and self._decided():
                self.journal.set_session_state(SessionState.RUNNING)
                return PhaseOutcome(Route.ADVANCE)
            seen = posted
            if (left := deadline - self.clock()) <= 0:
                break
            self.sleep(min(POLL_S, left))
        self.release(SessionState.PAUSED, publish)
        return paused

    def _decided(self) -> bool:
        """Whether the gates the run waits on are decided: what `resume` asks before it goes on."""
        return self.reporter.report_snapshot().next.action is not NextAction.APPROVE

    def release(self, state: SessionState, publish: Callable[[], None] = lambda: None) -> None:
        """Stop the pod when `[pod]` asks for a run in `state` (always on a pause); journal it, or its failure, and
        `publish` it to the listeners before the stop runs."""
        pod = self.pod
        if pod is None or (state != SessionState.PAUSED and str(state) not in pod.stop_on):
            return
        self.before_release()
        base = {"provider": pod.provider, "state": str(state)}
        if state == SessionState.PAUSED:  # the wait billed up to here; from here on, none of the pause is billed
            self.meter.settle("waiting for an operator, until the pod was stopped")
        try:
            argv = stop_argv(pod, self.env, self.run.session_dir)
        except PodUnavailable as exc:
            return self._failed(base, str(exc), state)
        # Journaled before the stop runs: the pod may end this process before the command returns.
        self.journal.append_event(EventKind.POD_STOPPED, None, {**base, "argv": argv})
        publish()
        if (error := self._run_stop(argv)) is not None:
            self._failed(base, error, state)

    def _run_stop(self, argv: list[str]) -> str | None:
        """Run the stop command; why it failed, or None."""
        env = {**self.env, "PHASEGATE_RUN_DIR": str(self.run.run_dir.root)}
        try:
            done = subprocess.run(argv, cwd=self.run.session_dir, env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, errors="replace", timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return f"{Path(argv[0]).name} did not answer within {STOP_TIMEOUT_S:.0f} s"
        except OSError as exc:
            return f"{argv[0]}: {exc.strerror or exc}"
        if done.returncode == 0:
            return None
        said = (done.stderr.strip() or done.stdout.strip())[-500:]
        return f"{Path(argv[0]).name} exited {done.returncode}" + (f": {said}" if said else "")

    def _failed(self, base: dict[str, str], error: str, state: SessionState) -> None:
        """The pod still bills: say so, and bill a pause from here on again (the time before it is billed)."""
        if state == SessionState.PAUSED:
            self.meter.settle("waiting for an operator, while the pod stop was tried")
        self.journal.append_event(EventKind.POD_STOP_FAILED, None, {**base, "error": error})

    def bill_pause(self) -> None:
        """On resume, bill the time the run waited with no controller: none after its pod was stopped, and from
        a failed stop on when that failed (the time before it was billed by the controller that waited)."""
        last = self._last_pod_event()
        self.meter.bill_pause(released=last is not None and last.type == EventKind.POD_STOPPED,
                              billed_until=last.ts if last is not None else None)

    def _last_pod_event(self) -> EventRecord | None:
        """The newest pod stop (or failed stop) of the pause the run is in, if any."""
        run = self.journal.run()
        if run is None or run.state != SessionState.PAUSED:
            return None
        events = [e for e in self.journal.recent_events(None, _RECENT_SESSION_EVENTS)
                  if e.type in _POD_EVENTS and e.ts >= run.updated_at]
        return events[-1] if events else None
