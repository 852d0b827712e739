"""`phasegate status` (human) shows the whole budget: spent, allocation, left, burn rate, projection, warning."""

from __future__ import annotations

import os
import re

from tests.conftest import run_cli, session_toml, status_json


def test_status_shows_the_budget_left_the_burn_rate_and_the_projection(workspace):
    # $1 a second, a warning from the first cent; the failed phase `b` still has 30 minutes to go.
    extra = "budget_usd = 50.0\ngpu_hourly_usd = 3600.0\nbudget_warn_at = 0.0002\n"
    (workspace / "s.toml").write_text(session_toml("t", ["a", "b"], extra=extra,
                                                   phase_extra={"b": "estimate_min = 30\n"}))
    run_dir = workspace / "run"
    ran = run_cli("run", workspace / "s.toml", "--run-dir", run_dir, "--headless",
                  env={**os.environ, "PHASE_EXIT_B": "7"})
    assert ran.returncode == 3, ran.stderr
    budget = status_json(run_dir)["budget"]
    result = run_cli("status", run_dir)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # the sentence wraps at the terminal's width
    assert (f"budget: Spent ${budget['spent_usd']:.2f} of $50.00 (${budget['left_usd']:.2f} left) over "
            f"{budget['wall_hours']:.2f} billed GPU hours, burning ${budget['burn_rate_usd_h']:.2f}/h") in text
    projected = re.search(r"projected total \$(\d+\.\d\d)\. Over the warning line\.", text)
    assert projected and float(projected[1]) == round(budget["projected_total_usd"], 2) >= 1800
