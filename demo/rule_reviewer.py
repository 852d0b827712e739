"""A local reviewer CLI that decides by written rules: `python -m phasegate.demo.rule_reviewer`.

Use it as `[reviewers.local] command = ["python3", "-m", "phasegate.demo.rule_reviewer"]`.
It reads the prompt on stdin like any reviewer CLI, takes the gate id and nonce from the prompt's
answer contract, reads the evidence phasegate computed (`evidence.json` in its working directory,
else the prompt's "QC summary" block; never the untrusted sample rows) and prints one decision:

- SCALE when every QC metric is within the reference thresholds and pair acceptance is at
  least `--min-pair-acceptance` (0.6: stricter than the hard gate's 0.5, as a reviewer is);
- ITERATE with a lower `temperature` when the runaway or token-limit rate is too high, the phase
  lets a reviewer tune `temperature`, and this is the phase's first attempt;
- INVESTIGATE otherwise (the operator decides), with every rule that failed as a reason.

`--hang` never answers (it sleeps), to show what a reviewer timeout does.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTRACT = re.compile(r"`gate_id` must be exactly `([^`]*)` and `nonce` exactly `([^`]*)`")
QC_BLOCK = re.compile(r"## QC summary \(computed by phasegate\)\s*```json\n(.*?)\n```", re.DOTALL)

# The reference pilot's thresholds (pipeline/data/qc.py), restated so this CLI needs nothing but the stdlib.
REFERENCE_RULES: tuple[tuple[str, str, float], ...] = (
    ("runaway_rate", "<", 0.05),
    ("token_limit_rate", "<", 0.10),
    ("leakage_count", "==", 0),
    ("leakage_rate", "<", 0.02),
    ("median_tokens", "<", 40),
    ("instruction_acceptance", ">=", 0.5),
)
_HOLDS = {"<": lambda v, b: v < b, "==": lambda v, b: v == b, ">=": lambda v, b: v >= b}
ITERATE_TEMPERATURE = 0.5


@dataclass(frozen=True)
class Answer:
    """What the reviewer decided and why."""

    decision: str
    reasons: list[str]
    changes: dict[str, Any]


def contract(prompt: str) -> tuple[str, str]:
    """The gate id and nonce the answer must repeat; empty strings when the prompt has none."""
    match = CONTRACT.search(prompt)
    return (match.group(1), match.group(2)) if match else ("", "")


def read_evidence(prompt: str, folder: Path) -> dict[str, Any]:
    """The evidence bundle phasegate wrote next to the reviewer, else what the prompt's QC block says."""
    path = folder / "evidence.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                return data
        except (OSError, json.JSONDecodeError):
            pass
    match = QC_BLOCK.search(prompt)
    try:
        qc = json.loads(match.group(1)) if match else {}
    except json.JSONDecodeError:
        qc = {}
    return {"qc_summary": qc if isinstance(qc, dict) else {}}


def _number(value: Any) -> float | None:
    """A JSON number as float; None for anything else (a missing metric never passes)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def failed_rules(qc: Mapping[str, Any], min_pair: float) -> list[str]:
    """Every rule the QC summary breaks, each with the value it had."""
    rules = (*REFERENCE_RULES, ("pair_acceptance", ">=", min_pair))
    failed = []
    for metric, op, bound in rules:
        value = _number(qc.get(metric))
        if value is None or not _HOLDS[op](value, bound):
            failed.append(f"{metric} = {qc.get(metric)} (needs {op} {bound:g})")
    return failed


def decide(evidence: Mapping[str, Any], min_pair: float) -> Answer:
    """The decision for one evidence bundle."""
    qc = evidence.get("qc_summary") or {}
    if not qc:
        return Answer("INVESTIGATE", ["no QC summary in the evidence; a person has to look"], {})
    failed = failed_rules(qc, min_pair)
    if not failed:
        shown = ", ".join(f"{m} = {qc.get(m)}" for m, _, _ in REFERENCE_RULES)
        return Answer("SCALE", [f"every QC metric is within the reference thresholds ({shown})",
                                f"pair_acceptance = {qc.get('pair_acceptance')} >= {min_pair:g}"], {})
    runaway = [f for f in failed if f.startswith(("runaway_rate", "token_limit_rate"))]
    first_try = not evidence.get("previous_attempts")
    if runaway and first_try and "temperature" in (evidence.get("allowed_changes") or ()):
        return Answer("ITERATE", [*failed, "responses run on: sample more conservatively"],
                      {"temperature": ITERATE_TEMPERATURE})
    return Answer("INVESTIGATE", failed, {})


def render(answer: Answer, gate_id: str, nonce: str) -> str:
    """The one JSON object of the answer contract."""
    return json.dumps({"decision": answer.decision, "reasons": answer.reasons, "changes": answer.changes,
                       "gate_id": gate_id, "nonce": nonce})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m phasegate.demo.rule_reviewer",
        description="A phasegate reviewer that decides by written rules over the QC summary.")
    parser.add_argument("--min-pair-acceptance", type=float, default=0.6,
                        help="lowest pair acceptance that may SCALE (default 0.6)")
    parser.add_argument("--hang", action="store_true",
                        help="never answer (for showing a reviewer timeout)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Read the prompt on stdin, decide, print the decision object."""
    args = _parser().parse_args(argv)
    prompt = sys.stdin.read()
    if args.hang:
        print("reviewing...", flush=True)
        while True:
            time.sleep(3600)
    gate_id, nonce = contract(prompt)
    if not gate_id:
        print("rule_reviewer: the prompt has no answer contract (gate id and nonce)", file=sys.stderr)
        return 2
    print(render(decide(read_evidence(prompt, Path.cwd()), args.min_pair_acceptance), gate_id, nonce))
    return 0


if __name__ == "__main__":
    sys.exit(main())
