"""The audit files of a review: output.txt and meta.json, redacted and written mode 0600."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phasegate.floor.redact import Redactor, write_private
from phasegate.reviews.config import ReviewerSpec
from phasegate.reviews.outcome import AttemptRecord, ReviewOutcome
from phasegate.reviews.prompt import ReviewRequest


@dataclass(frozen=True)
class AuditContext:
    """What every audit file is about: the request, the reviewer and the prompt it was sent."""

    request: ReviewRequest
    spec: ReviewerSpec
    prompt: str
    redactor: Redactor
    repo_digests: tuple[str | None, str | None] = (None, None)


def _decode(data: bytes) -> str:
    """Bytes from a CLI as text, never failing on bad UTF-8."""
    return data.decode("utf-8", errors="replace")


def _sha256(text: str) -> str:
    """Hex sha256 of the UTF-8 text, as written to disk."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def output_text(records: Sequence[AttemptRecord]) -> str:
    """Every attempt's stdout, stderr and output file, under headings."""
    parts = []
    for r in records:
        parts.append(f"===== attempt {r.number} stdout =====\n{_decode(r.result.stdout)}")
        parts.append(f"===== attempt {r.number} stderr =====\n{_decode(r.result.stderr)}")
        if r.last_message is not None:
            parts.append(f"===== attempt {r.number} last message =====\n{r.last_message}")
    return "\n".join(parts) + "\n"


def attempt_meta(record: AttemptRecord) -> dict[str, Any]:
    """The audit row of one attempt."""
    result, output = record.result, record.output
    return {
        "n": record.number,
        "argv": list(record.argv),
        "exit_code": result.exit_code,
        "signal": result.signal,
        "timed_out": result.timed_out,
        "spawn_error": result.spawn_error,
        "truncated": result.truncated,
        "pipes_held_open_after_exit": result.pipes_held_open,
        "ended_early": result.ended_early,
        "duration_s": round(result.duration_s, 3),
        "transient": record.transient,
        "cost_usd": record.cost_usd,
        "cost_source": record.cost_source,
        "tokens_in": output.tokens_in if output else None,
        "tokens_out": output.tokens_out if output else None,
        "cli_error": output.error if output else None,
    }


def meta(
    ctx: AuditContext, records: Sequence[AttemptRecord], outcome: ReviewOutcome, output: str
) -> dict[str, Any]:
    """meta.json: what ran, how it ended, what it cost, and hashes of what was kept."""
    last, spec = records[-1], ctx.spec
    return {
        "gate_id": ctx.request.gate_id,
        "phase_id": ctx.request.phase_id,
        "gate_attempt": ctx.request.attempt,
        "reviewer": {
            "kind": spec.kind,
            "model": spec.model,
            "timeout_s": spec.timeout_s,
            "retries": spec.retries,
        },
        "argv": list(last.argv),
        "exit_code": last.result.exit_code,
        "duration_s": round(outcome.duration_s, 3),
        "cost_usd": outcome.cost_usd,
        "tokens": {"input": outcome.tokens.input, "output": outcome.tokens.output},
        "prompt_sha256": _sha256(ctx.prompt),
        "output_sha256": _sha256(output),
        "attempts": [attempt_meta(r) for r in records],
        "decision": outcome.decision.value,
        "reasons": list(outcome.reasons),
        "changes": dict(outcome.changes),
        "error": outcome.error,
        "repo_modified": outcome.repo_modified,
        "repo_sha256_before": ctx.repo_digests[0],
        "repo_sha256_after": ctx.repo_digests[1],
    }


def audit_texts(
    ctx: AuditContext, records: Sequence[AttemptRecord], outcome: ReviewOutcome
) -> dict[str, str]:
    """The redacted text of output.txt and of meta.json (which hashes it), in the order they are written."""
    text = ctx.redactor.redact(output_text(records))
    data = ctx.redactor.redact_obj(meta(ctx, records, outcome, text))
    return {"output.txt": text, "meta.json": json.dumps(data, indent=2) + "\n"}


def audit_digests(prompt: str, texts: dict[str, str]) -> dict[str, str]:
    """The sha256 of every audit file of a call (prompt.md included), as it is written to disk."""
    return {name: _sha256(text) for name, text in {"prompt.md": prompt, **texts}.items()}


def write_audit(out_dir: Path, texts: dict[str, str]) -> None:
    """Write the audit files (output.txt, then meta.json), mode 0600."""
    for name, text in texts.items():
        write_private(out_dir / name, text)
