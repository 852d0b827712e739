"""Notifications of run events through apprise (`[[notify]]`) and the `[[hooks]]` run on them.

The controller feeds every journaled event to `Notices.pump` (from `_publish`) and calls `Notices.close` at its exit.
Sending happens on worker threads, not in place: a message to a slow or hung service may take its whole
`timeout_s`, and a controller waiting on it would stop watching its phase (ticks, the watchdog, stop commands).
The journal's connection belongs to the controller's thread alone, so a worker gets ready-made text and argv and
hands back only an outcome; the controller journals it (`notified`, `notify_failed`, `hook_failed`) at its next
pump, and at its exit waits for the workers a bounded time. Each message is journaled with the seq of the event it
is for: a controller's first pump sends what an earlier one journaled but never told (it crashed, say), so a
message goes out once per event (twice only when a crash falls between a send and its journal row).
Hooks run for the events of the process that journaled them only: a hook is a side effect, never replayed.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import string
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from tenacity import retry, retry_if_result, stop_after_attempt, stop_before_delay, wait_exponential

from phasegate.floor.faults import crash_point
from phasegate.floor.redact import MIN_SECRET_LEN
from phasegate.journal.events import EventKind
from phasegate.journal.records import EventRecord
from phasegate.journal.snapshot import RunSnapshot, take_snapshot
from phasegate.session.hooks import END_GRACE_S, HOOK_LOG_NAME, RunEvent, hook_call
from phasegate.session.notify_spec import NotifySpec
from phasegate.session.phase_inputs import session_redactor
from phasegate.session.runner import Trigger
from phasegate.session.runs import OpenRun
from phasegate.session.spec import SessionSpec

ATTEMPTS = 3  # per URL, within the table's timeout_s
RETRY_SLACK_S = 2.0  # a send may overrun its timeout_s by a try's last socket wait
EXIT_WAIT_CAP_S = 120.0  # the most a controller's exit waits for what is still being sent
STATE_OCCASIONS = {"paused": ("paused",), "stopped": ("stopped",), "completed": ("completed",)}
NOT_INSTALLED = "apprise is not installed: `pip install 'phasegate[notify]'` (or `pip install apprise`)"


def occasions(record: EventRecord) -> tuple[str, ...]:
    """What a journal event is, in the words of `on` (spec.NOTIFY_EVENTS); () for the events nobody is told of."""
    if record.type == EventKind.SESSION_STATE:
        found = STATE_OCCASIONS.get(str(record.data.get("state")), ())
        return ("stall", *found) if found == ("stopped",) and record.data.get("trigger") == Trigger.STALL else found
    if record.type == EventKind.BUDGET_WARNING:
        return ("budget_warning",)
    return ("incident",) if record.type == EventKind.INCIDENT_WRITTEN else ()


def told_as(record: EventRecord, on: Sequence[str], stop: EventRecord | None) -> str | None:
    """The name a table with `on` is told this event as, or None; an incident report written with a pause or a
    stop (`stop`, the session state it came with) is named in that message when the table is told of that one."""
    if stop is not None and set(occasions(stop)) & set(on):
        return None
    return next((name for name in occasions(record) if name in on), None)


# -- sending (on a worker thread: no journal here) ------------------------------------------------------
class MissingVariable(ValueError):
    """A `${NAME}` of a URL names an environment variable that is not set."""


def fill_url(template: str, env: Mapping[str, str]) -> str:
    """The URL with its `${NAME}` variables filled from `env`."""
    try:
        return string.Template(template).substitute(env)
    except KeyError as exc:
        raise MissingVariable(f"environment variable {exc.args[0]} is not set") from None


def url_label(index: int, template: str) -> str:
    """How a URL is named in errors: as written when it takes its secrets from variables, else by its scheme."""
    shown = template if "$" in template else template.partition("://")[0] + "://…"
    return f"urls[{index}] ({shown})"


def send(urls: Sequence[str], title: str, body: str, *, env: Mapping[str, str], timeout_s: float) -> str | None:
    """Send the message to every URL, each retried, all within `timeout_s`; None when all took it, else why."""
    deadline = time.monotonic() + timeout_s
    errors = [f"{url_label(i, url)}: {error}" for i, url in enumerate(urls)
              if (error := send_one(url, title, body, env=env, deadline=deadline))]
    return "; ".join(errors) or None


def send_one(template: str, title: str, body: str, *, env: Mapping[str, str], deadline: float) -> str | None:
    """Send the message to one URL, retried with tenacity until `deadline` (monotonic); None, or why it failed."""
    try:
        import apprise
    except ImportError:
        return NOT_INSTALLED
    try:
        plugin = apprise.Apprise.instantiate(fill_url(template, env))
    except MissingVariable as exc:
        return str(exc)
    if plugin is None:
        return "apprise does not know this URL (check its scheme and form: https://github.com/caronc/apprise/wiki)"
    share = max(0.1, (deadline - time.monotonic()) / ATTEMPTS)

    @retry(stop=stop_after_attempt(ATTEMPTS) | stop_before_delay(max(0.0, deadline - time.monotonic())),
           wait=wait_exponential(multiplier=0.2, max=1.0), retry=retry_if_result(bool),
           retry_error_callback=lambda state: state.outcome.result())
    def attempt() -> str | None:
        # Each try gets its share of what is left, so that the retries fit in the table's timeout_s.
        plugin.socket_connect_timeout = plugin.socket_read_timeout = max(0.1, min(deadline - time.monotonic(), share))
        with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
            sent = plugin.notify(body=body, title=title)
        lines = captured.getvalue().strip().splitlines()
        return None if sent else (lines[-1] if lines else "the service did not take the message")

    try:
        return attempt()
    except Exception as exc:  # noqa: BLE001 - a plugin's own bug must not reach the controller
        return f"{type(exc).__name__}: {exc}"


class _Worker:
    """One daemon thread doing jobs in order; each outcome (an error text or None) goes to `results`."""

    def __init__(self, name: str, results: queue.SimpleQueue) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._results = results
        # Long-lived on purpose: a hook's parent-death signal fires when the thread that started it ends.
        self._thread = threading.Thread(target=self._loop, name=f"phasegate-{name}", daemon=True)
        self._thread.start()

    def submit(self, key: int, work: Callable[[], str | None]) -> None:
        self._jobs.put((key, work))

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            key, work = job
            try:
                outcome = work()
            except Exception as exc:  # noqa: BLE001 - reported as the job's failure, never raised
                outcome = f"{type(exc).__name__}: {exc}"
            self._results.put((key, outcome))

    def close(self) -> None:
        """End the thread after the jobs queued (a daemon: one still running dies with this process)."""
        self._jobs.put(None)


# -- the controller's side --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Job:
    hook: bool  # a `[[hooks]]` command, else a `[[notify]]` message
    for_seq: int
    event: str
    index: int
    bound_s: float  # the longest it may take
    late: bool = False


class Notices:
    """Tells the `[[notify]]` tables of a run's events and runs its `[[hooks]]`; used by the journal's writer."""

    def __init__(self, run: OpenRun, env: Mapping[str, str], clock: Callable[[], float] = time.time) -> None:
        self.run = run
        self.env = dict(env)
        self.clock = clock
        self._started_after = run.journal.last_event_seq()  # hooks run for this process's events only
        self._seen: int | None = None  # None until the first pump, which catches up
        self._last_state: EventRecord | None = None
        self._told: dict[int, int] = {}  # per table: the seq of the last event it was told of
        self._pending: dict[int, _Job] = {}
        self._keys = itertools.count()
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._workers: dict[str, _Worker] = {}
        self._masks: tuple[SessionSpec, Callable[[str], str]] | None = None

    # -- pump ---------------------------------------------------------------------------------------------
    def pump(self) -> None:
        """Journal what the workers finished, then hand them the new events' messages and hooks."""
        spec = self.run.loaded.spec  # as amended: an amendment's tables count from its next event on
        if self._pending:
            self._journal_outcomes()
        if not (spec.notify or spec.hooks):
            return
        if self._seen is None:
            records = self.run.journal.events_since(0)
            self._learn_told(records)
        else:
            records = self.run.journal.events_since(self._seen)
        for record in records:
            self._seen = record.seq
            self._consider(spec, record)

    def _learn_told(self, records: list[EventRecord]) -> None:
        """What earlier controllers told (or failed to tell) each table, from the journal."""
        for record in records:
            if record.type in (EventKind.NOTIFIED, EventKind.NOTIFY_FAILED):
                target, seq = int(record.data.get("target", -1)), int(record.data.get("for_seq", 0))
                self._told[target] = max(self._told.get(target, 0), seq)

    def _consider(self, spec: SessionSpec, record: EventRecord) -> None:
        stop = self._last_state if record.type == EventKind.INCIDENT_WRITTEN else None
        if record.type == EventKind.SESSION_STATE:
            self._last_state = record
        if not occasions(record):
            return
        late = record.seq <= self._started_after
        events: dict[str, RunEvent] = {}  # built once per name: it reads a whole snapshot

        def event(name: str) -> RunEvent:
            if name not in events:
                events[name] = self._run_event(record, name, late)
            return events[name]

        for index, target in enumerate(spec.notify):
            name = told_as(record, target.on, stop)
            if name is not None and record.seq > self._told.get(index, 0):
                self._told[index] = record.seq
                text = event(name)
                crash_point("before_notify")  # journaled, not yet sent: the next controller must send it
                self._notify(index, target, text, late)
        for index, hook in enumerate(spec.hooks):
            name = told_as(record, hook.on, stop)
            if name is not None and not late:
                call = hook_call(index, hook, event(name), base_env=self.env,
                                 log_path=self.run.run_dir.log(HOOK_LOG_NAME), redact=self._mask())
                self._submit("hooks", _Job(True, record.seq, name, index,
                                           hook.timeout_s + 2 * END_GRACE_S), call.run)

    def _notify(self, index: int, target: NotifySpec, event: RunEvent, late: bool) -> None:
        title, body = event.message.split("\n", 1)
        job = _Job(False, event.seq, event.event, index, target.timeout_s + RETRY_SLACK_S, late)
        self._submit("notify", job, lambda: send(target.urls, title, body, env=self.env, timeout_s=target.timeout_s))

    def _submit(self, worker: str, job: _Job, work: Callable[[], str | None]) -> None:
        key = next(self._keys)
        self._pending[key] = job
        if worker not in self._workers:
            self._workers[worker] = _Worker(worker, self._results)
        self._workers[worker].submit(key, work)

    def _journal_outcomes(self, until: float | None = None) -> None:
        """Journal the outcomes the workers handed back (this thread owns the journal); with `until`, wait for
        the pending ones until then (monotonic)."""
        mask = self._mask()
        while self._pending:
            wait = 0.0 if until is None else until - time.monotonic()
            try:
                key, error = self._results.get(timeout=wait) if wait > 0 else self._results.get_nowait()
            except queue.Empty:
                return
            job = self._pending.pop(key)
            data = {"for_seq": job.for_seq, "event": job.event}
            if not job.hook and error is None:
                self.run.journal.append_event(EventKind.NOTIFIED, None, {**data, "target": job.index, "late": job.late})
            elif not job.hook:
                self.run.journal.append_event(EventKind.NOTIFY_FAILED, None,
                                              {**data, "target": job.index, "error": mask(error)})
            elif error is not None:
                self.run.journal.append_event(EventKind.HOOK_FAILED, None, {**data, "hook": job.index, "error": error})

    # -- exit ---------------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Hand over the new events and wait for everything pending, at most as long as it may take (capped);
        journal the outcomes. Before the pod goes away, and at exit."""
        self.pump()
        self._journal_outcomes(until=time.monotonic() + min(
            EXIT_WAIT_CAP_S, sum(job.bound_s for job in self._pending.values())))

    def close(self) -> None:
        """At exit: flush; a message still on its way is left to the next controller (it is not journaled as
        sent), a hook still running is journaled as cut short and dies with this process."""
        try:
            self.flush()
            for job in [job for job in self._pending.values() if job.hook]:
                self.run.journal.append_event(EventKind.HOOK_FAILED, None, {
                    "for_seq": job.for_seq, "event": job.event, "hook": job.index,
                    "error": "cut short: the controller exited while it ran"})
        except Exception:  # noqa: BLE001 - a broken journal: the run's own error is the one to report
            pass
        for worker in self._workers.values():
            worker.close()
        self._workers.clear()
        self._pending.clear()

    # -- the message --------------------------------------------------------------------------------------
    def _mask(self) -> Callable[[str], str]:
        """Masks the session's secrets and the values of the variables the URLs name."""
        spec = self.run.loaded.spec
        if self._masks is None or self._masks[0] is not spec:
            redact = session_redactor(spec, self.env).redact
            url_mask = url_variable_mask([url for target in spec.notify for url in target.urls], self.env)
            self._masks = (spec, lambda text: redact(url_mask(text)))
        return self._masks[1]

    def _run_event(self, record: EventRecord, name: str, late: bool) -> RunEvent:
        snapshot = self._snapshot()
        try:
            text = render_message(snapshot, record, name, late=late)
        except Exception as exc:  # noqa: BLE001 - a message that could not be built still says what happened
            text = f"phasegate {snapshot.name}: {name}\nRun {snapshot.run_id}: {name} ({type(exc).__name__})"
        reason = record.data.get("reason") if record.type == EventKind.SESSION_STATE else snapshot.reason
        phase = record.phase or snapshot.next_phase  # a pause or a stop is about the phase it came before
        return RunEvent(record.seq, name, snapshot.run_id, snapshot.run_dir, snapshot.session_dir, phase,
                        snapshot.state, reason, self._mask()(text))

    def _snapshot(self) -> RunSnapshot:
        """The run now; a run that is not running has no live controller for the reader (this one is ending)."""
        snapshot = take_snapshot(self.run.run_dir, self.run.journal, spec_budget=self.run.spec_budget,
                                 now=self.clock())
        return snapshot if snapshot.state == "running" else replace(snapshot, controller_live=False)


HEADS: dict[str, Callable[[EventRecord, RunSnapshot], str]] = {
    "paused": lambda r, s: f"paused — {r.data.get('reason') or s.reason}",
    "stopped": lambda r, s: f"stopped — {r.data.get('reason') or s.reason}",
    "stall": lambda r, s: f"stopped by the stall watchdog — {r.data.get('reason') or s.reason}",
    "completed": lambda r, s: "completed",
    "budget_warning": lambda r, s: (f"budget warning — ${r.data.get('spent_usd', 0):.2f} of "
                                    f"${r.data.get('allocation_usd', 0):.2f} spent"),
    "incident": lambda r, s: f"incident report ({r.data.get('trigger')}): {r.data.get('path')}",
}


def render_message(snapshot: RunSnapshot, record: EventRecord, name: str, *, late: bool) -> str:
    """The message: a title line, then what happened, the gate that waits and its question, the budget, the
    next step with its exact commands (as status and checkpoints give them) and the run folder."""
    lines = [f"phasegate {snapshot.name}: {name.replace('_', ' ')}",
             f"Run {snapshot.run_id}: {HEADS[name](record, snapshot)}"]
    lines += [f"Gate {g['gate_id']} (phase {g['phase']}) asks: {g['summary']}" for g in snapshot.pending_gates]
    lines.append(budget_line(snapshot.budget))
    if snapshot.incident is not None and name != "budget_warning" and snapshot.state != "completed":
        lines.append(f"Incident report: {snapshot.incident}")
    step = snapshot.next
    lines.append(f"Next: {step.action} — {step.reason}")
    lines += [f"  {command}" for command in step.commands]
    lines.append(f"Run folder: {snapshot.run_dir}")
    if late:
        lines.append("(Sent by a later controller: the one that journaled this event ended before sending it.)")
    return "\n".join(lines)


def budget_line(budget: Mapping) -> str:
    spent, left, allocation = budget.get("spent_usd") or 0.0, budget.get("left_usd"), budget.get("allocation_usd")
    if allocation is None:
        return f"Budget: ${spent:.2f} spent (no budget_usd set)"
    return f"Budget: ${spent:.2f} spent, ${left:.2f} left of ${allocation:.2f}"


@contextlib.contextmanager
def telling(run: OpenRun, env: Mapping[str, str]) -> Iterator[None]:
    """Tell the run's tables of the events journaled inside the block, here and now (a command acting as the
    run's controller, such as a stop of a paused run); also what an earlier controller left untold."""
    notices = Notices(run, env)
    yield
    notices.close()


def notify_test(spec: SessionSpec, env: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """Send a test message to every URL of every `[[notify]]` table; (label, error or None) per URL."""
    mask = session_redactor(spec, dict(env)).redact
    title = f"phasegate {spec.session.name}: test message"
    results = []
    for index, target in enumerate(spec.notify):
        body = (f"A test message from `phasegate notify-test` for session {spec.session.name}: this address will "
                f"be told of {', '.join(target.on)}.")
        for number, url in enumerate(target.urls):
            error = send_one(url, title, body, env=env, deadline=time.monotonic() + target.timeout_s)
            shown = None if error is None else mask(url_variable_mask([url], env)(error))
            results.append((f"notify[{index}].{url_label(number, url)}", shown))
    return results


def url_variable_mask(templates: Sequence[str], env: Mapping[str, str]) -> Callable[[str], str]:
    """Masks the values of the variables the URLs name: a URL's token need not have a secret-looking name."""
    names = {name for url in templates for name in string.Template(url).get_identifiers()}
    values = sorted(((env[n], n) for n in names if len(env.get(n, "")) >= MIN_SECRET_LEN), key=lambda v: -len(v[0]))

    def mask(text: str) -> str:
        for value, name in values:
            text = text.replace(value, f"[REDACTED:{name}]")
        return text

    return mask
