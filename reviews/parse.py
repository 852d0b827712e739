"""Per-preset parsing of a reviewer's raw output into text, cost, tokens and error state."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from phasegate.reviews.config import ReviewerSpec
from phasegate.reviews.json_scan import json_line, json_objects, line_starts
from phasegate.reviews.watch import NETWORK_FAILURE


@dataclass(frozen=True)
class ReviewerOutput:
    """What a reviewer said, what it cost, and whether the CLI itself reported an error."""

    text: str
    cost_usd: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    is_error: bool = False
    error: str | None = None
    no_report: bool = False
    """True when the CLI printed none of its format: its stderr, not `error`, then says what went wrong."""


MAX_ERROR_CHARS = 1000
"""The longest reviewer error message kept (journal, checkpoints, the operator's screen), cut once redacted."""
STDERR_LINES = 3
"""How many of the CLI's last stderr lines an error message quotes."""

# gemini-cli's documented fatal exit codes (packages/core/src/utils/errors.ts; 55 since 0.41).
EXIT_MEANINGS: dict[str, dict[int, str]] = {
    "gemini": {
        41: "authentication failed or is not set up",
        42: "invalid input",
        52: "invalid configuration",
        53: "the turn limit was reached",
        55: "the folder is not trusted",
    },
}
_MISSING_KEY = re.compile(
    r"not logged in|please run /login|set an auth method|no key found|api[ _-]?key|\b401\b|unauthori[sz]ed"
    r"|authentication",
    re.IGNORECASE,
)
_HINT = " — hint: "
_NOT_TRUSTED = re.compile(r"not (running in )?a? ?trusted|untrusted|--skip-trust", re.IGNORECASE)
_UNKNOWN_FLAG = re.compile(
    r"unknown (option|argument|flag)|unexpected argument|unrecognized (option|argument)|no such option"
    r"|invalid values?:|argument: \S+, given:",
    re.IGNORECASE,
)


def bounded(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """`text` cut to at most `limit` characters, at a word boundary, marked with an ellipsis."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip() + "…"


# Lines the CLIs print on every run, failing or not (gemini 0.61, codex 0.171 with HOME under /tmp).
_NOISE = re.compile(r"^(Warning: 256-color support|Ripgrep is not available|\[STARTUP\] "
                    r"|WARNING: proceeding, even though we could not create PATH aliases)")


def stderr_tail(stderr: str, lines: int = STDERR_LINES) -> str:
    """The CLI's last telling stderr lines, joined on one line; a rejected flag's line whatever its place."""
    # Parsers print the rejected flag first and their usage after it (gemini's runs to 60 lines).
    kept = [line.strip() for line in stderr.splitlines() if line.strip() and not _NOISE.match(line.strip())]
    rejected = [line for line in kept if _UNKNOWN_FLAG.search(line)]
    return " / ".join(rejected[-2:] if rejected else kept[-lines:])


def _no_json(what: str, stderr: str) -> str:
    """A CLI printed no object to read: say so, with what it said on stderr instead."""
    tail = stderr_tail(stderr)
    return f"{what}; its stderr says: {tail}" if tail else what


def exit_meaning(kind: str, exit_code: int | None) -> str:
    """What a CLI's exit code means (gemini names its fatal errors by code), or ""."""
    return EXIT_MEANINGS.get(kind, {}).get(exit_code, "") if exit_code is not None else ""


def failure_hint(spec: ReviewerSpec, cause: str, exit_code: int | None) -> str:
    """What the operator can do about the common failures, or ""."""
    program = spec.preset or (spec.command[0] if spec.command else "the reviewer")
    code = exit_code if spec.kind == "gemini" else None
    if code == 55 or (code != 41 and _NOT_TRUSTED.search(cause)):
        return (f"{program} does not trust the review's fresh scratch folder: pass `--skip-trust` "
                "(extra_args), which also keeps its read-only approval mode in effect")
    if code != 41 and _UNKNOWN_FLAG.search(cause):
        return (f"the installed {program} rejected a flag or value phasegate passes: compare "
                f"`{program} --version` with the README's tested versions, or drop the flag from extra_args")
    if spec.kind == "llm" and "does not support schemas" in cause:
        return ("this model has no schema support: set `schema = false` in the reviewer's table (its answer is then "
                "checked by phasegate's decision contract alone)")
    if NETWORK_FAILURE.search(cause):
        return (f"{program} could not reach its provider's API: check this machine's network, DNS, proxy or "
                "firewall (phasegate retries per `retries`)")
    if code == 41 or _MISSING_KEY.search(cause):
        return _key_hint(spec)
    return ""


def _key_hint(spec: ReviewerSpec) -> str:
    """Name the one key variable phasegate passes to the reviewer."""
    key = spec.resolved_key_env()
    if key is None:
        return "the reviewer found no credentials: set `key_env` to the variable that holds its API key"
    login = "; under --bare a /login is not used" if spec.kind == "claude" else ""
    return (f"set {key} in phasegate's environment: it is the only key variable passed to the reviewer "
            f"(`key_env` names another){login}")


def failure_message(spec: ReviewerSpec, headline: str, cause: str, exit_code: int | None) -> str:
    """`headline` with the CLI's real cause and a hint for the common failures (unbounded: bound it once redacted,
    so that no cut leaves part of a secret the redactor no longer recognises)."""
    message = headline + (f": {cause}" if cause else "")
    hint = failure_hint(spec, message, exit_code)
    return f"{message}{_HINT}{hint}" if hint else message


def bounded_error(text: str) -> str:
    """An error message bounded to MAX_ERROR_CHARS, its cause cut so that a trailing hint stays whole."""
    message, mark, hint = text.rpartition(_HINT)
    if not mark or len(hint) > MAX_ERROR_CHARS // 2:
        return bounded(text)
    return bounded(message, MAX_ERROR_CHARS - len(mark) - len(hint)) + mark + hint


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


def _claude_result(stdout: str) -> dict[str, Any] | None:
    """The last `type: result` object: stream-json's final event, or `--output-format json`'s one object."""
    found = None
    for obj in json_objects(stdout, line_starts(stdout)):
        if obj.get("type") == "result":
            found = obj
    return found


def parse_claude(stdout: str, stderr: str, last_message: str | None) -> ReviewerOutput:
    """`claude -p --output-format stream-json`: the final result event; `is_error` wins over exit code 0."""
    # An interrupted stream ends without its result event: then there is no answer to read.
    obj = _claude_result(stdout)
    if obj is None:
        return replace(_failed(_no_json("claude printed no JSON result object", stderr), stdout), no_report=True)
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
        reason = f"claude reported an error (subtype={subtype}): {_claude_detail(obj)}"
        return replace(out, is_error=True, error=reason)
    return out


def _claude_detail(obj: dict[str, Any]) -> str:
    """What went wrong: error results (`error_max_turns`, ...) carry it in `errors[]`, the others in `result`."""
    errors = obj.get("errors") if isinstance(obj.get("errors"), list) else []
    texts = [str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors]
    texts.append(str(obj.get("result") or ""))
    return "; ".join(t.strip() for t in texts if t.strip()) or "no detail given"


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
    failures: list[str] = []
    completed = False
    for line in stdout.splitlines():
        event = json_line(line)
        kind = event.get("type")
        item = event.get("item") if isinstance(event.get("item"), dict) else {}
        if kind == "item.completed" and item.get("type") == "agent_message":
            messages.append(str(item.get("text", "")))
        elif kind == "turn.completed" and isinstance(event.get("usage"), dict):
            completed = True
            usage = event["usage"]
            tokens_in = _sum_ints(tokens_in, usage.get("input_tokens"))
            tokens_out = _sum_ints(tokens_out, usage.get("output_tokens"))
        elif kind == "item.completed" and item.get("type") == "error":
            errors.append(str(item.get("message", "error")))
        elif kind == "turn.failed":
            error = event.get("error") if isinstance(event.get("error"), dict) else {}
            failures.append(str(error.get("message", "turn failed")))
        elif kind == "error":
            errors.append(str(event.get("message", "error")))
    text = (
        last_message
        if last_message and last_message.strip()
        else (messages[-1] if messages else "")
    )
    out = ReviewerOutput(text=text, tokens_in=tokens_in, tokens_out=tokens_out)
    # codex 0.169 emits top-level `error` events for retries it recovers from ("Reconnecting...
    # 2/5"), so they only count when no turn completed; a `turn.failed` message is the cause itself.
    if failures or (errors and not completed):
        cause = failures[-1] if failures else "; ".join(_last_distinct(errors, 3))
        return replace(out, is_error=True, error="codex reported: " + cause)
    return out


def _last_distinct(messages: list[str], count: int) -> list[str]:
    """The last `count` different messages, in order (codex repeats its reconnect events)."""
    kept = list(dict.fromkeys(reversed(messages)))[:count]
    return kept[::-1]


def parse_gemini(stdout: str, stderr: str, last_message: str | None) -> ReviewerOutput:
    """`gemini -p --output-format json`: response text, per-model token stats, error object."""
    # gemini 0.61 prints its JSON error object on stderr, with stdout empty.
    obj = _json_object(stdout) or _json_object(stderr)
    if obj is None:  # exit 55 (folder not trusted) is plain text on stderr
        return replace(_failed(_no_json("gemini printed no JSON output object", stderr), stdout), no_report=True)
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
        return replace(out, is_error=True, error=f"gemini reported: {message}")
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


TOKENS_ONLY_PRESETS = frozenset({"codex", "gemini", "llm"})
"""Presets whose CLI reports tokens but no dollars: without prices their cost is unknown."""
COST_UNKNOWN = "cost unknown"
"""The cost source of an attempt that reported tokens when no price is set."""


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
    if output.tokens_in is not None or output.tokens_out is not None:
        return None, COST_UNKNOWN  # tokens were used, but no price says what they cost: never $0
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
