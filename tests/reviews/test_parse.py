"""Per-preset output parsing and cost resolution, on each CLI's documented output shape."""

from __future__ import annotations

import json

import pytest

from phasegate.reviews import ReviewerSpec, parse_output
from phasegate.reviews.parse import resolve_cost

CLAUDE = ReviewerSpec(preset="claude")
CODEX = ReviewerSpec(preset="codex", price_per_mtok_input=1.25, price_per_mtok_output=10.0)


def claude_result(**fields: object) -> str:
    base = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "{}",
        "session_id": "s",
        "total_cost_usd": 0.05,
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 7},
    }
    base.update(fields)
    return json.dumps(base)


def test_claude_result_cost_and_tokens() -> None:
    out = parse_output(CLAUDE, claude_result(result='{"decision": "SCALE"}'), "")
    assert out.text == '{"decision": "SCALE"}' and not out.is_error
    assert out.cost_usd == 0.05 and out.tokens_in == 15 and out.tokens_out == 7


def test_claude_structured_output_wins_over_result() -> None:
    out = parse_output(CLAUDE, claude_result(result="", structured_output={"decision": "STOP"}), "")
    assert json.loads(out.text) == {"decision": "STOP"}


def test_claude_is_error_true_is_an_error_even_with_exit_0() -> None:
    out = parse_output(CLAUDE, claude_result(is_error=True, result="Credit balance is too low"), "")
    assert out.is_error and "Credit balance is too low" in (out.error or "")


def test_claude_error_subtype_is_an_error() -> None:
    out = parse_output(CLAUDE, claude_result(subtype="error_max_turns"), "")
    assert out.is_error and "error_max_turns" in (out.error or "")


def test_claude_older_cost_usd_field_is_read() -> None:
    raw = json.loads(claude_result())
    del raw["total_cost_usd"]
    raw["cost_usd"] = 0.02
    assert parse_output(CLAUDE, json.dumps(raw), "").cost_usd == 0.02


def test_claude_non_json_is_an_error() -> None:
    assert parse_output(CLAUDE, "Error: not logged in", "").is_error


def codex_events(*events: dict) -> str:
    return "\n".join(json.dumps(e) for e in events) + "\n"


def test_codex_last_agent_message_and_usage_times_price() -> None:
    stdout = codex_events(
        {"type": "thread.started", "thread_id": "t"},
        {"type": "turn.started"},
        {"type": "item.completed", "item": {"id": "i0", "type": "agent_message", "text": "draft"}},
        {"type": "item.completed", "item": {"id": "i1", "type": "agent_message", "text": "final"}},
        {
            "type": "turn.completed",
            "usage": {"input_tokens": 1000, "cached_input_tokens": 400, "output_tokens": 200},
        },
    )
    out = parse_output(CODEX, stdout, "progress on stderr")
    assert out.text == "final" and out.tokens_in == 1000 and out.tokens_out == 200
    assert out.cost_usd is None
    assert resolve_cost(out, CODEX) == (pytest.approx(0.00325), "tokens")


def test_codex_last_message_file_is_preferred_and_failures_surface() -> None:
    stdout = codex_events(
        {"type": "item.completed", "item": {"id": "i", "type": "agent_message", "text": "x"}},
        {"type": "turn.failed", "error": {"message": "stream disconnected"}},
    )
    out = parse_output(CODEX, stdout, "", last_message="from file")
    assert out.text == "from file"
    assert out.is_error and "stream disconnected" in (out.error or "")
    assert parse_output(CODEX, codex_events({"type": "error", "message": "boom"}), "").is_error


def test_gemini_response_tokens_and_error() -> None:
    spec = ReviewerSpec(preset="gemini", price_per_mtok_input=1.0, price_per_mtok_output=2.0)
    stdout = json.dumps(
        {
            "response": "answer",
            "stats": {
                "models": {"m": {"tokens": {"prompt": 100, "candidates": 10, "thoughts": 5}}}
            },
        }
    )
    out = parse_output(spec, stdout, "")
    assert (out.text, out.tokens_in, out.tokens_out) == ("answer", 100, 15)
    assert resolve_cost(out, spec)[0] == pytest.approx(130 / 1_000_000)
    failed = parse_output(spec, json.dumps({"error": {"type": "ApiError", "message": "quota"}}), "")
    assert failed.is_error and "quota" in (failed.error or "")


def test_llm_plain_text_and_usage_from_stderr() -> None:
    spec = ReviewerSpec(preset="llm", price_per_mtok_input=0.15, price_per_mtok_output=0.6)
    out = parse_output(spec, '{"decision": "SCALE"}\n', "Token usage: 2,000 input, 100 output\n")
    assert out.text.strip() == '{"decision": "SCALE"}'
    assert (out.tokens_in, out.tokens_out) == (2000, 100)


def test_command_stdout_and_fallback_cost() -> None:
    spec = ReviewerSpec(command=["x"], cost_per_call_usd=0.1)
    out = parse_output(spec, "plain answer", "")
    assert out.text == "plain answer"
    assert resolve_cost(out, spec) == (0.1, "fallback")
    assert resolve_cost(None, spec) == (None, None)


# Captured from claude 2.1.328 run with the preset's argv and no credentials (trimmed).
CLAUDE_NOT_LOGGED_IN = (
    '{"duration_api_ms":0,"stop_reason":"stop_sequence","session_id":"e8a0d63d",'
    '"total_cost_usd":0,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,'
    '"cache_read_input_tokens":0,"output_tokens":0},"modelUsage":{},"permission_denials":[],'
    '"terminal_reason":"api_error","is_error":true,"num_turns":1,"subtype":"success",'
    '"api_error_status":null,"result":"Not logged in \u00b7 Please run /login","type":"result"}'
)
# Captured from gemini 0.61.0 (stdout was empty; this is stderr).
GEMINI_AUTH_STDERR = """Approval mode overridden to "default" because the current folder is not trusted.
{
  "session_id": "f438835c-c7b0-4493-9c7e-474672b01298",
  "error": {
    "type": "Error",
    "message": "Please set an Auth method in your /tmp/clihome/.gemini/settings.json",
    "code": 41
  }
}
"""
# Captured from codex 0.169.0 with no network (trimmed): retries are top-level error events.
CODEX_RECONNECTING = [
    {"type": "thread.started", "thread_id": "01a20817"},
    {"type": "turn.started"},
    {"type": "error", "message": "Reconnecting... 2/5 (stream disconnected before completion)"},
    {
        "type": "item.completed",
        "item": {"id": "item_0", "type": "error", "message": "Falling back from WebSockets"},
    },
]


def test_real_claude_not_logged_in_is_an_error_despite_subtype_success() -> None:
    out = parse_output(CLAUDE, CLAUDE_NOT_LOGGED_IN, "")
    assert out.is_error and "Not logged in" in (out.error or "")
    assert out.cost_usd == 0


def test_real_gemini_error_object_on_stderr_is_read() -> None:
    out = parse_output(ReviewerSpec(preset="gemini"), "", GEMINI_AUTH_STDERR)
    assert out.is_error and "Please set an Auth method" in (out.error or "")


def test_codex_recovered_reconnects_are_not_errors_but_unrecovered_ones_are() -> None:
    done = {"type": "item.completed", "item": {"id": "i", "type": "agent_message", "text": "ok"}}
    usage = {"input_tokens": 1, "cached_input_tokens": 0, "output_tokens": 1}
    recovered = codex_events(*CODEX_RECONNECTING, done, {"type": "turn.completed", "usage": usage})
    assert not parse_output(CODEX, recovered, "").is_error
    stalled = parse_output(CODEX, codex_events(*CODEX_RECONNECTING), "")
    assert stalled.is_error and "Reconnecting" in (stalled.error or "")


def test_claude_error_results_take_their_detail_from_errors() -> None:
    raw = claude_result(subtype="error_max_turns", is_error=True, errors=["Reached maximum number of turns (1)"])
    raw = json.dumps({k: v for k, v in json.loads(raw).items() if k != "result"})
    out = parse_output(CLAUDE, raw, "")
    assert out.error == "claude reported an error (subtype=error_max_turns): Reached maximum number of turns (1)"


def test_codex_turn_failed_message_is_the_cause_whole() -> None:
    long_message = "unexpected status 401 Unauthorized: " + "detail " * 80
    stdout = codex_events({"type": "error", "message": "Reconnecting... 1/5"},
                          {"type": "turn.failed", "error": {"message": long_message}})
    assert parse_output(CODEX, stdout, "").error == "codex reported: " + long_message


def test_bounded_cuts_at_a_word() -> None:
    from phasegate.reviews.parse import bounded

    assert bounded("alpha beta gamma", 12) == "alpha beta…"
    assert bounded("short", 12) == "short"


def test_tokens_without_prices_are_cost_unknown_not_free() -> None:
    out = parse_output(ReviewerSpec(preset="codex"), codex_events(
        {"type": "item.completed", "item": {"id": "i", "type": "agent_message", "text": "ok"}},
        {"type": "turn.completed", "usage": {"input_tokens": 10, "output_tokens": 2}}), "")
    assert resolve_cost(out, ReviewerSpec(preset="codex")) == (None, "cost unknown")
