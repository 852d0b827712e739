"""What a phase and its gates are given: argv, parameters, upstream state, history, budget."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phasegate.floor.errors import InvalidInput
from phasegate.floor.redact import Redactor
from phasegate.floor.rundir import Placeholders
from phasegate.journal.budget import price_for
from phasegate.journal.events import EventKind
from phasegate.session.builtins import builtin_argv
from phasegate.session.gpu import GpuReader
from phasegate.session.placeholders import expand
from phasegate.session.preflight import argv_problem
from phasegate.session.reporting import Reporter
from phasegate.session.runs import OpenRun
from phasegate.session.spec import PhaseSpec, SessionSpec
from phasegate.session.state_dir import prepare_state_folder, state_key


def session_redactor(spec: SessionSpec, env: dict[str, str], *more: SessionSpec) -> Redactor:
    """A redactor of the environment's secrets, the session file's `env` and `with` tables' and the values of
    secret-named options in its command lines (`--token X`); `more` adds other versions of the plan."""
    specs = (spec, *more)
    tables = [*(phase.env for s in specs for phase in s.phases), *(phase.params for s in specs for phase in s.phases)]
    argvs = [*(phase.run for s in specs for phase in s.phases),
             *([*(reviewer.command or []), *reviewer.extra_args] for s in specs for reviewer in s.reviewers.values())]
    return Redactor(env, extra=tables, argvs=argvs)


class PhaseInputs:
    """Builds the inputs of a phase's child and of its gates from the session file and the journal."""

    def __init__(self, run: OpenRun, reporter: Reporter) -> None:
        self.run = run
        self.reporter = reporter

    @property
    def spec(self) -> SessionSpec:
        """The plan as it stands (an amendment replaces it between phases)."""
        return self.run.loaded.spec

    def params(self, phase: PhaseSpec) -> dict[str, Any]:
        """The phase's `[phases.with]` table with any reviewer-accepted changes applied."""
        return {**phase.params, **self.run.journal.param_overrides(phase.id)}

    def gate_services(self, phase: PhaseSpec) -> dict[str, Any]:
        """What gates of this phase may use besides their options."""
        return {"reviewers": self.spec.reviewers, "tunable": tuple(phase.tunable), "budget": self.budget_for(phase)}

    def budget_for(self, phase: PhaseSpec) -> dict[str, Any]:
        """Money left and the projected hours of this phase and of all phases left, for `budget` gates."""
        budget = self.reporter.snapshot().budget
        estimate = self.run.phase_estimate_min(phase.id)
        return {"left_usd": budget["left_usd"], "gpu_hourly_usd": budget["gpu_hourly_usd"],
                "phase_hours": estimate / 60 if estimate is not None else None,
                "remaining_hours": self.run.remaining_hours()}

    def history(self, phase: PhaseSpec, attempt: int) -> dict[str, Any]:
        """What a reviewer is shown of the past: this phase's metrics, earlier attempts, the last checkpoint."""
        previous: dict[int, dict[str, Any]] = {}
        for gate in self.run.journal.earlier_gate_decisions(phase.id, attempt):
            previous.setdefault(gate.attempt, {"attempt": gate.attempt, "gates": []})["gates"].append(
                {"gate": gate.gate_id, "status": gate.status, "summary": gate.summary})
        checkpoint = self.run.run_dir.checkpoint
        return {"metrics": self.reporter.snapshot().metrics.get(phase.id, {}),
                "previous_attempts": list(previous.values()),
                "checkpoint_text": checkpoint.read_text() if checkpoint.exists() else None}

    def upstream(self, phase: PhaseSpec) -> dict[str, dict[str, Any]]:
        """What a built-in phase may know of the phases before it: state, outputs, gate decisions."""
        phases = self.spec.phases
        snapshot = self.reporter.snapshot()
        gates: dict[str, dict[str, str]] = {}
        for gate in snapshot.gates:  # effective statuses (a waived gate reads "waived"), as every reader sees them
            gates.setdefault(gate.phase, {})[gate.gate_id] = gate.status
        return {p.id: {"kind": p.kind, "state": self.run.journal.phase_state(p.id).value,
                       "artifacts_dir": str(self.run.run_dir.artifacts(p.id)), "gates": gates.get(p.id, {})}
                for p in phases[: phases.index(phase)]}

    def placeholders(self, phase: PhaseSpec, artifacts: Path) -> dict[str, str]:
        """The text of every placeholder for this phase's argv."""
        values = Placeholders(run_dir=self.run.run_dir.root, artifacts=artifacts, phase=phase.id,
                              session_dir=self.run.session_dir, state=self.run.run_dir.state(phase.id))
        return {name: str(value) for name, value in values._asdict().items()}

    def definition_key(self, phase: PhaseSpec) -> str:
        """The key of what the phase's next attempt would be made from (see `definition_key`)."""
        return definition_key(phase, self.params(phase))

    def state_folder(self, phase: PhaseSpec, argv: list[str], params: dict[str, Any], clock) -> Path:
        """The phase's state folder, ready for this attempt; older state made from other inputs is moved aside."""
        folder = self.run.run_dir.state(phase.id)
        moved = prepare_state_folder(folder, state_key(argv, phase, params), clock)
        if moved is not None:
            self.run.journal.append_event(EventKind.LOG, phase.id, {"message": f"the phase's inputs changed: its state "
                                                                f"folder was moved aside to {moved}"})
        return folder

    def argv(self, phase: PhaseSpec, values: dict[str, str]) -> list[str]:
        """The phase's argv with its placeholders filled; InvalidInput when that argv cannot be started."""
        if phase.kind == "command":
            script = shell_script_index(phase.run)
            # A shell parses its script again: there a run folder named `r $(touch x)` must stay one word.
            argv = [fill_shell_script(arg, values) if index == script else expand(arg, values)
                    for index, arg in enumerate(phase.run)]
            problem = argv_problem(phase, argv, cwd=self.run.session_dir, environ=os.environ)
            if problem is not None:  # the session file named it, so it is the user's to fix, not a crash
                raise InvalidInput(f"phase {phase.id!r} cannot start: {problem}; fix it, then continue with "
                                   f"`phasegate resume {self.run.run_dir.root}`")
            return argv
        spec = self.spec
        context = {"phase_id": phase.id, "kind": phase.kind, "run_dir": values["run_dir"],
                   "session_dir": values["session_dir"], "artifacts_dir": values["artifacts"],
                   "state_dir": values["state"],  # resumable work kept across attempts
                   "attempt": self.run.journal.phase(phase.id).attempts + 1, "seed": spec.session.seed,
                   "params": self.params(phase),
                   "model": spec.model.model_dump() if spec.model else None,
                   # A priced GPU session: the phase must not fall back to CPU (see PhaseContext.gpu_expected).
                   "gpu_expected": spec.session.gpu_hourly_usd is not None or spec.session.gpu is not None,
                   "upstream": self.upstream(phase)}
        return builtin_argv(phase, context=context, context_path=self.run.run_dir.root / "contexts" / f"{phase.id}.json")


SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash"})
# Programs that run the rest of their argv as a command (`env sh -c …`, `timeout 60 bash -c …`): the shell
# after them still parses its script again.
WRAPPERS = frozenset({"env", "nice", "nohup", "setsid", "timeout", "stdbuf", "ionice", "chrt", "taskset", "time",
                      "sudo", "doas", "busybox", "numactl", "flock", "exec", "command", "xvfb-run", "unbuffer"})


def _shell_index(run: list[str]) -> int | None:
    """Where the shell is in `run`: first, or after wrappers and their options and values."""
    if not run or Path(run[0]).name not in SHELLS | WRAPPERS:
        return None
    return next((i for i, arg in enumerate(run) if Path(arg).name in SHELLS), None)


def shell_script_index(run: list[str]) -> int | None:
    """The index of the script argument when `run` is a shell given a script (`sh -c SCRIPT`, also behind
    `env`, `timeout` and the like), else None."""
    shell = _shell_index(run)
    if shell is None:
        return None
    reads_script, index = False, shell + 1
    while index < len(run):
        arg = run[index]
        if arg == "--":
            index += 1
            break
        if arg in ("-o", "+o", "-O", "+O"):  # an option with its value
            index += 2
            continue
        if len(arg) < 2 or arg[0] not in "-+":
            break
        reads_script = reads_script or (arg[0] == "-" and not arg.startswith("--") and "c" in arg[1:])
        index += 1
    return index if reads_script and index < len(run) else None


def _quoted_for(value: str, context: str) -> str:
    """`value` as one literal word where it stands in a script: bare, inside '…' or inside "…"."""
    if context == "'":  # nothing is special inside single quotes but the quote itself (also safe in bash's $'…')
        return value.replace("'", "'\\''")
    if context == '"':
        return "".join("\\" + ch if ch in '$`"\\' else ch for ch in value)
    return shlex.quote(value)


@dataclass
class _ShellQuoting:
    """Follows a POSIX shell's quoting through a script: '…', "…", escapes, comments and $(…) nesting."""

    context: str = ""  # "" bare, "'", '"' or "#" (a comment, to the end of the line)
    outer: list[str] = field(default_factory=list)  # the contexts $(…) substitutions were opened in
    prev: str = "\n"

    def feed(self, text: str) -> None:
        escaped = False
        for ch in text:
            if escaped:
                escaped = False
            elif self.context == "#":
                self.context = "" if ch == "\n" else "#"
            elif self.context == "'":
                self.context = "" if ch == "'" else "'"
            elif ch == "\\":
                escaped = True
            elif self.context == '"' and ch == '"':
                self.context = ""
            elif ch == "(" and self.prev == "$":
                self.outer.append(self.context)
                self.context = ""
            elif self.context == "":
                self._bare(ch)
            self.prev = "" if escaped else ch

    def _bare(self, ch: str) -> None:
        if ch in "'\"":
            self.context = ch
        elif ch == "#" and self.prev in " \t\n;&|()":
            self.context = "#"
        elif ch == ")" and self.outer:
            self.context = self.outer.pop()


def fill_shell_script(script: str, values: dict[str, str]) -> str:
    """Fill the placeholders of a shell script, each quoted for where it stands, so it stays one literal word."""
    out, quoting = [], _ShellQuoting()
    for literal, name, _, _ in string.Formatter().parse(script):
        out.append(literal)
        quoting.feed(literal)
        if name is not None:
            out.append(_quoted_for(values[name], quoting.context))
            quoting.prev = "x"  # the value is (part of) a word
    return "".join(out)


def hourly_rate(info, reader: GpuReader) -> float | None:
    """The session file's rate, else the price table's for the named GPU or the one NVML sees."""
    if info.gpu_hourly_usd is not None:
        return info.gpu_hourly_usd
    names = [info.gpu] + [s.name for s in reader.read(()) if s.available]
    return next((price for name in names if (price := price_for(name)) is not None), None)


def definition_key(phase: PhaseSpec, params: dict[str, Any]) -> str:
    """What an attempt's outputs depend on in the plan: its kind, command, environment and parameters (not its
    gates, retries or time limit). An amendment that changes it makes the phase run anew; one that changes only
    its gates lets the gates decide the attempt that already ran."""
    payload = json.dumps({"kind": phase.kind, "run": phase.run, "env": phase.env, "params": params}, sort_keys=True,
                         default=str)
    return hashlib.sha256(payload.encode()).hexdigest()
