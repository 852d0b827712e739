"""Run state as short plain text for the TUI: every state is a word and a symbol, never colour alone."""

from __future__ import annotations

from typing import Any

from phasegate.journal.events import SESSION_MARKS
from phasegate.journal.snapshot import GateView

# "paused" and "lost" are how the view shows a running phase of a paused run and of a run whose controller is gone.
PHASE_MARKS = {"passed": "✓", "running": "▶", "pending": "·", "failed": "✗", "paused": "‖", "lost": "!"}
DASH = "—"


def clock_text(seconds: float | None) -> str:
    """Seconds as H:MM:SS; a dash when unknown."""
    if seconds is None:
        return DASH
    hours, rest = divmod(int(max(0.0, seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def money(value: float | None) -> str:
    """US dollars with cents, or a dash."""
    return DASH if value is None else f"${value:,.2f}"


def short_money(value: float | None) -> str:
    """Dollars in at most six cells ($0.42, $12.34, $1234), or empty when unknown."""
    if value is None:
        return ""
    return f"${value:.2f}" if value < 100 else f"${value:.0f}"


def eta_text(seconds: float | None, unknown_after: int = 0) -> str:
    """An ETA as H:MM:SS; `≥` when phases after it have no estimate yet, a dash when there is none."""
    if seconds is None:
        return DASH
    return ("≥" if unknown_after else "") + clock_text(seconds)


def number(value: float | None) -> str:
    """A metric value in at most about eight cells."""
    return DASH if value is None else f"{value:.4g}"


def rate(value: float | None) -> str:
    """Dollars per hour, or a dash."""
    return DASH if value is None else f"${value:,.2f}/h"


def hours(value: float | None) -> str:
    """A number of hours, or a dash."""
    return DASH if value is None else f"{value:.1f} h"


def gib(megabytes: float | None) -> str:
    """Megabytes as GiB with one decimal, or a dash."""
    return DASH if megabytes is None else f"{megabytes / 1024:.1f}"


def session_label(state: str) -> str:
    """The session state as a symbol and an upper-case word."""
    return f"{SESSION_MARKS.get(state, '?')} {state.upper()}"


def gate_status(gate: GateView, approved: set[str]) -> str:
    """A gate's status word; an approved gate still pending says so."""
    word = gate.status.upper()
    if gate.status == "pending" and gate.gate_id in approved:
        return f"{word} (approved)"
    return word


def _rule_text(rule: dict[str, Any]) -> str:
    mark = "✓" if rule.get("passed") else "✗"
    return f"{mark} {rule.get('rule')} (got {rule.get('actual')})"


def gate_detail(gate: GateView) -> str:
    """One line on a gate: its rules against thresholds, a reviewer's decision, or its metrics."""
    parts = []
    if gate.waived is not None:
        parts.append(f"WAIVED: {gate.waived}")
    rules = gate.evidence.get("rules")
    if isinstance(rules, list):
        parts.extend(_rule_text(r) for r in rules if isinstance(r, dict))
    if "decision" in gate.evidence:
        reasons = gate.evidence.get("reasons") or []
        because = f" — {'; '.join(map(str, reasons))}" if reasons else ""
        parts.append(f"reviewer: {gate.evidence['decision']}{because}")
    if not parts and gate.metrics:
        parts.extend(f"{k} = {v:g}" if isinstance(v, int | float) else f"{k} = {v}" for k, v in gate.metrics.items())
    return f"{gate.gate_id}: " + (" · ".join(parts) if parts else gate.summary)


def fit_left(text: str, width: int) -> str:
    """Cut `text` to `width` cells keeping its end (a path's last folders matter most)."""
    if width <= 1 or len(text) <= width:
        return text[:max(width, 0)]
    return "…" + text[-(width - 1):]
