"""Reviewer CLIs at gate boundaries: presets, strict decisions, cost, redaction, isolation."""

# Route lives on the floor (the controller routes too); re-exported for `from phasegate.reviews import Route`.
from phasegate.floor.redact import Redactor, redact, write_private
from phasegate.floor.states import Route
from phasegate.reviews.config import (
    DEFAULT_KEY_ENV,
    ReviewerSpec,
    UnsafeReviewerArgs,
    find_forbidden,
)
from phasegate.reviews.decision import (
    ChangeFilter,
    Decision,
    Verdict,
    filter_changes,
    parse_decision,
    reviewer_error,
    route,
)
from phasegate.reviews.outcome import ReviewOutcome, TokenUsage
from phasegate.reviews.parse import ReviewerOutput, parse_output
from phasegate.reviews.presets import Invocation, build_invocation
from phasegate.reviews.prompt import ReviewRequest, new_nonce, render_prompt
from phasegate.reviews.runner import RunOptions, run_review

__all__ = [
    "DEFAULT_KEY_ENV",
    "ChangeFilter",
    "Decision",
    "Invocation",
    "Redactor",
    "ReviewOutcome",
    "ReviewRequest",
    "ReviewerOutput",
    "ReviewerSpec",
    "Route",
    "RunOptions",
    "TokenUsage",
    "UnsafeReviewerArgs",
    "Verdict",
    "build_invocation",
    "filter_changes",
    "find_forbidden",
    "new_nonce",
    "parse_decision",
    "parse_output",
    "redact",
    "render_prompt",
    "reviewer_error",
    "route",
    "run_review",
    "write_private",
]
