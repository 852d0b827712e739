"""Read a reviewer CLI's output while it runs: a CLI that only waits on a network it cannot reach ends early."""

# Offline, codex reconnects forever and claude backs off for minutes; without this the attempt
# would sit out the whole `timeout_s` and say only "timed out". Each rule below matches the lines
# the real CLI prints while it waits (shapes recorded from codex-cli 0.171.0, Claude Code 2.1.197
# and gemini-cli 0.61.0 run offline); once a CLI has printed `patience` of them, the attempt ends
# as a transient failure, which the runner retries per `retries`. llm prints nothing while its
# client retries (about 2 s), so its final "Connection error." is classified after exit instead.

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from phasegate.reviews.json_scan import json_line

MAX_LINE_BYTES = 65536
"""The longest partial line kept between reads; a longer one is cut (no network-wait line is that long)."""

NETWORK_FAILURE = re.compile(
    r"waiting for network|fetch failed|connection (error|refused|reset)|econn(refused|reset)|enotfound|eai_again"
    r"|etimedout|name does not resolve|failed to lookup address|network is unreachable|error sending request"
    r"|could not resolve host|getaddrinfo|could not reach its api",
    re.IGNORECASE,
)
"""Words the CLIs (and the HTTP clients under them) use when the provider's API cannot be reached."""


@dataclass(frozen=True)
class WaitRule:
    """Which stream a CLI reports its network waits on, how to read one, and how many to sit through."""

    stream: str
    read: Callable[[str], str | None]
    patience: int


def _codex_wait(line: str) -> str | None:
    """codex: a top-level `error` event "Reconnecting... 3/5 (...failed to lookup address...)" or "... waiting for
    network", i.e. a reconnect because the connection itself failed."""
    # A reconnect after the stream broke for another reason may still recover; these cannot, offline. With a key
    # codex first spends ~9 s retrying its model list, then reports them ~0.4, 0.8 and 1.6 s apart.
    event = json_line(line)
    message = event.get("message")
    if event.get("type") != "error" or not isinstance(message, str) or not message.startswith("Reconnecting"):
        return None
    return f"codex could not reach its API ({message})" if NETWORK_FAILURE.search(message) else None


def _claude_wait(line: str) -> str | None:
    """claude (stream-json): a `system/api_retry` event with no HTTP status, i.e. the request never got an answer."""
    # A retry with a status (429, 529 overloaded) is the API answering; claude's own backoff handles those.
    event = json_line(line)
    if event.get("type") != "system" or event.get("subtype") != "api_retry" or event.get("error_status") is not None:
        return None
    return (f"claude could not reach its API (retry {event.get('attempt')}/{event.get('max_retries')}, "
            f"error: {event.get('error')})")


_GEMINI_ATTEMPT = re.compile(r"^Attempt (\d+) failed\. Retrying with backoff\.\.\. Error: (.*)$")


def _gemini_wait(line: str) -> str | None:
    """gemini: its stderr line "Attempt N failed. Retrying with backoff... Error: fetch failed ..."."""
    match = _GEMINI_ATTEMPT.match(line.strip())
    if match is None or not NETWORK_FAILURE.search(match.group(2)):
        return None
    return f"gemini could not reach its API (attempt {match.group(1)} failed: {match.group(2).strip()})"


RULES: dict[str, WaitRule] = {
    "codex": WaitRule("stdout", _codex_wait, patience=3),
    # claude waits 0.5, 1.1 and 2.2 s before its first three retries: a brief outage has passed by then.
    "claude": WaitRule("stdout", _claude_wait, patience=3),
    # gemini gives up by itself after three attempts (about 15 s); two are enough to know.
    "gemini": WaitRule("stderr", _gemini_wait, patience=2),
}


class NetworkWatch:
    """Fed each chunk a CLI writes; says why to end the attempt once the CLI has only waited on the network."""

    def __init__(self, rule: WaitRule) -> None:
        self._rule = rule
        self._partial = b""
        self._waits = 0

    def feed(self, stream: str, data: bytes) -> str | None:
        """The reason to end the attempt now, or None."""
        if stream != self._rule.stream:
            return None
        *lines, self._partial = (self._partial + data).split(b"\n")
        self._partial = self._partial[-MAX_LINE_BYTES:]
        for line in lines:
            cause = self._rule.read(line.decode("utf-8", errors="replace"))
            if cause is not None:
                self._waits += 1
                if self._waits >= self._rule.patience:
                    return cause
        return None


def network_watch(kind: str) -> NetworkWatch | None:
    """The watch for a preset CLI's network waits, or None for CLIs (and commands) with nothing to watch."""
    rule = RULES.get(kind)
    return NetworkWatch(rule) if rule is not None else None
