"""Gate kind `stat`: did the adapter beat the base model, significantly, in a paired evaluation?

Reads the `evaluate` phase's eval_summary.json and recomputes the exact McNemar p from the
discordant counts (b: base only, c: adapter only) at the gate's own `alpha`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from phasegate.floor.reading import read_regular_file
from phasegate.gates.base import Gate, GateContext, GateResult, GateStatus
from phasegate.gates.options import (
    GateOptions,
    PathTemplate,
    gate_kind,
)


class StatOptions(GateOptions):
    """Options of a `stat` gate."""

    file: PathTemplate = Field(
        "{artifacts}/eval_summary.json",
        description="The evaluation summary written by the `evaluate` phase; relative paths "
        "are from the session folder.",
    )
    alpha: float = Field(0.01, gt=0, lt=1, description="Pass only when the exact McNemar p < alpha.")
    direction: Literal["improve", "either"] = Field(
        "improve",
        description="improve: the adapter must be better than the base (c > b); either: any "
        "significant difference passes.",
    )
    scope: str = Field(
        "overall",
        description="overall: all test items; a type name (e.g. 'open_qa'): that type only; "
        "every_type: each type must pass after Benjamini-Hochberg correction at alpha.",
    )


def _block_numbers(block: Mapping[str, Any]) -> dict[str, Any]:
    """p, h, b, c and rates of one summary block, with p recomputed from b and c."""
    from phasegate.gates.paired_stats import (
        mcnemar_exact,  # statsmodels loads in ~1 s: only when deciding
    )

    b, c = int(block["b"]), int(block["c"])
    return {"n": int(block["n"]), "b": b, "c": c, "p": mcnemar_exact(b, c),
            "h": float(block["cohens_h"]), "base_rate": block["base"]["rate"],
            "adapter_rate": block["adapter"]["rate"]}


def _direction_ok(numbers: Mapping[str, Any], direction: str) -> bool:
    """Whether the effect points the way the gate asks for."""
    return numbers["c"] > numbers["b"] if direction == "improve" else numbers["c"] != numbers["b"]


def _blocks(summary: Mapping[str, Any], scope: str) -> dict[str, Mapping[str, Any]]:
    """The summary blocks the scope names; KeyError with the known names when it names none."""
    per_type = summary.get("per_type", {})
    if scope == "overall":
        return {"overall": summary["overall"]}
    if scope == "every_type":
        if not per_type:
            raise KeyError("the summary has no per-type results")
        return dict(per_type)
    if scope in per_type:
        return {scope: per_type[scope]}
    raise KeyError(f"scope {scope!r} is not 'overall', 'every_type' or a type of the summary "
                   f"({', '.join(sorted(per_type)) or 'none'})")


def _why(name: str, nums: Mapping[str, Any], alpha: float, direction: str) -> str | None:
    """Why one block fails the gate, or None when it passes."""
    if nums["n"] == 0:
        return f"{name}: no paired items"
    if nums["b"] + nums["c"] == 0:
        return f"{name}: no discordant pairs (b = c = 0), so no evidence of a difference"
    if not _direction_ok(nums, direction):
        return f"{name}: adapter not better (b = {nums['b']} base-only vs c = {nums['c']} adapter-only)"
    if nums["p"] >= alpha:
        return f"{name}: McNemar p = {nums['p']:.4g} >= alpha {alpha:g}"
    return None


def decide(summary: Mapping[str, Any], options: StatOptions) -> GateResult:
    """The gate's verdict on a loaded summary."""
    numbers = {name: _block_numbers(block) for name, block in _blocks(summary, options.scope).items()}
    failures = [w for n, nums in numbers.items() if (w := _why(n, nums, options.alpha, options.direction))]
    if options.scope == "every_type":
        from phasegate.gates.paired_stats import benjamini_hochberg

        kept = benjamini_hochberg([nums["p"] for nums in numbers.values()], options.alpha)
        failures += [f"{n}: not significant after Benjamini-Hochberg at {options.alpha:g}"
                     for (n, nums), ok in zip(numbers.items(), kept, strict=True)
                     if not ok and not _why(n, nums, options.alpha, options.direction)]
    evidence = {"alpha": options.alpha, "direction": options.direction, "scope": options.scope,
                "results": numbers}
    first = next(iter(numbers.values()))
    metrics = {k: float(first[k]) for k in ("p", "h", "b", "c", "base_rate", "adapter_rate")
               if isinstance(first[k], int | float)}
    if failures:
        return GateResult(GateStatus.FAIL, "; ".join(failures), evidence, metrics)
    shown = ", ".join(f"{n}: p = {v['p']:.3g}, h = {v['h']:.2f}, c = {v['c']} vs b = {v['b']}"
                      for n, v in numbers.items())
    return GateResult(GateStatus.PASS, f"adapter significantly better ({shown})", evidence, metrics)


@gate_kind
class StatGate(Gate[StatOptions]):
    """Passes when the paired evaluation shows a significant effect in the asked direction."""

    kind: ClassVar[str] = "stat"
    options_model: ClassVar[type[StatOptions]] = StatOptions

    def check(self, options: StatOptions, context: GateContext) -> GateResult:
        """Read the summary and decide."""
        path: Path = context.resolve(options.file)
        try:
            summary = json.loads(read_regular_file(path).decode("utf-8"))
            return decide(summary, options)
        except FileNotFoundError:
            error = f"evaluation summary {path} does not exist; run the evaluate phase first"
        except (OSError, UnicodeDecodeError) as exc:
            error = f"evaluation summary {path} cannot be read: {exc}"
        except RecursionError:
            error = f"evaluation summary {path} is nested too deep to read"
        except json.JSONDecodeError as exc:
            error = f"evaluation summary {path} is not valid JSON: {exc}"
        except (KeyError, TypeError, ValueError) as exc:
            error = f"evaluation summary {path} cannot be read as eval_summary.json: {exc}"
        return GateResult(GateStatus.FAIL, error, {"file": str(path), "error": error})
