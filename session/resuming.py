"""What `resume` may do with a stopped or paused run: the same next action status and checkpoints show."""

from __future__ import annotations

from phasegate.floor.errors import ResumeRefused, RunWaits
from phasegate.floor.states import NextAction
from phasegate.journal.snapshot import RunSnapshot
from phasegate.journal.store import Journal


def may_continue(snapshot: RunSnapshot, *, retry: bool, force: bool) -> None:
    """Return when `resume` (with these flags) may go on; else raise with the options named.

    A run that waits on a gate: RunWaits (exit 4) until the gate is approved or waived. A run its phase or a
    gate stopped: ResumeRefused (exit 3) unless `retry`, or an operator waived a gate or amended the plan since
    the stop. A run an operator stopped on purpose: ResumeRefused unless `force`. A signal, a full disk or a
    crash: go on.
    """
    step = snapshot.next
    if snapshot.state == "paused" and step.action is NextAction.APPROVE:
        raise RunWaits(f"{snapshot.run_dir}: the run waits for an operator: {step.reason}. Decide it, then "
                       f"resume:\n" + _listed(step.commands))
    if snapshot.state != "stopped" or step.action is NextAction.NONE:
        return
    if step.action is NextAction.RESUME and (force or not step.requires_human):
        return
    if step.action is not NextAction.RESUME and retry:
        return
    flag = "--force" if step.action is NextAction.RESUME else "--retry"
    raise ResumeRefused(f"{snapshot.run_dir}: not resumed: {step.reason}. Nothing was run again; resume it with "
                        f"{flag} or:\n" + _listed(step.commands))


def resumable_attempt(journal: Journal, phase: str, inputs_key: str, *, retry: bool) -> int | None:
    """The phase's attempt whose child exited but whose gates did not let it pass, when its gates are to be
    decided again; None when the phase runs anew: the operator asked (`retry`), or its inputs were amended
    (`inputs_key` is what its next attempt would be made from)."""
    attempt = journal.exited_attempt(phase)
    if attempt is None:
        return None
    if retry:
        journal.retire_exited(phase, "run again: the operator asked for a retry")
        return None
    if journal.exited_attempt_hash(phase) != inputs_key:
        journal.retire_exited(phase, "run again: its inputs were amended")
        return None
    journal.reopen_exited(phase)
    return attempt


def _listed(commands: tuple[str, ...]) -> str:
    return "\n".join(f"  {command}" for command in commands)
