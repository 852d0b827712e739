"""The budget as readers see it: the ledger's totals, the price table, burn rate and projection."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

# Typical on-demand $/h on GPU rental clouds (2026); `gpu_hourly_usd` in the session file wins.
GPU_PRICES_USD_H = {
    "H200": 3.99, "H100": 2.99, "A100-SXM4-80GB": 1.89, "A100 80GB": 1.64, "A100": 1.39, "L40S": 0.86,
    "L40": 0.99, "RTX 6000 Ada": 0.77, "A6000": 0.49, "RTX 4090": 0.69, "RTX 3090": 0.43, "L4": 0.43, "A10": 0.5,
}


def price_for(gpu_name: str | None, table: Mapping[str, float] = GPU_PRICES_USD_H) -> float | None:
    """The table's price of the most specific entry whose name appears in the GPU's name."""
    if not gpu_name:
        return None
    matches = [key for key in table if key.lower() in gpu_name.lower()]
    return table[max(matches, key=len)] if matches else None


def spent_usd(conn: sqlite3.Connection) -> float:
    """Everything the ledger holds, in US dollars."""
    return float(conn.execute("SELECT COALESCE(SUM(amount_usd), 0) FROM ledger").fetchone()[0])


def ledger_totals(conn: sqlite3.Connection) -> tuple[float, float, dict[str, float]]:
    """(spent $, billed GPU hours, spent $ per phase) from the ledger."""
    spent = spent_usd(conn)
    hours = conn.execute("SELECT COALESCE(SUM(seconds), 0) FROM ledger WHERE kind LIKE 'gpu%'").fetchone()[0] / 3600
    per_phase = {r[0]: r[1] for r in conn.execute(
        "SELECT phase, SUM(amount_usd) FROM ledger WHERE phase IS NOT NULL GROUP BY phase")}
    return float(spent), float(hours), per_phase


def budget_view(*, spent: float, billed_hours: float, allocation: float | None, rate: float | None,
                remaining_hours: float | None, warn_at: float, per_phase: dict[str, float]) -> dict[str, Any]:
    """Allocation, spent, left, burn rate, projection and time left, as the status document shows them."""
    burn = spent / billed_hours if billed_hours > 1e-6 else rate
    projected = spent + remaining_hours * rate if remaining_hours is not None and rate is not None else None
    left = allocation - spent if allocation is not None else None
    return {
        "allocation_usd": allocation, "gpu_hourly_usd": rate, "spent_usd": round(spent, 4),
        "left_usd": round(left, 4) if left is not None else None, "wall_hours": round(billed_hours, 4),
        "burn_rate_usd_h": round(burn, 4) if burn is not None else None,
        "projected_total_usd": round(projected, 4) if projected is not None else None,
        "time_left_h": round(left / burn, 3) if left is not None and burn else None,
        "warn_at": warn_at, "warning": allocation is not None and spent >= warn_at * allocation,
        "exhausted": allocation is not None and spent >= allocation, "per_phase_usd": per_phase,
    }
