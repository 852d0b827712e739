"""Per-preset parsing of a reviewer's raw output into text, cost, tokens and error state."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from phasegate.reviews.config import ReviewerSpec
from phasegate.reviews.json_scan import json_objects, line_starts


@dataclass(frozen=True)
class ReviewerOutput:
    """What a reviewer said, what it cost, and whether the CLI itself reported an error."""

    text: str
    cost_usd: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    is_error: bool = False
    error: str | None = None


def _failed(message: str, text: str = "") -> ReviewerOutput:
    """An output the CLI (or its format) marks as failed."""
    return ReviewerOutput(text=text, is_error=True, error=message)


def _json_object(text: str) -> dict[str, Any] | None:
    """The last JSON object in `text` that starts a line (CLIs may print warnings before it)."""
    found = None
    for found in json_objects(text, line_starts(text)):  # noqa: B007 - the last one is wanted
        pass
    return found


def _as_int(value: Any) -> int | None:
    """An int from a finite JSON number, else None."""
    return int(value) if _is_number(value) else None


def _sum_ints(*values: Any) -> int | None:
    """Sum of the numeric values, None when none is numeric."""
    numbers = [n for n in (_as_int(v) for v in values) if n is not None]
    return sum(numbers) if numbers else None


def parse_claude(stdout: str, stderr: str, last_message: str | None) -> ReviewerOutput:
    """`claude -p --output-format json`: one result object; `is_error` wins over exit code 0."""
    obj = _json_object(stdout)
    if obj is None:
        return _failed("claude printed no JSON result object", stdout)
    structured = obj.get("structured_output")
    result = obj.get("result")
    text = json.dumps(structured) if isinstance(structured, dict) else str(result or "")
    usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else {}
    # Older releases named the field cost_usd (and earlier total_cost); the CHANGELOG records
    # the rename to total_cost_usd.
    cost = next(
        (obj[k] for k in ("total_cost_usd", "cost_usd", "total_cost") if _is_number(obj.get(k))),
        None,
    )
    out = ReviewerOutput(
        text=text,
        cost_usd=float(cost) if cost is not None else None,
        tokens_in=_sum_ints(
            usage.get("input_tokens"),
            usage.get("cache_creation_input_tokens"),
            usage.get("cache_read_input_tokens"),
        ),
        tokens_out=_as_int(usage.get("output_tokens")),
    )
    subtype = obj.get("subtype")
    if obj.get("is_error") is True or (subtype not in (None, "success")):
        reason = f"claude reported an error (subtype={subtype}): {str(result or '')[:300]}"
        return replace(out, is_error=True, error=reason)
    return out


def _is_number(value: Any) -> bool:
    """True for finite JSON numbers (bools excluded; `1e999` parses as infinity, which no count or cost is)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def parse_codex(stdout: str, stderr: str, last_message: str | None) -> ReviewerOutput:
    """`codex exec --json`: last agent message, usage summed over turns, failures surfaced."""
    messages: list[str] = []
    tokens_in = tokens_out = None
    errors: list[str] = []
    turn_failed = completed = False
    for line in stdout.splitlines():
        event = _json_line(line)
        kind = event.get("type")
        item = event.get("item") if isinstance(event.get("item"), dict) else {}
        if kind == "item.completed" and item.get("type") == "agent_message":
            messages.append(str(item.get("text", "")))
        elif kind == "turn.completed" and isinstance(event.get("usage"), dict):
            completed = True
            usage = event["usage"]
            tokens_in = _sum_ints(tokens_in, usage.get("input_tokens"))
            tokens_out = _sum_ints(tokens_out, usage.get("output_tokens"))
        elif kind == "turn.failed":
            turn_failed = True
            error = event.get("error") if isinstance(event.get("error"), dict) else {}
            errors.append(str(error.get("message", "turn failed")))
        elif kind == "error":
            errors.append(str(event.get("message", "error")))
    text = (
        last_message
        if last_message and last_message.strip()
        else (messages[-1] if messages else "")
    )
    out = ReviewerOutput(text=text, tokens_in=tokens_in, tokens_out=tokens_out)
    # codex 0.169 emits top-level `error` events for retries it recovers from ("Reconnecting...
    # 2/5"), so they only count when no turn completed.
    if turn_failed or (errors and not completed):
        return replace(out, is_error=True, error="codex reported: " + "; ".join(errors)[-300:])
    return out


def _json_line(line: str) -> dict[str, Any]:
    """One JSONL event, or {} for a line that is not a JSON object."""
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def parse_gemini(stdout: str, stderr: str, last_message: str | None) -> ReviewerOutput:
    """`gemini -p --output-format json`: response text, per-model token stats, error object."""
    # gemini 0.61 prints its JSON error object on stderr, with stdout empty.
    obj = _json_object(stdout) or _json_object(stderr)
    if obj is None:
        return _failed("gemini printed no JSON output object", stdout)
    stats = obj.get("stats") if isinstance(obj.get("stats"), dict) else {}
    models = stats.get("models") if isinstance(stats.get("models"), dict) else {}
    tokens = [m.get("tokens", {}) for m in models.values() if isinstance(m, dict)]
    tokens = [t for t in tokens if isinstance(t, dict)]
    out = ReviewerOutput(
        text=str(obj.get("response") or ""),
        tokens_in=_sum_ints(*(t.get("prompt") for t in tokens)),
        # Thinking tokens are billed as output.
        tokens_out=_sum_ints(
            *(t.get("candidates") for t in tokens), *(t.get("thoughts") for t in tokens)
        ),
    )
    error = obj.get("error")
    if error:
        message = error.get("message") if isinstance(error, dict) else error
        return replace(out, is_error=True, error=f"gemini reported: {str(message)[:300]}")
    return out


_LLM_USAGE = re.compile(r"Token usage:\s*([\d,]+)\s+input(?:,\s*([\d,]+)\s+output)?")


def parse_llm(stdout: str, stderr: str, last_message: str | None) -> ReviewerOutput:
    """`llm prompt`: plain text on stdout; `--usage` token counts on stderr (summed)."""
    tokens_in = tokens_out = None
    for match in _LLM_USAGE.finditer(stderr):
        tokens_in = (tokens_in or 0) + int(match.group(1).replace(",", ""))
        if match.group(2):
            tokens_out = (tokens_out or 0) + int(match.group(2).replace(",", ""))
    return ReviewerOutput(text=stdout, tokens_in=tokens_in, tokens_out=tokens_out)


def parse_command(stdout: str, stderr: str, last_message: str | None) -> ReviewerOutput:
    """A generic command: its stdout is the answer."""
    return ReviewerOutput(text=stdout)


PARSERS: dict[str, Callable[[str, str, str | None], ReviewerOutput]] = {
    "claude": parse_claude,
    "codex": parse_codex,
    "gemini": parse_gemini,
    "llm": parse_llm,
    "command": parse_command,
}


def parse_output(
    spec: ReviewerSpec, stdout: str, stderr: str, last_message: str | None = None
) -> ReviewerOutput:
    """Parse one attempt's output in `spec`'s format (cost as reported by the CLI, if any).

    Output no parser can take (nesting too deep for the JSON decoder, say) is a failed output, never an exception.
    """
    try:
        return PARSERS[spec.kind](stdout, stderr, last_message)
    except Exception as exc:  # noqa: BLE001 - reviewer garbage must pause the session as a reviewer error, never stop it
        return _failed(f"the reviewer's output could not be read ({type(exc).__name__}: {str(exc)[:200]})")


def resolve_cost(
    output: ReviewerOutput | None, spec: ReviewerSpec
) -> tuple[float | None, str | None]:
    """One attempt's cost and its source: reported, tokens x price, or the per-call fallback."""
    # `output` is None when the reviewer never started, which costs nothing.
    if output is None:
        return None, None
    if output.cost_usd is not None:
        return output.cost_usd, "reported"
    from_tokens = priced(output.tokens_in, output.tokens_out, spec)
    if from_tokens is not None:
        return from_tokens, "tokens"
    if spec.cost_per_call_usd is not None:
        return spec.cost_per_call_usd, "fallback"
    return None, None


def priced(tokens_in: int | None, tokens_out: int | None, spec: ReviewerSpec) -> float | None:
    """Tokens times the configured per-million prices; None without tokens or prices."""
    # Cached input tokens are charged at the full input price: an upper bound keeps the budget
    # ledger on the safe side.
    parts = [
        (tokens_in, spec.price_per_mtok_input),
        (tokens_out, spec.price_per_mtok_output),
    ]
    billable = [(n, p) for n, p in parts if n is not None and p is not None]
    if not billable:
        return None
    try:
        total = sum(n * p for n, p in billable) / 1_000_000
    except OverflowError:  # a token count too large for a float is no price: fall back as without tokens
        return None
    return total if math.isfinite(total) else None
