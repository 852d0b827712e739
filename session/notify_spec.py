"""The `[[notify]]` and `[[hooks]]` tables of a session file: who is told of which run events, and how."""

from __future__ import annotations

import string
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from phasegate.session.placeholders import check_known_placeholders


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


NotifyEvent = Literal["paused", "stopped", "completed", "budget_warning", "incident", "stall"]
NOTIFY_EVENTS: tuple[str, ...] = get_args(NotifyEvent)
"""The run events `[[notify]]` and `[[hooks]]` tables act on."""
DEFAULT_NOTIFY_ON = [event for event in NOTIFY_EVENTS if event != "completed"]
HOOK_PLACEHOLDERS = {
    "run_dir": "the run folder",
    "session_dir": "the folder of the session file (also the hook's working directory)",
    "run_id": "the run's id",
    "event": "the event: " + ", ".join(NOTIFY_EVENTS),
    "phase": "the phase it is about (empty when none)",
    "state": "the session state: running, paused, stopped or completed",
}
"""What each placeholder of a hook's `run` stands for (each is also a PHASEGATE_<NAME> variable)."""
_EVENTS_HELP = ("paused (a gate waits for an operator, or a reviewer failed), stopped (any stop), completed, "
                "budget_warning (spending reached `budget_warn_at`), incident (an incident report not already part "
                "of a pause or a stop this table is told of), stall (a stop by the stall watchdog)")


class NotifySpec(_Strict):
    """One `[[notify]]` table: apprise URLs that get a message on the run events named in `on`."""

    urls: list[str] = Field(min_length=1, description="apprise URLs (`ntfy://…`, `slack://…`, `tgram://…`, `mailto://…`, `json://host/path`, …). `${NAME}` in a URL is replaced by environment variable NAME when a message is sent, so tokens stay out of the session file (`$$` is a literal `$`). Needs the `notify` extra: `pip install 'phasegate[notify]'`.")
    on: list[NotifyEvent] = Field(default_factory=lambda: list(DEFAULT_NOTIFY_ON), min_length=1, description="The events that send a message: " + _EVENTS_HELP + ".")
    timeout_s: float = Field(10.0, gt=0, le=300, description="Seconds one message may take, its retries included; past it the message is journaled as failed and the run goes on.")

    @field_validator("urls")
    @classmethod
    def _urls_fill(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.strip():
                raise ValueError("an empty URL; write an apprise URL, e.g. \"ntfy://ntfy.sh/my-topic\"")
            if not string.Template(url).is_valid():
                raise ValueError(f"{url!r}: a `$` starts a variable `${{NAME}}` (letters, digits and `_`); "
                                 "write `$$` for a literal `$`")
        return urls


class HookSpec(_Strict):
    """One `[[hooks]]` table: a command run on the run events named in `on` (it cannot change the run's outcome)."""

    on: list[NotifyEvent] = Field(default_factory=lambda: list(DEFAULT_NOTIFY_ON), min_length=1, description="The events that run it: " + _EVENTS_HELP + ".")
    run: list[str] = Field(min_length=1, description="The argv to run (no shell), in the session folder, with the controller's environment plus PHASEGATE_RUN_DIR, PHASEGATE_SESSION_DIR, PHASEGATE_RUN_ID, PHASEGATE_EVENT, PHASEGATE_PHASE, PHASEGATE_STATE, PHASEGATE_REASON, PHASEGATE_EVENT_SEQ and PHASEGATE_MESSAGE (the notification's text). Placeholders: " + ", ".join("{" + k + "}" for k in HOOK_PLACEHOLDERS) + ". Its output goes to logs/_hooks.log.")
    timeout_s: float = Field(60.0, gt=0, description="Seconds it may run; then it is ended (with everything it started) and journaled as failed.")

    @field_validator("run")
    @classmethod
    def _placeholders_known(cls, run: list[str]) -> list[str]:
        for arg in run:
            check_known_placeholders(arg, HOOK_PLACEHOLDERS)
        if run[0].strip() in ("", ".", "..") or run[0].endswith("/"):
            raise ValueError(f"{run[0]!r} is not a program; write the program first, "
                             'e.g. run = ["rsync", "-a", "{run_dir}", "backup:/runs/"]')
        return run
