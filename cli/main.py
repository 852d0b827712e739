"""The `phasegate` command line: headless, scriptable, with exit codes an agent can branch on."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from phasegate.floor.errors import DiskFull, ExitCode, InvalidInput, PhasegateError

EXIT_CODES_HELP = (
    "Exit codes: 0 completed · 1 internal error · 2 invalid input (session file, run folder, journal) · "
    "3 stopped (failed gate, early stop or operator; an incident report exists) · "
    "4 paused, waiting for an operator (approve or waive, then resume)."
)

app = typer.Typer(
    name="phasegate",
    help="Session controller for supervised LLM fine-tuning: declared phases, gates, reviewers, budget, "
         "checkpoints an agent can resume from.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    options_metavar="[OPTIONS]",
)


def _print_version(wanted: bool) -> None:
    """`--version`: the installed package's version, then exit."""
    if wanted:
        from importlib.metadata import version

        typer.echo(f"phasegate {version('phasegate')}")
        raise typer.Exit(0)


@app.callback()
def _options(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                   help="Print phasegate's version and exit.")] = False) -> None:
    """Options of `phasegate` itself, before any command."""

RunDirArg = Annotated[Path, typer.Argument(help="A run folder (runs/<name>-<stamp>/).", metavar="RUN_DIR", show_default=False)]
SessionArg = Annotated[Path, typer.Argument(help="A session file (TOML), e.g. examples/quickstart.toml.", metavar="SESSION",
                                            show_default=False)]
HeadlessOpt = Annotated[bool, typer.Option("--headless", help="Print one JSON event per line on stdout "
                                                               "(diagnostics on stderr).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="With --headless: print only state changes (session, phases, "
                                        "gates, approvals, waivers, amendments, incidents, checkpoints) and a "
                                        "phase's progress at most every --progress-every seconds.")]
ProgressEveryOpt = Annotated[float, typer.Option("--progress-every", min=0, metavar="SECONDS",
                                                 help="With --quiet: the least time between two progress events "
                                                      "of a phase (default: 30).")]


def _listeners(headless: bool, quiet: bool = False, progress_every: float = 30.0):
    from phasegate.session.printers import human_printer, json_lines_printer, quiet_printer

    if quiet and not headless:
        raise InvalidInput("--quiet filters the JSON event stream of --headless: add --headless, or leave --quiet out")
    if headless:
        printer = json_lines_printer()
        return (_until_gone(quiet_printer(printer, progress_every=progress_every) if quiet else printer, sys.stdout),)
    return (_until_gone(human_printer(), sys.stderr),)


def _until_gone(emit, stream):
    """A printer that goes quiet once its reader is gone (a closed pipe, a hung-up terminal): the journal keeps
    every event, and losing the output must not end the run, nor turn its stop into an internal error."""
    gone = False

    def guarded(event) -> None:
        nonlocal gone
        if gone:
            return
        try:
            emit(event)
        except OSError:  # EPIPE, or EIO from a terminal that hung up
            gone = True
            _discard_writes(stream)

    return guarded


def _discard_writes(stream) -> None:
    """Point a stream whose reader is gone at /dev/null, so later writes and the flush at exit do not fail."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


def _say(text: str) -> None:
    """A line for the user on stderr, unless nobody reads it any more."""
    try:
        typer.echo(text, err=True)
    except OSError:
        _discard_writes(sys.stderr)


def _noting_stops(headless: bool):
    """Without the UI, a stop signal from the very start of the command is a stop of the run (the UI, which
    starts the controller as its own process, ends on one as any program does)."""
    from phasegate.floor.processes import noting_stop_signals

    return contextlib.nullcontext() if _wants_tui(headless) else noting_stop_signals()


def _finish(run, code: ExitCode, headless: bool) -> None:
    if not headless:
        _say(f"run folder: {run.run_dir.root}\ncheckpoint: {run.run_dir.checkpoint}")
    raise typer.Exit(int(code))


def _wants_tui(headless: bool) -> bool:
    """On a terminal, without --headless, `run` and `resume` open the full-screen UI."""
    return not headless and sys.stdout.isatty()


def _supervise(root: Path, flags: tuple[str, ...] = ()) -> None:
    """Run the controller headless in its own process and watch it in the TUI; exits with the run's code."""
    # Imported here so that textual loads only when the UI opens.
    from phasegate.tui.controller_process import controller_argv, spawn_controller
    from phasegate.tui.launch import run_tui

    raise typer.Exit(run_tui(root, mode="run", child=spawn_controller(root, argv=[*controller_argv(root), *flags])))


@app.command()
def run(session: SessionArg, run_dir: Annotated[Path | None, typer.Option(help="Where to create the run "
        "folder (default: runs/<name>-<UTC stamp>/).")] = None, headless: HeadlessOpt = False,
        quiet: QuietOpt = False, progress_every: ProgressEveryOpt = 30.0) -> None:
    """Create a run from a session file and execute it."""
    from phasegate.session.controller import Controller
    from phasegate.session.runs import create_run
    from phasegate.session.spec import load_spec

    listeners = _listeners(headless, quiet, progress_every)  # bad options are refused before the run folder exists
    with _noting_stops(headless):
        opened = create_run(load_spec(session), run_dir)
        if _wants_tui(headless):
            opened.journal.close()
            _supervise(opened.run_dir.root)
        if not headless:
            _say(f"run folder: {opened.run_dir.root}")
        _finish(opened, Controller(opened, listeners=listeners, replay=True).execute(), headless)


@app.command()
def resume(run_dir: RunDirArg, headless: HeadlessOpt = False, quiet: QuietOpt = False,
           progress_every: ProgressEveryOpt = 30.0,
           retry: Annotated[bool, typer.Option("--retry", help="Run the phase that failed (or whose gate failed, or "
                            "that stopped early) again; without it such a run is not resumed (exit 3).")] = False,
           force: Annotated[bool, typer.Option("--force", help="Resume a run an operator stopped on purpose "
                            "(its checkpoint says requires_human: true).")] = False) -> None:
    """Continue a run after a crash, a stop or a pause; completed phases are never run again.

    After a crash, a signal or a full disk it goes on where the run stands. After a failed phase, a failed gate,
    an early stop or the budget it goes on only with --retry, or once `waive` or `amend` addressed the cause
    (else exit 3, naming the options). After an operator's stop it needs --force. A run that waits on a gate
    exits 4 until the gate is approved or waived."""
    from phasegate.session.controller import Controller
    from phasegate.session.runs import open_run

    listeners = _listeners(headless, quiet, progress_every)
    with _noting_stops(headless):
        opened = open_run(run_dir)
        if _wants_tui(headless):
            opened.journal.close()
            _supervise(opened.run_dir.root, (*(["--retry"] if retry else []), *(["--force"] if force else [])))
        code = Controller(opened, listeners=listeners).execute(retry=retry, force=force)
        _finish(opened, code, headless)


@app.command()
def demo(run_dir: Annotated[Path | None, typer.Option(help="Where to create the run folder (default: "
         "runs/demo-<UTC stamp>/; the session file and sample scripts go beside it in <run-dir>-workspace/).")] = None,
         headless: HeadlessOpt = False,
         fault: Annotated[str | None, typer.Option(help="Inject one fault and end with its incident report: "
                          "oom, budget, contamination, reviewer-hang or stall.", metavar="NAME")] = None) -> None:
    """Run the whole reference session on a tiny model trained here (no downloads, CPU, ~3 minutes)."""
    from phasegate.cli.progress_view import terminal_progress
    from phasegate.demo.run import run_demo

    # A bar on a terminal; else the demo's own plain lines (or JSON lines on stdout, headless).
    progress = terminal_progress() if not headless and sys.stderr.isatty() else None
    raise typer.Exit(run_demo(run_dir, headless=headless, tui=_wants_tui(headless), fault=fault, progress=progress))


@app.command()
def watch(run_dir: RunDirArg) -> None:
    """Open the terminal UI on a run, live or finished; quitting leaves its controller running."""
    # Imported here so that textual loads only when the UI opens.
    from phasegate.tui.launch import run_tui

    raise typer.Exit(run_tui(run_dir, mode="watch"))


@app.command()
def status(run_dir: RunDirArg, as_json: Annotated[bool, typer.Option("--json", help="Print the machine-"
           "readable status document.")] = False) -> None:
    """Show where a run stands: phases, gates, budget, checkpoint, incident."""
    from phasegate.journal.snapshot import take_snapshot
    from phasegate.session.runs import open_run

    opened = open_run(run_dir)
    snapshot = take_snapshot(opened.run_dir, opened.journal, spec_budget=opened.spec_budget)
    if as_json:
        typer.echo(json.dumps(snapshot.to_json(), indent=2, default=str))
    else:
        from phasegate.cli.status_view import print_status

        print_status(snapshot)


@app.command()
def stop(run_dir: RunDirArg, reason: Annotated[str | None, typer.Option(help="Why; recorded in the incident report "
         "(without it: \"no reason given\").", show_default=False)] = None) -> None:
    """Ask the controller of a run to stop cleanly (or stop a paused run)."""
    from phasegate.session.commands import submit
    from phasegate.session.runs import open_run

    # With no live controller, the stop takes the controller lock itself: a racing resume waits or refuses.
    # Without a reason the command carries none: the journal and the incident report say "no reason given".
    result, _ = submit(open_run(run_dir), "stop", {"reason": reason} if reason and reason.strip() else {})
    typer.echo(result, err=True)


@app.command()
def amend(run_dir: RunDirArg,
          set_: Annotated[list[str] | None, typer.Option("--set", help="KEY=VALUE to change, e.g. session.budget_usd=60 "
                          "or phases.sft.with.learning_rate=1e-4 (a phase by its id); repeat for more.",
                          metavar="KEY=VALUE")] = None,
          session: Annotated[Path | None, typer.Option("--session", help="A whole new session file as the plan.",
                             metavar="NEW.toml")] = None,
          reason: Annotated[str, typer.Option(help="Why; journaled with the diff and shown in every later "
                            "checkpoint.")] = "") -> None:
    """Change a run's plan: raise its budget, fix a later phase, replace the phases not yet done.

    Allowed for phases that have not passed and for the [session] limits; refused for completed phases, the
    model and seed they were made with, and the session name. The new plan is validated like `check` and
    frozen as session.vN.toml. On a paused or stopped run it applies now (then `resume`); a live controller
    applies the [session] limits at once and the phases at its next phase boundary (the running phase's own
    definition cannot change while it runs)."""
    from phasegate.session.amend import propose
    from phasegate.session.commands import submit
    from phasegate.session.runs import open_run

    opened = open_run(run_dir)
    proposal = propose(opened, sets=set_ or [], session_file=session, reason=reason)
    result, live = submit(opened, "amend", {"text": proposal.loaded.text, "reason": proposal.reason,
                                            "version": proposal.version})
    if result.startswith("refused: "):
        raise InvalidInput(result.removeprefix("refused: "))
    for change in proposal.changes:
        _say(f"  {change}")
    _say(result + ("" if live else f"; continue with `phasegate resume {opened.run_dir.root}`"))


def _gate_command(run_dir: Path, gate_id: str, kind: str, args: dict) -> None:
    from phasegate.session.commands import submit
    from phasegate.session.gating import all_gate_ids
    from phasegate.session.runs import open_run

    opened = open_run(run_dir)
    known = all_gate_ids(opened.loaded.spec.phases)
    if gate_id not in known:
        raise InvalidInput(f"{gate_id!r} is not a gate of this session; its gates are: {', '.join(known) or 'none'}")
    result, live = submit(opened, kind, {"gate_id": gate_id, **args})
    typer.echo(result + ("" if live else f"; continue with `phasegate resume {opened.run_dir.root}`"), err=True)


@app.command()
def approve(run_dir: RunDirArg, gate_id: Annotated[str, typer.Argument(help="The gate to approve.", metavar="GATE_ID")],
            note: Annotated[str, typer.Option(help="A note kept in the journal.")] = "") -> None:
    """Approve a gate that waits for an operator (works on a paused run and on a live controller)."""
    _gate_command(run_dir, gate_id, "approve", {"note": note})


@app.command()
def waive(run_dir: RunDirArg, gate_id: Annotated[str, typer.Argument(help="The failed or pending gate.", metavar="GATE_ID")],
          reason: Annotated[str, typer.Option(help="Why; recorded forever and shown in every later checkpoint.")]) -> None:
    """Waive a failed or pending gate; the waiver is recorded forever."""
    if not reason.strip():
        raise InvalidInput("a waiver needs a reason: --reason TEXT")
    _gate_command(run_dir, gate_id, "waive", {"reason": reason})


@app.command()
def recover(run_dir: RunDirArg, to: Annotated[Path | None, typer.Option(help="Create a new run here with the "
            "verified completed phases imported; then resume it.")] = None) -> None:
    """List what a run with a damaged journal completed (artifacts checked against the last checkpoint's hashes)."""
    from phasegate.session.recover import plan_recovery, recover_into

    plan = plan_recovery(run_dir)
    typer.echo(f"from {plan.checkpoint}: completed phases {', '.join(plan.completed) or 'none'}")
    for artifact in plan.artifacts:
        typer.echo(f"  [{artifact.status:7}] {artifact.phase}: {artifact.path}  sha256 {artifact.sha256}")
    if to is None:
        typer.echo(f"recoverable: {', '.join(plan.recoverable) or 'nothing'}\n"
                   f"to recover: phasegate recover {plan.run_dir.root} --to {plan.run_dir.root}-recovered")
        return
    run = recover_into(plan, to)
    typer.echo(f"recovered {', '.join(plan.recoverable) or 'nothing'} into {run.run_dir.root}\n"
               f"continue with: phasegate resume {run.run_dir.root}")


@app.command()
def check(session: SessionArg) -> None:
    """Validate a session file without running anything.

    Every `command` phase's program (on PATH, or a file relative to the session folder) and the script an
    interpreter is given (`python3 x.py`, `bash x.sh`, `uv run x.py`; not `-m` or `-c`) must exist: a missing
    one is an error (exit 2), unless an earlier `command` phase names its file name or the folder it would be in
    does not exist yet; then it is a warning, as that phase may make it. Arguments with a placeholder only the
    run knows ({artifacts}, {state}, {run_dir}, {phase}) are not checked. `run` refuses the same errors before
    it creates the run folder."""
    from phasegate.session.preflight import check_session, session_warnings
    from phasegate.session.spec import load_spec

    loaded = load_spec(session)
    check_session(loaded, session)
    for warning in session_warnings(loaded):  # may still work: an earlier phase may install what is missing
        typer.echo(f"phasegate: warning: {warning}", err=True)
    phases = ", ".join(f"{p.id} ({p.kind})" for p in loaded.spec.phases)
    typer.echo(f"{session}: valid — session {loaded.spec.session.name!r}, {len(loaded.spec.phases)} phases: {phases}")


@app.command("notify-test")
def notify_test(session: SessionArg) -> None:
    """Send a test message to every URL of the session file's `[[notify]]` tables (exit 2 names a failing one)."""
    from phasegate.session.notify import notify_test as send_tests
    from phasegate.session.spec import load_spec

    loaded = load_spec(session)
    if not loaded.spec.notify:
        raise InvalidInput(f"{session}: no [[notify]] table to test; add one, e.g. [[notify]] urls = "
                           '["ntfy://ntfy.sh/my-topic"] (see README, "Notifications and hooks")')
    results = send_tests(loaded.spec, os.environ)
    for label, error in results:
        typer.echo(f"{label}: " + ("sent" if error is None else f"failed: {error}"))
    if failed := [label for label, error in results if error is not None]:
        raise InvalidInput(f"{session}: {', '.join(failed)} did not take the test message; fix the URL or the "
                           f"variable it names, then run `phasegate notify-test {session}` again")


@app.command()
def versions(out: Annotated[Path, typer.Option(help="Where to write the JSON record.")] = Path("session_versions.json"),
             repo: Annotated[Path, typer.Option(help="The repository whose git state is recorded.")] = Path(".")) -> None:
    """Record this machine's versions (git, python, packages, CUDA, GPU) for reproducibility (phase 0)."""
    from phasegate.pipeline.versions import write_versions

    record = write_versions(out, repo)
    gpu = record.get("summary", {}).get("gpu_name") if isinstance(record, dict) else None
    typer.echo(f"wrote {out}" + (f" (GPU: {gpu})" if gpu else ""), err=True)


@app.command()
def schema(status_doc: Annotated[bool, typer.Option("--status", help="Print the schema of the `status --json` "
           "document instead.")] = False,
           events: Annotated[bool, typer.Option("--events", help="Print the schema of one line of the --headless "
           "event stream instead.")] = False) -> None:
    """Print the session file's JSON Schema (for editors such as taplo or VS Code), or the agent API's."""
    from phasegate.journal.event_schema import events_json_schema
    from phasegate.journal.status_schema import status_json_schema
    from phasegate.session.spec import SessionSpec

    if status_doc and events:
        raise InvalidInput("--status and --events print different schemas: give one of them")
    chosen = status_json_schema() if status_doc else events_json_schema() if events else \
        SessionSpec.model_json_schema(by_alias=True)
    typer.echo(json.dumps(chosen, indent=2))


def main(argv: list[str] | None = None) -> None:
    """Entry point: map every error to its documented exit code and a message on stderr."""
    try:
        app(args=argv)  # click's standalone mode exits with 2 on usage errors, which is ours too
    except PhasegateError as exc:
        # A run that is not resumed, or waits for an operator, is where it should be: not an error.
        label = "" if exc.exit_code in (ExitCode.STOPPED, ExitCode.PAUSED) and not isinstance(exc, DiskFull) else "error: "
        typer.echo(f"phasegate: {label}{exc}", err=True)
        sys.exit(int(exc.exit_code))
