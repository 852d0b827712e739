"""The network-wait rules, on lines the real CLIs printed offline (codex-cli 0.171.0, Claude Code 2.1.197,
gemini-cli 0.61.0)."""

from __future__ import annotations

import json

import pytest

from phasegate.reviews.watch import network_watch

CODEX_DNS = "stream disconnected before completion: failed to lookup address information: Name does not resolve"
CODEX_OFFLINE = [
    {"type": "thread.started", "thread_id": "01a231e3-fdc2-74a2-8190-74cd874eb21b"},
    {"type": "turn.started"},
    *({"type": "error", "message": f"Reconnecting... {n}/5 ({CODEX_DNS})"} for n in range(2, 6)),
    {"type": "item.completed", "item": {"id": "item_0", "type": "error",
                                        "message": f"Falling back from WebSockets to HTTPS transport. {CODEX_DNS}"}},
    {"type": "error", "message": "Reconnecting... waiting for network (Connection failed: error sending request)"},
]
CLAUDE_OFFLINE = [
    {"type": "system", "subtype": "init", "cwd": "/tmp/s", "session_id": "7d62fde3", "tools": []},
    *({"type": "system", "subtype": "api_retry", "attempt": n, "max_retries": 10, "retry_delay_ms": 515.1 * 2 ** n,
       "error_status": None, "error": "unknown", "session_id": "7d62fde3"} for n in range(1, 6)),
]
GEMINI_OFFLINE = """Warning: 256-color support not detected. Using a terminal with at least 256-color support is recommended.
Ripgrep is not available. Falling back to GrepTool.
Attempt 1 failed. Retrying with backoff... Error: exception TypeError: fetch failed sending request
    at file:///tmp/realcli/node_modules/@google/gemini-cli/bundle/chunk-JDPZ4CE3.js:267671:13
    at async retryWithBackoff (file:///tmp/realcli/node_modules/@google/gemini-cli/bundle/chunk-JDPZ4CE3.js:308039:23)
Attempt 2 failed. Retrying with backoff... Error: exception TypeError: fetch failed sending request
    at file:///tmp/realcli/node_modules/@google/gemini-cli/bundle/chunk-JDPZ4CE3.js:267671:13
"""


def _jsonl(events: list[dict]) -> bytes:
    return "".join(json.dumps(e) + "\n" for e in events).encode()


def _first_cause(kind: str, stream: str, data: bytes, chunk: int) -> tuple[str | None, int]:
    """Feed `data` in `chunk`-byte reads; the cause and how many bytes had been read when it came."""
    watch = network_watch(kind)
    assert watch is not None
    for start in range(0, len(data), chunk):
        cause = watch.feed(stream, data[start:start + chunk])
        if cause is not None:
            return cause, start + chunk
    return None, len(data)


@pytest.mark.parametrize("chunk", [1, 7, 65536])
def test_codex_ends_at_its_third_reconnect_for_want_of_a_network(chunk: int) -> None:
    data = _jsonl(CODEX_OFFLINE)
    cause, read = _first_cause("codex", "stdout", data, chunk)
    assert cause == f"codex could not reach its API (Reconnecting... 4/5 ({CODEX_DNS}))"
    assert read < len(_jsonl(CODEX_OFFLINE[:5])) + chunk


def test_codex_reconnects_for_other_reasons_are_sat_through() -> None:
    events = [{"type": "error", "message": "Reconnecting... 2/5 (stream disconnected before completion)"}] * 5
    assert _first_cause("codex", "stdout", _jsonl(events), 65536)[0] is None
    assert _first_cause("codex", "stderr", _jsonl(CODEX_OFFLINE), 65536)[0] is None  # codex's events are on stdout


def test_claude_ends_at_its_third_retry_without_an_http_status() -> None:
    cause, _ = _first_cause("claude", "stdout", _jsonl(CLAUDE_OFFLINE), 13)
    assert cause == "claude could not reach its API (retry 3/10, error: unknown)"
    overloaded = [{**e, "error_status": 529, "error": "overloaded"} for e in CLAUDE_OFFLINE[1:]]
    assert _first_cause("claude", "stdout", _jsonl(overloaded), 65536)[0] is None  # the API answered: claude waits


def test_gemini_ends_at_its_second_failed_fetch() -> None:
    cause, _ = _first_cause("gemini", "stderr", GEMINI_OFFLINE.encode(), 5)
    assert cause == "gemini could not reach its API (attempt 2 failed: exception TypeError: fetch failed sending request)"
    quota = GEMINI_OFFLINE.replace("exception TypeError: fetch failed sending request", "429 quota exceeded")
    assert _first_cause("gemini", "stderr", quota.encode(), 65536)[0] is None


def test_a_line_without_end_cannot_grow_without_bound() -> None:
    watch = network_watch("codex")
    assert watch is not None
    for _ in range(100):
        assert watch.feed("stdout", b"x" * 65536) is None
    assert len(watch._partial) <= 65536  # noqa: SLF001 - the bound is the point


def test_llm_and_commands_have_nothing_to_watch() -> None:
    assert network_watch("llm") is None and network_watch("command") is None
