"""Gate kind `threshold`: rules such as `runaway_rate < 0.05` over a JSON metrics file."""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Field

from phasegate.floor.reading import read_regular_file
from phasegate.gates.base import Gate, GateContext, GateResult, GateStatus
from phasegate.gates.options import (
    GateOptions,
    PathTemplate,
    gate_kind,
)

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}

# Longer operators first so `<=` is never read as `<` followed by `=`.
_RULE = re.compile(
    r"""\A\s*
    (?P<metric>[A-Za-z_][\w-]*(?:\.[\w-]+)*)   # name, or a dotted path into nested JSON
    \s*(?P<op><=|>=|==|!=|<|>)\s*
    (?P<bound>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)
    \s*\Z""",
    re.VERBOSE,
)
RULE_FORM = "'<metric> <op> <number>' with <op> one of < <= > >= == != (e.g. 'runaway_rate < 0.05', 'metrics.qc.leakage == 0')"


@dataclass(frozen=True)
class ThresholdRule:
    """One parsed rule: the metric's path, the comparison and the bound."""

    text: str
    metric: str
    op: str
    bound: float

    def holds(self, value: float) -> bool:
        """Whether `value` satisfies the rule."""
        return OPERATORS[self.op](value, self.bound)


def parse_rule(text: str) -> ThresholdRule:
    """Parse `<metric> <op> <number>` without eval; raise ValueError naming the rule and the accepted form."""
    match = _RULE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"invalid threshold rule {text!r}: expected {RULE_FORM}")
    return ThresholdRule(text.strip(), match["metric"], match["op"], float(match["bound"]))


def _check_rule(text: str) -> str:
    """Validate one rule's text for the options model."""
    parse_rule(text)
    return text


RuleText = Annotated[str, AfterValidator(_check_rule)]


class ThresholdOptions(GateOptions):
    """Options of a `threshold` gate."""

    file: PathTemplate = Field(
        description='JSON metrics file, e.g. "{artifacts}/pilot/qc_metrics.json"; relative paths are from the session folder.'
    )
    rules: list[RuleText] = Field(
        min_length=1,
        description='Rules that must all hold, each `<metric> <op> <number>`, e.g. "runaway_rate < 0.05"; a dotted metric reads nested JSON.',
    )


class MetricError(Exception):
    """A metric that cannot be compared: missing, not a number, or NaN."""


def lookup(data: Any, path: str) -> Any:
    """Read a metric: a top-level key named `path` wins, else follow the dots (digits index lists)."""
    if isinstance(data, Mapping) and path in data:
        return data[path]
    node = data
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise MetricError("missing")
    return node


def number(value: Any) -> float:
    """The value as a float, refusing booleans, strings, null and NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MetricError(f"not a number ({type(value).__name__} {value!r})")
    try:
        result = float(value)
    except OverflowError:
        raise MetricError(f"too large for a float ({value})") from None
    if math.isnan(result):
        raise MetricError("NaN")
    return result


def _shown(raw: Any) -> Any:
    """A metric value as evidence: JSON-safe (NaN and infinities become strings)."""
    if isinstance(raw, float) and not math.isfinite(raw):
        return str(raw)
    return raw if isinstance(raw, int | float | str | bool | None) else repr(raw)[:200]


def check_rule(rule: ThresholdRule, data: Any, source: Path) -> dict[str, Any]:
    """Evaluate one rule against loaded metrics; the row says what was read and why it failed."""
    row: dict[str, Any] = {
        "rule": rule.text,
        "metric": rule.metric,
        "actual": None,
        "passed": False,
    }
    try:
        raw = lookup(data, rule.metric)
        row["actual"] = _shown(raw)
        value = number(raw)
    except MetricError as exc:
        row["reason"] = f"metric {rule.metric!r} in {source}: {exc}"
        return row
    row["actual"] = value if math.isfinite(value) else str(value)
    row["passed"] = rule.holds(value)
    if not row["passed"]:
        row["reason"] = f"{rule.metric} = {value:g}, needs {rule.op} {rule.bound:g}"
    return row


def load_metrics(path: Path) -> Any:
    """Load the metrics JSON; raise MetricError naming the file when it cannot be read."""
    try:
        return json.loads(read_regular_file(path).decode("utf-8"))
    except FileNotFoundError:
        raise MetricError(f"metrics file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MetricError(f"metrics file {path} cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise MetricError(f"metrics file {path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise MetricError(f"metrics file {path} is nested too deep to read") from None


def evaluate_rules(rules: list[ThresholdRule], path: Path) -> GateResult:
    """Evaluate every rule against the metrics file at `path`."""
    try:
        data = load_metrics(path)
    except MetricError as exc:
        return GateResult(GateStatus.FAIL, str(exc), {"file": str(path), "error": str(exc)})
    rows = [check_rule(rule, data, path) for rule in rules]
    # Only finite numbers become metrics: the journal stores them as plain JSON.
    metrics = {r["metric"]: r["actual"] for r in rows if isinstance(r["actual"], float)}
    evidence = {"file": str(path), "rules": rows}
    failed = [row for row in rows if not row["passed"]]
    if not failed:
        return GateResult(
            GateStatus.PASS, f"{len(rows)}/{len(rows)} threshold rule(s) hold", evidence, metrics
        )
    summary = f"{len(failed)} of {len(rows)} threshold rule(s) fail: " + "; ".join(
        r["reason"] for r in failed
    )
    return GateResult(GateStatus.FAIL, summary, evidence, metrics)


@gate_kind
class ThresholdGate(Gate[ThresholdOptions]):
    """Passes when every rule holds over the metrics file."""

    kind: ClassVar[str] = "threshold"
    options_model: ClassVar[type[ThresholdOptions]] = ThresholdOptions

    def check(self, options: ThresholdOptions, context: GateContext) -> GateResult:
        """Read the metrics file and check each rule."""
        return evaluate_rules(
            [parse_rule(text) for text in options.rules], context.resolve(options.file)
        )
