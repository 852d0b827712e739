"""The `{name}` placeholders of a session file: what each stands for, where they may stand, how they are filled."""

from __future__ import annotations

import re
import string

from phasegate.floor.rundir import PLACEHOLDER_NAMES
from phasegate.session.spec_errors import closest

_PLACEHOLDER_HELP = {
    "run_dir": "the run folder",
    "artifacts": "this phase's artifact folder",
    "phase": "this phase's id",
    "session_dir": "the folder of the session file (also the child's working directory)",
    "state": "this phase's state folder, kept across its attempts for resumable work (checkpoints, partial shards)",
}
PLACEHOLDERS = {name: _PLACEHOLDER_HELP[name] for name in PLACEHOLDER_NAMES}
"""What each placeholder stands for (the names are the run folder's, floor/rundir.py)."""


LITERAL_BRACE_HELP = "a literal brace is written twice: {{ for {, }} for } (e.g. \"print({{'a': 1}})\")"


def check_placeholders(arg: str) -> None:
    """Raise ValueError when `arg` uses a placeholder phasegate does not know, or formats one."""
    check_known_placeholders(arg, PLACEHOLDERS)


def check_known_placeholders(arg: str, known_names: dict[str, str]) -> None:
    """Raise ValueError when `arg` uses a placeholder not in `known_names`, or formats one."""
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(arg) if name is not None]
    except ValueError as exc:
        raise ValueError(f"{arg!r}: {exc}; {LITERAL_BRACE_HELP}") from None
    for name, spec, conv in fields:
        if name not in known_names:
            known = ", ".join("{" + k + "}" for k in known_names)
            guess = closest(name, list(known_names))
            raise ValueError(f"{arg!r} uses unknown placeholder {{{name}}}"
                             + (f" (did you mean {{{guess}}}?)" if guess else "")
                             + f"; known placeholders: {known}; {LITERAL_BRACE_HELP}")
        if spec or conv:
            raise ValueError(f"{arg!r}: placeholder {{{name}}} takes no format spec or conversion; write {{{name}}}")


UNFILLED_HELP = ("the placeholders (" + ", ".join("{" + k + "}" for k in PLACEHOLDERS) + ") are filled only in "
                 "`run` and in gate paths; a command phase finds its folders in the environment variables "
                 "PHASEGATE_ARTIFACTS, PHASEGATE_STATE_DIR and PHASEGATE_RUN_DIR, or pass the placeholder as an "
                 "argument in `run`")


def check_unfilled(value: str, what: str) -> None:
    """Raise ValueError when a value phasegate passes as written (`env`, `with`) uses what looks like a placeholder:
    it would reach the phase as the literal text `{artifacts}`."""
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(value) if name]
    except ValueError:  # braces that are no placeholder at all (a JSON fragment): passed as written
        return
    for name, spec, conv in fields:
        base = re.split(r"[.\[]", name, maxsplit=1)[0]
        guess = base if base in PLACEHOLDERS else closest(base, list(PLACEHOLDERS))
        if guess:
            written = "{" + name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
            looks = written + ("" if written == f"{{{guess}}}" else f" (the placeholder {{{guess}}}?)")
            raise ValueError(f"{what}: {looks} is passed as written, not filled in: {UNFILLED_HELP}")


def expand(arg: str, values: dict[str, str]) -> str:
    """Fill the placeholders of one argv element."""
    return arg.format(**values)
