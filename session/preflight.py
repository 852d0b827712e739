"""What `check` and `run` verify of a session beyond its schema: unique gate ids, programs that can start."""

from __future__ import annotations

import os
import shutil
import stat
import string
from collections.abc import Mapping
from pathlib import Path

from phasegate.floor.errors import SpecError
from phasegate.session.gating import declared_gates
from phasegate.session.spec import LoadedSpec, PhaseSpec
from phasegate.session.spec_errors import describe_problem, locate_line

# Files a phase's argv names as a script to run: `check` warns when one is missing.
SCRIPT_SUFFIXES = (".py", ".sh", ".bash", ".pl", ".rb", ".js", ".jl", ".r", ".lua")
# The kernel's limit on one argument (MAX_ARG_STRLEN); argv and environment together stay under ARG_MAX.
MAX_ARG_BYTES = 32 * 4096 - 1
_ENV_RESERVE_BYTES = 64 * 1024  # what the controller adds to the child's environment, with room to spare


def check_gate_ids(loaded: LoadedSpec, shown: str | Path) -> None:
    """Raise SpecError, with file and line, when two gates of the session share an id."""
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
        found = shutil.which(program, path=path)
        return None if found else f"program {program!r} is not on PATH; install it or check its spelling"
    target = Path(program) if os.path.isabs(program) else cwd / program
    try:
        info = target.stat()
    except FileNotFoundError:
        return f"program {program!r} does not exist ({target})"
    except OSError as exc:
        return f"program {program!r} cannot be used: {exc.strerror}"
    if not stat.S_ISREG(info.st_mode):
        return f"program {program!r} is not a file ({target})"
    if not os.access(target, os.X_OK):
        return (f"program {program!r} is not executable; run `chmod +x {target}` or start it through its "
                f"interpreter, e.g. run = [\"sh\", \"{program}\", ...]")
    return None


def child_path(phase: PhaseSpec, environ: Mapping[str, str]) -> str | None:
    """The PATH the phase's child searches for its program."""
    return phase.env.get("PATH", environ.get("PATH"))


def argv_problem(phase: PhaseSpec, argv: list[str], *, cwd: Path, environ: Mapping[str, str]) -> str | None:
    """Why the phase's filled-in argv cannot be started, or None when it can."""
    return program_problem(argv[0], cwd=cwd, path=child_path(phase, environ)) \
        or _size_problem(argv, {**environ, **phase.env})


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


def session_warnings(loaded: LoadedSpec, environ: Mapping[str, str] = os.environ) -> list[str]:
    """What may fail when the session runs: programs not found, scripts that do not exist (yet)."""
    out = []
    for phase in loaded.spec.phases:
        if phase.kind != "command":
            continue
        program = _without_session_dir(phase.run[0], loaded.session_dir)
        problem = program and program_problem(program, cwd=loaded.session_dir, path=child_path(phase, environ))
        if problem:
            out.append(f"phase {phase.id!r}: {problem} (unless an earlier phase installs it)")
        for arg in phase.run[1:]:
            script = _without_session_dir(arg, loaded.session_dir)
            if script and script.lower().endswith(SCRIPT_SUFFIXES) and not script.startswith("-") \
                    and not os.path.exists(loaded.session_dir / script):
                out.append(f"phase {phase.id!r}: script {arg!r} does not exist in {loaded.session_dir} "
                           "(unless an earlier phase writes it)")
    return out


def _without_session_dir(arg: str, session_dir: Path) -> str | None:
    """`arg` with {session_dir} filled in; None when it uses a placeholder only known once the run exists."""
    names = {name for _, name, _, _ in string.Formatter().parse(arg) if name is not None}
    if names - {"session_dir"}:
        return None
    return arg.format(session_dir=session_dir)
