"""What `check` and `run` verify of a session beyond its schema: unique gate ids, programs that can start."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from phasegate.floor.errors import SpecError
from phasegate.reviews.parse import TOKENS_ONLY_PRESETS
from phasegate.session.gating import declared_gates
from phasegate.session.pod_spec import check_pod, pod_warnings
from phasegate.session.spec import LoadedSpec, PhaseSpec
from phasegate.session.spec_errors import closest, describe_problem, locate_line

# The names of the files an interpreter is given that are checked to exist: a script in every common language.
SCRIPT_SUFFIXES = (".py", ".sh", ".bash", ".pl", ".rb", ".js", ".jl", ".r", ".lua")
# The kernel's limit on one argument (MAX_ARG_STRLEN); argv and environment together stay under ARG_MAX.
MAX_ARG_BYTES = 32 * 4096 - 1
_ENV_RESERVE_BYTES = 64 * 1024  # what the controller adds to the child's environment, with room to spare
_MAX_NAMES = 10_000  # of one folder, compared with a misspelled name: enough for any bin/ or project folder


def check_session(loaded: LoadedSpec, shown: str | Path, *, done: frozenset[str] = frozenset()) -> None:
    """Raise SpecError, with file and line, on what `check` and `run` refuse beyond the schema: two gates of the
    session that share an id, and a `command` phase's program or script that no phase can make (check_commands).
    Phases in `done` (completed in a run being amended or recovered) never run again: their commands are not
    checked."""
    _check_unique_gate_ids(loaded, shown)
    check_commands(loaded, shown, done=done)
    check_pod(loaded.spec.pod, loaded.text, shown, loaded.session_dir)  # `[pod]`: a pod it can stop from here


def _check_unique_gate_ids(loaded: LoadedSpec, shown: str | Path) -> None:
    seen: dict[str, tuple[str | int, ...]] = {}
    for p_index, phase in enumerate(loaded.spec.phases):
        for stage, table in (("pre", "pre_gates"), ("post", "gates")):
            specs = getattr(phase, table)
            for gate in declared_gates(phase, stage):
                g_index = next(i for i, spec in enumerate(specs) if spec is gate.spec)
                loc = ("phases", p_index, table, g_index, *(("id",) if gate.spec.id else ()))
                first = seen.setdefault(gate.gate_id, loc)
                if first is not loc:
                    line = locate_line(loaded.text, first)
                    earlier = f"phases[{first[1]}].{first[2]}[{first[3]}]" + (f" (line {line})" if line else "")
                    raise SpecError(describe_problem(
                        loaded.text, str(shown), loc,
                        f"gate id {gate.gate_id!r} is already used by {earlier}; give each gate its own `id`"))


def program_problem(program: str, *, cwd: Path, path: str | None) -> str | None:
    """Why `program` cannot be started from `cwd` with this PATH, or None when it can."""
    if "/" not in program:
        if shutil.which(program, path=path):
            return None
        guess = closest(program, _programs_on(path))
        return f"program {program!r} is not on PATH; " + (f"did you mean {guess!r}? " if guess else "") + \
            "install it or check its spelling"
    target = Path(program) if os.path.isabs(program) else cwd / program
    try:
        info = target.stat()
    except FileNotFoundError:
        return f"program {program!r} does not exist ({target}){_did_you_mean(program, target)}"
    except OSError as exc:
        return f"program {program!r} cannot be used: {exc.strerror}"
    if not stat.S_ISREG(info.st_mode):
        return f"program {program!r} is not a file ({target})"
    if not os.access(target, os.X_OK):
        return (f"program {program!r} is not executable; run `chmod +x {target}` or start it through its "
                f"interpreter, e.g. run = [\"sh\", \"{program}\", ...]")
    return None


def script_problem(argv: list[str], *, cwd: Path) -> str | None:
    """Why the script file an interpreter in `argv` is given cannot be run from `cwd`, or None."""
    index = script_index(argv)
    return None if index is None else _script_file_problem(argv[index], cwd)


def _script_file_problem(script: str, cwd: Path) -> str | None:
    if not script.lower().endswith(SCRIPT_SUFFIXES):  # an interpreter may read other things there: not ours to say
        return None
    target = Path(script) if os.path.isabs(script) else cwd / script
    if target.exists():
        return None
    return f"script {script!r} does not exist ({target}){_did_you_mean(script, target) or '; check the path'}"


def _did_you_mean(written: str, target: Path) -> str:
    """`; did you mean 'quickstart/evaluate.py'?` when a file beside `target` has a name close to its own."""
    try:
        names = os.listdir(target.parent)[:_MAX_NAMES]
    except OSError:
        return ""
    guess = closest(target.name, names)
    return f"; did you mean {written[: len(written) - len(target.name)] + guess!r}?" if guess else ""


def _programs_on(path: str | None) -> list[str]:
    """The names of the programs in the folders of a PATH (what a misspelled program is compared with)."""
    names: list[str] = []
    for folder in (path if path is not None else os.defpath).split(os.pathsep):
        with contextlib.suppress(OSError):
            names.extend(os.listdir(folder or ".")[:_MAX_NAMES])
    return names


@dataclass(frozen=True)
class _Interpreter:
    """How an interpreter is told what to run: options after which no file follows (code given inline, a module,
    standard input) and options that take the next argument as their value."""

    inline: frozenset[str]
    valued: frozenset[str] = frozenset()


_INTERPRETERS: tuple[tuple[re.Pattern[str], _Interpreter], ...] = (
    (re.compile(r"(python|pypy)[0-9.]*"), _Interpreter(frozenset({"-c", "-m", "-"}),
                                                       frozenset({"-W", "-X", "--check-hash-based-pycs"}))),
    (re.compile(r"(ba|da|z|k|mk|y|a)?sh"), _Interpreter(frozenset({"-c", "-s", "-"}),
                                                       frozenset({"-o", "+o", "-O", "+O", "--rcfile", "--init-file"}))),
    (re.compile(r"node|nodejs"), _Interpreter(frozenset({"-e", "--eval", "-p", "--print", "-"}),
                                              frozenset({"-r", "--require", "--import", "--loader", "--input-type"}))),
    (re.compile(r"perl|ruby|Rscript|julia|lua[0-9.]*"), _Interpreter(frozenset({"-e", "-E", "-"}),
                                                                    frozenset({"-I", "-l", "-r"}))),
)
# `uv run [options] x.py`: the first argument that is no option is the program or script uv runs.
_UV_RUN = _Interpreter(frozenset({"-m", "--module", "-"}), frozenset({
    "-w", "--with", "--with-editable", "--with-requirements", "-p", "--python", "--project", "--directory",
    "--package", "--extra", "--group", "--env-file", "--index", "--default-index", "--index-url",
    "--extra-index-url"}))


def _interpreter(argv: list[str]) -> tuple[_Interpreter, int] | None:
    """The interpreter `argv` starts, with the index of the first argument it reads, if it starts one."""
    name = Path(argv[0]).name
    if name == "uv" and argv[1:2] == ["run"]:
        return _UV_RUN, 2
    return next(((kind, 1) for pattern, kind in _INTERPRETERS if pattern.fullmatch(name)), None)


def script_index(argv: list[str]) -> int | None:
    """The index of the script file an interpreter is given (`python3 -u x.py`, `bash x.sh`, `uv run x.py`),
    or None: no interpreter, or code given inline or as a module (`python -m pkg`, `sh -c …`)."""
    found = _interpreter(argv) if argv else None
    if found is None:
        return None
    kind, index = found
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            return index + 1 if index + 1 < len(argv) else None
        if arg in kind.inline or (arg[:1] == "-" and arg[1:2] != "-" and any("-" + ch in kind.inline for ch in arg[1:])):
            return None  # short options run together: `-uc` is `-u -c`
        if arg in kind.valued:
            index += 2
        elif len(arg) > 1 and arg[0] in "-+":
            index += 1
        else:
            return index
    return None


def child_path(phase: PhaseSpec, environ: Mapping[str, str]) -> str | None:
    """The PATH the phase's child searches for its program."""
    return phase.env.get("PATH", environ.get("PATH"))


def argv_problem(phase: PhaseSpec, argv: list[str], *, cwd: Path, environ: Mapping[str, str]) -> str | None:
    """Why the phase's filled-in argv cannot be started, or None when it can."""
    return program_problem(argv[0], cwd=cwd, path=child_path(phase, environ)) \
        or script_problem(argv, cwd=cwd) or _size_problem(argv, {**environ, **phase.env})


def _size_problem(argv: list[str], env: Mapping[str, str]) -> str | None:
    sizes = [len(arg.encode("utf-8", "surrogateescape")) for arg in argv]
    if max(sizes) > MAX_ARG_BYTES:
        index = sizes.index(max(sizes))
        return f"argument {index} is {sizes[index]} bytes once its placeholders are filled (at most {MAX_ARG_BYTES})"
    total = sum(sizes) + len(argv) + sum(len(k) + len(v) + 2 for k, v in env.items())
    limit = os.sysconf("SC_ARG_MAX") - _ENV_RESERVE_BYTES
    if total > limit:
        return f"its arguments and environment take {total} bytes (at most {limit})"
    return None


@dataclass(frozen=True)
class CommandProblem:
    """A `command` phase's program or script that cannot be started as the session folder stands now."""

    loc: tuple[str | int, ...]
    phase_id: str
    message: str
    maker: str | None
    """Why an earlier phase may still make it (then it is a warning), or None (then it is an error)."""


def command_problems(loaded: LoadedSpec, environ: Mapping[str, str] = os.environ, *,
                     done: frozenset[str] = frozenset()) -> list[CommandProblem]:
    """Every `command` phase's program and interpreter script that is missing, with what may still make it.

    A missing file is an error unless an earlier `command` phase names its file name (in `run` or `env`), or the
    folder it would be in does not exist yet; a program not on PATH is an error unless an earlier phase names it
    or the phase's own `env` PATH has a folder that does not exist yet. Arguments with a placeholder only the run
    knows ({artifacts}, {state}, ...) are not checked."""
    out = []
    phases, cwd = loaded.spec.phases, loaded.session_dir
    for p_index, phase in enumerate(phases):
        if phase.kind != "command" or phase.id in done:
            continue
        earlier = [p for p in phases[:p_index] if p.kind == "command"]
        program = _without_session_dir(phase.run[0], cwd)
        index = script_index(phase.run)
        script = _without_session_dir(phase.run[index], cwd) if index is not None else None
        found = [(0, program, program and program_problem(program, cwd=cwd, path=child_path(phase, environ))),
                 (index, script, script and _script_file_problem(script, cwd))]
        out.extend(CommandProblem(("phases", p_index, "run", a_index), phase.id, problem,
                                  _maker(phase, arg, cwd, earlier))
                   for a_index, arg, problem in found if problem)
    return out


def _maker(phase: PhaseSpec, arg: str, cwd: Path, earlier: list[PhaseSpec]) -> str | None:
    """Why an earlier phase may make the missing `arg`, or None when none can be expected to."""
    if not earlier:
        return None
    name = Path(arg).name
    word = re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])")
    for maker in earlier:
        if any(word.search(text) for text in [*maker.run, *maker.env.values()]):
            return f"phase {maker.id!r} names {name!r}"
    if "/" in arg:
        folder = (cwd / arg).parent
        return None if folder.is_dir() else f"its folder {folder} does not exist yet"
    missing = [entry for entry in phase.env.get("PATH", "").split(os.pathsep)
               if entry and not (cwd / entry).is_dir()]
    return f"the phase's PATH folder {missing[0]!r} does not exist yet" if missing else None


def check_commands(loaded: LoadedSpec, shown: str | Path, environ: Mapping[str, str] = os.environ, *,
                   done: frozenset[str] = frozenset()) -> None:
    """Raise SpecError naming file, line, phase and fix for each program or script no phase can make."""
    errors = [problem for problem in command_problems(loaded, environ, done=done) if problem.maker is None]
    if errors:
        raise SpecError("\n".join(describe_problem(loaded.text, str(shown), problem.loc, problem.message,
                                                   about=f"phase {problem.phase_id!r}") for problem in errors))


def session_warnings(loaded: LoadedSpec, environ: Mapping[str, str] = os.environ) -> list[str]:
    """What may fail when the session runs: programs and scripts missing now that an earlier phase may make; and
    the deprecated `release_when_paused`."""
    missing = [f"phase {problem.phase_id!r}: {problem.message} (unless an earlier phase makes it: {problem.maker})"
               for problem in command_problems(loaded, environ) if problem.maker is not None]
    return missing + pod_warnings(release_when_paused=loaded.spec.session.release_when_paused) + _unpriced(loaded)


def _unpriced(loaded: LoadedSpec) -> list[str]:
    """Reviewers whose CLI reports tokens but no dollars, with no price set: their reviews' cost is unknown."""
    return [f"[reviewers.{name}]: {spec.preset} reports tokens but no cost, and neither price_per_mtok_input/"
            "price_per_mtok_output nor cost_per_call_usd is set, so its reviews' cost is unknown (not in the budget)"
            for name, spec in loaded.spec.reviewers.items()
            if spec.preset in TOKENS_ONLY_PRESETS and spec.cost_per_call_usd is None
            and spec.price_per_mtok_input is None and spec.price_per_mtok_output is None]


def _without_session_dir(arg: str, session_dir: Path) -> str | None:
    """`arg` with {session_dir} filled in; None when it uses a placeholder only known once the run exists."""
    names = {name for _, name, _, _ in string.Formatter().parse(arg) if name is not None}
    if names - {"session_dir"}:
        return None
    return arg.format(session_dir=session_dir)
