"""Gate kind `review`: ask an external reviewer CLI; its decision routes but never passes a failed hard gate.

SCALE advances; ITERATE retries the phase with the whitelisted parameter changes; INVESTIGATE and
every reviewer error pause for the operator; STOP stops the session early. The journal keeps each
call, asked before the reviewer starts and answered after, so a reviewer is billed once: a crash in
between pauses for the operator. `reviews/<gate>-<attempt>/` is an audit copy only (a phase can write
into the run folder), its files' sha256 in the journal. A reviewer that changes the repository (`.git/`
included) or the run folder's artifacts and review records (of any phase) stops the session.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from phasegate.floor.faults import crash_point
from phasegate.floor.rundir import RunDir
from phasegate.floor.states import Route
from phasegate.gates.base import Gate, GateContext, GateResult, GateStatus, ReviewLog
from phasegate.gates.options import (
    GateOptions,
    PathTemplate,
    gate_kind,
)
from phasegate.gates.review_artifacts import ArtifactWatch
from phasegate.reviews import (
    ReviewerSpec,
    ReviewOutcome,
    ReviewRequest,
    RunOptions,
    filter_changes,
    new_nonce,
    run_review,
)
from phasegate.reviews.decision import ROUTES, Decision


class ReviewOptions(GateOptions):
    """Options of a `review` gate."""

    reviewer: str = Field(min_length=1, description="Name of a `[reviewers.<name>]` table of the session file.")
    question: str = Field(min_length=1, description="What the reviewer decides, e.g. \"Is this pilot good enough to scale to 15k?\"")
    qc_file: PathTemplate | None = Field(None, description="A JSON summary shown to the reviewer, e.g. \"{artifacts}/qc_summary.json\".")
    sample_file: PathTemplate | None = Field(None, description="A JSONL file of generated rows; a sample is shown, fenced as untrusted data.")
    sample_rows: int = Field(10, ge=0, le=200, description="How many rows of `sample_file` the reviewer sees.")
    advise_on_failure: bool = Field(False, description="Also ask after a hard gate failed, for advice only (it cannot change the outcome).")


DECISION_STATUS = {"SCALE": GateStatus.PASS, "ITERATE": GateStatus.FAIL, "INVESTIGATE": GateStatus.PENDING,
                   "STOP": GateStatus.FAIL}
# Only the decisions that change the controller's course route; SCALE advances and INVESTIGATE waits anyway.
DECISION_ROUTE = {d.value: ROUTES[d] for d in (Decision.ITERATE, Decision.STOP)}


def _read_json(path: Path | None) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text()) if path else {}
    except (OSError, ValueError, RecursionError):  # a phase's unreadable summary is shown as none
        return {}
    return data if isinstance(data, dict) else {}


def _sample(path: Path | None, count: int) -> list[Any]:
    rows: list[Any] = []
    if path is None or not path.exists():
        return rows
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if len(rows) >= count:
                break
            try:
                rows.append(json.loads(line))
            except (ValueError, RecursionError):
                rows.append(line.strip()[:500])
    return rows


def _request(context: GateContext, options: ReviewOptions) -> ReviewRequest:
    history = context.history
    return ReviewRequest(
        gate_id=context.gate_id, nonce=new_nonce(), question=options.question, phase_id=context.phase_id,
        attempt=context.attempt, metrics=history.get("metrics", {}),
        qc_summary=_read_json(context.resolve(options.qc_file) if options.qc_file else None),
        sample_rows=_sample(context.resolve(options.sample_file) if options.sample_file else None, options.sample_rows),
        previous_attempts=history.get("previous_attempts", ()), checkpoint_text=history.get("checkpoint_text"),
        allowed_changes=context.tunable,
    )


def _clear(out_dir: Path) -> None:
    """Remove whatever lies where the audit copy goes: nothing there can be the reviewer's yet."""
    if out_dir.is_symlink() or out_dir.is_file():
        out_dir.unlink()
    elif out_dir.exists():
        shutil.rmtree(out_dir)


def _tampered(summary: str, files: list[str]) -> GateResult:
    """Artifacts the reviewer judged (or will judge) are not the phase's: stop, naming the files."""
    return GateResult(GateStatus.FAIL, f"{summary}: {', '.join(files)}", {"changed_artifacts": files},
                      route=Route.STOP)


def _interrupted(context: GateContext, out_dir: Path) -> GateResult:
    """A call asked but never answered (the controller died meanwhile): the operator decides, nobody asks again."""
    run, gate = context.run_dir, context.gate_id
    error = (f"the review of attempt {context.attempt} was interrupted: the controller stopped while the reviewer was "
             f"asked, so no answer was recorded (the call may have been billed, so it is not made again unseen). "
             f"Read {out_dir} if it is there, then approve the gate (`phasegate approve {run} {gate} --note TEXT`) "
             f"or waive it (`phasegate waive {run} {gate} --reason TEXT`)")
    return GateResult(GateStatus.PENDING, error, {"decision": Decision.INVESTIGATE.value, "error": error,
                                                  "interrupted": True, "review_dir": str(out_dir)})


def _answer(outcome: ReviewOutcome, artifacts_changed: list[str]) -> dict[str, Any]:
    """What the journal keeps of a reviewer's answer, and the gate decides from."""
    return {"decision": outcome.decision.value, "reasons": list(outcome.reasons), "changes": dict(outcome.changes),
            "error": outcome.error, "cost_usd": outcome.cost_usd, "cost_unknown": outcome.cost_unknown,
            "repo_modified": outcome.repo_modified,
            "artifacts_changed": artifacts_changed}


def _asked_now(context: GateContext, options: ReviewOptions, spec: ReviewerSpec, out_dir: Path,
               log: ReviewLog | None) -> GateResult:
    """Ask the reviewer once, isolated from the repo: the call journaled right before the reviewer starts, its
    answer (with the artifacts checked) before the audit files are written."""
    watch = ArtifactWatch(context.run_dir, context.artifacts_dir, log.artifacts() if log is not None else {})
    if changed := watch.changed_since_the_phase():
        return _tampered("the phase's artifacts changed after the phase ended, before the review", changed)
    readings: list[dict[Path, str]] = []
    answers: list[dict[str, Any]] = []

    def asked() -> None:
        # Read once the prompt is in place, right before the reviewer starts: what differs later is its doing.
        readings.append(watch.now())
        if log is not None:
            log.asked()

    def answered(outcome: ReviewOutcome, audit: Mapping[str, str]) -> None:
        answers.append(_answer(outcome, watch.changed(readings[0], watch.now()) if readings else []))
        if log is not None:
            log.answered(answers[-1], audit, outcome.cost_usd)

    _clear(out_dir)
    run_review(_request(context, options), spec, out_dir, repo_dir=context.session_dir,
               options=RunOptions(repo_exclude=[str(context.run_dir)], on_asked=asked, on_answered=answered))
    crash_point("after_review")
    return _result(answers[-1], context, out_dir)


def _result(record: dict[str, Any], context: GateContext, out_dir: Path) -> GateResult:
    decision = record["decision"]
    changes = filter_changes(record.get("changes") or {}, context.tunable)
    evidence = {"decision": decision, "reasons": record.get("reasons", []), "error": record.get("error"),
                "accepted_changes": dict(changes.accepted), "rejected_changes": dict(changes.rejected),
                "review_dir": str(out_dir), "repo_modified": record.get("repo_modified", False)}
    cost = record.get("cost_usd")
    metrics = {"cost_usd": float(cost)} if isinstance(cost, int | float) else {}
    reason = record.get("error") or "; ".join(record.get("reasons") or []) or "no reasons given"
    if record.get("repo_modified"):
        return GateResult(GateStatus.FAIL, f"the reviewer modified the repository: {reason}", evidence, metrics,
                          route=Route.STOP)
    if record.get("artifacts_changed"):
        result = _tampered("the reviewer changed the run folder's artifacts or review records",
                           list(record["artifacts_changed"]))
        return GateResult(result.status, result.summary, {**evidence, **result.evidence}, metrics, route=result.route)
    summary = f"reviewer says {decision}: {reason}"
    return GateResult(DECISION_STATUS[decision], summary, evidence, metrics, route=DECISION_ROUTE.get(decision),
                      changes=dict(changes.accepted))


@gate_kind
class ReviewGate(Gate[ReviewOptions]):
    """Asks a reviewer CLI at a gate boundary and turns its strict decision into a route."""

    kind: ClassVar[str] = "review"
    options_model: ClassVar[type[ReviewOptions]] = ReviewOptions

    @property
    def costly(self) -> bool:
        """A decided review is never asked again: reviewers are billed per call."""
        return True

    @property
    def needs_history(self) -> bool:
        """The reviewer is shown the phase's metrics, earlier attempts and the last checkpoint."""
        return True

    @property
    def runs_after_hard_gates(self) -> bool:
        """A reviewer never sees, or overrides, a failed hard gate of its stage."""
        return True

    @property
    def advises_on_failure(self) -> bool:
        """As the options say (`advise_on_failure`)."""
        return self.options is not None and self.options.advise_on_failure

    @property
    def reviewer_names(self) -> tuple[str, ...]:
        """The one reviewer the options name."""
        return () if self.options is None else (self.options.reviewer,)

    def check(self, options: ReviewOptions, context: GateContext) -> GateResult:
        """Ask this attempt's review, or take the journal's record of it, and map its decision."""
        spec = context.reviewers.get(options.reviewer)
        if spec is None:
            return GateResult(GateStatus.FAIL, f"no [reviewers.{options.reviewer}] table in the session file")
        out_dir = RunDir(context.run_dir).review(context.gate_id, context.attempt)
        log = context.review_log
        recorded = log.recorded() if log is not None else None
        if recorded is None:
            return _asked_now(context, options, spec, out_dir, log)
        if recorded.answer is None:
            return _interrupted(context, out_dir)
        return _result(recorded.answer, context, out_dir)
