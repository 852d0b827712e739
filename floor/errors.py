"""One exception hierarchy with messages a user can act on, and the exit codes they map to."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes, documented in `--help` and the README."""

    COMPLETED = 0
    INTERNAL_ERROR = 1
    INVALID_INPUT = 2
    STOPPED = 3
    PAUSED = 4

    @classmethod
    def for_session_state(cls, state: str) -> ExitCode:
        """The code for a session left in `state`; one no controller exits in (running, say) gives COMPLETED."""
        return {"stopped": cls.STOPPED, "paused": cls.PAUSED, "failed": cls.INTERNAL_ERROR}.get(str(state), cls.COMPLETED)


class PhasegateError(Exception):
    """Base class: every error phasegate raises on purpose carries an exit code."""

    exit_code: ExitCode = ExitCode.INTERNAL_ERROR


class InvalidInput(PhasegateError):
    """Something the user gave (a file, a flag, a run folder) cannot be used as it is."""

    exit_code = ExitCode.INVALID_INPUT


class SpecError(InvalidInput):
    """The session file is not valid; the message names the file, line and field."""


class RunDirError(InvalidInput):
    """A run folder is missing, locked by a live controller, or not a phasegate run."""


class JournalError(InvalidInput):
    """The journal (state.db) cannot be trusted: wrong schema version, corrupt, truncated."""


class IllegalTransition(PhasegateError):
    """A state change the state machine does not allow (a bug, not a user error)."""


class ResumeRefused(PhasegateError):
    """`resume` of a run stopped by its phase or an operator, without the flag that says to go on anyway."""

    exit_code = ExitCode.STOPPED


class RunWaits(PhasegateError):
    """`resume` of a run that waits for an operator's decision on a gate: nothing can run until it is made."""

    exit_code = ExitCode.PAUSED


class DiskFull(PhasegateError):
    """No space left: the session stopped safely; completed results are intact."""

    exit_code = ExitCode.STOPPED
