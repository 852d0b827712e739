"""Gate kind `policy`: static, AST-based checks of a code tree (e.g. "only the canonical loader disables chat templates")."""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from phasegate.floor.reading import read_regular_file
from phasegate.gates.base import Gate, GateContext, GateResult, GateStatus
from phasegate.gates.globs import matches_any
from phasegate.gates.options import (
    GateOptions,
    PathTemplate,
    gate_kind,
)
from phasegate.gates.policy_rules import Glob, MustImport, Rule

# Folders no policy means to check: walking a virtualenv would flag every installed library.
SKIP_DIRS = frozenset(
    {".git", ".hg", ".svn", "__pycache__", ".venv", "venv", ".tox", "node_modules"}
)


class PolicyOptions(GateOptions):
    """Options of a `policy` gate."""

    root: PathTemplate = Field(
        default=".",
        description="Folder to check, relative to the session folder; may use {artifacts}, {run_dir}, {session_dir}.",
    )
    include: list[Glob] = Field(
        default_factory=lambda: ["**/*.py"],
        min_length=1,
        description="Globs (relative to root) of the files to check; `*` stays in one folder, `**` crosses folders.",
    )
    exclude: list[Glob] = Field(
        default_factory=list,
        description='Globs (relative to root) of files to skip, e.g. ["archived/**"]; .git, __pycache__ and virtualenv folders are always skipped.',
    )
    rules: list[Rule] = Field(min_length=1, description="The rules every checked file must keep.")
    recheck: Literal["once", "every_phase"] = Field(
        default="once",
        description='"every_phase": the controller re-runs this gate before each later phase and stops the session if it fails.',
    )
    max_reported: int = Field(
        default=50,
        ge=1,
        description="How many violations the evidence lists; the total is always reported.",
    )


@dataclass(frozen=True)
class Violation:
    """One broken rule at one place in the tree."""

    file: str
    line: int
    rule: str
    message: str
    source: str | None

    def as_dict(self) -> dict[str, Any]:
        """The violation as journal evidence."""
        return {
            "location": f"{self.file}:{self.line}",
            "file": self.file,
            "line": self.line,
            "rule": self.rule,
            "message": self.message,
            "source": self.source,
        }


@dataclass(frozen=True)
class PolicyReport:
    """What one policy check found."""

    files_checked: int
    violations: tuple[Violation, ...]


def collect_files(root: Path, include: list[str], exclude: list[str]) -> list[str]:
    """Paths (relative to root, `/`-separated, sorted) of the files to check."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in files:
            relpath = Path(folder, name).relative_to(root).as_posix()
            if matches_any(relpath, include) and not matches_any(relpath, exclude):
                found.append(relpath)
    return sorted(found)


def _source_line(lines: list[str], line: int) -> str | None:
    """The stripped text of a 1-based line, or None when there is none."""
    return lines[line - 1].strip() if 0 < line <= len(lines) else None


class _Unparsable(Exception):
    """A file that cannot be read or parsed, carrying the violation that reports it."""

    def __init__(self, violation: Violation) -> None:
        super().__init__(violation.message)
        self.violation = violation


def _parse(root: Path, relpath: str) -> tuple[ast.Module, list[str]]:
    """Parse one file into its tree and source lines; raise _Unparsable instead of any parse error."""
    try:
        data = read_regular_file(root / relpath)  # a FIFO in the tree must not hang the gate
    except OSError as exc:
        message = f"cannot be read: {exc.strerror or exc}"
        raise _Unparsable(Violation(relpath, 0, "unreadable", message, None)) from None
    lines = data.decode("utf-8", errors="replace").splitlines()
    try:
        return ast.parse(data, filename=relpath), lines
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        # ValueError: interpreters before 3.11.4 reject null bytes with it rather than SyntaxError;
        # RecursionError/MemoryError: absurdly nested code exhausts the parser.
        line = getattr(exc, "lineno", None) or 1
        text = (getattr(exc, "text", None) or "").strip() or _source_line(lines, line)
        reason = getattr(exc, "msg", None) or str(exc) or type(exc).__name__
        raise _Unparsable(
            Violation(relpath, line, "syntax", f"does not parse: {reason}", text)
        ) from None


def check_file(root: Path, relpath: str, rules: list[Rule]) -> list[Violation]:
    """Every violation of `rules` in one file (a file that does not parse is one violation)."""
    try:
        tree, lines = _parse(root, relpath)
    except _Unparsable as exc:
        return [exc.violation]
    found: dict[tuple[int, str, str], Violation] = {}
    for rule in (r for r in rules if r.applies_to(relpath)):
        for f in rule.check(tree):
            source = _source_line(lines, f.line)
            found.setdefault(
                (f.line, rule.kind, f.message),
                Violation(relpath, f.line, rule.kind, f.message, source),
            )
    return sorted(found.values(), key=lambda v: (v.line, v.rule))


def _coverage_violations(files: list[str], rules: list[Rule]) -> list[Violation]:
    """A must_import rule that matches too few files is a violation (a renamed script must not pass)."""
    missing = []
    for rule in rules:
        if isinstance(rule, MustImport):
            count = sum(1 for relpath in files if rule.applies_to(relpath))
            if count < rule.min_files:
                where = ", ".join(rule.files)
                message = f"only {count} checked file(s) match {where}; expected at least {rule.min_files}"
                missing.append(Violation(where, 0, rule.kind, message, None))
    return missing


def check_tree(root: Path, options: PolicyOptions) -> PolicyReport:
    """Run the policy over the files under `root` that `options` selects."""
    files = collect_files(root, options.include, options.exclude)
    violations = _coverage_violations(files, options.rules)
    for relpath in files:
        violations.extend(check_file(root, relpath, options.rules))
    return PolicyReport(files_checked=len(files), violations=tuple(violations))


def _result(root: Path, report: PolicyReport, cap: int) -> GateResult:
    """Turn a policy report into a gate result with capped evidence."""
    total = len(report.violations)
    evidence = {
        "root": str(root),
        "files_checked": report.files_checked,
        "violations_total": total,
        "violations": [v.as_dict() for v in report.violations[:cap]],
        "truncated": total > cap,
    }
    metrics = {"violations": float(total), "files_checked": float(report.files_checked)}
    if total == 0:
        summary = f"policy holds in {report.files_checked} file(s)"
        return GateResult(GateStatus.PASS, summary, evidence, metrics)
    first = report.violations[0]
    summary = f"{total} policy violation(s) in {report.files_checked} file(s); first: {first.file}:{first.line} {first.message}"
    return GateResult(GateStatus.FAIL, summary, evidence, metrics)


@gate_kind
class PolicyGate(Gate[PolicyOptions]):
    """Passes when every checked file keeps every rule."""

    kind: ClassVar[str] = "policy"
    options_model: ClassVar[type[PolicyOptions]] = PolicyOptions

    @property
    def rechecks_every_phase(self) -> bool:
        """As the options say (`recheck = "every_phase"`)."""
        return self.options is not None and self.options.recheck == "every_phase"

    def check(self, options: PolicyOptions, context: GateContext) -> GateResult:
        """Check the tree under the options' root."""
        root = context.resolve(options.root)
        if not root.is_dir():
            summary = f"policy root {root} is not a folder"
            return GateResult(GateStatus.FAIL, summary, {"root": str(root), "error": summary})
        report = check_tree(root, options)
        if report.files_checked == 0:
            summary = f"no file under {root} matches include {options.include} (exclude {options.exclude})"
            return GateResult(
                GateStatus.FAIL, summary, {"root": str(root), "error": summary, "files_checked": 0}
            )
        return _result(root, report, options.max_reported)
