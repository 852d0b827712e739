"""Gate kind `artifact`: outputs exist and are non-empty; JSONL rows validate against a named schema."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from phasegate.gates.base import Gate, GateContext, GateResult, GateStatus
from phasegate.gates.options import (
    GateOptions,
    PathTemplate,
    gate_kind,
)


class PilotRow(BaseModel):
    """A generated SFT example: a non-empty instruction and response (provenance fields may follow)."""

    model_config = ConfigDict(extra="allow")

    instruction: str = Field(min_length=1, description="The instruction the base model was given.")
    response: str = Field(min_length=1, description="The response kept for training.")


class InstructionRow(BaseModel):
    """A held-out test instruction (other fields may follow)."""

    model_config = ConfigDict(extra="allow")

    instruction: str = Field(min_length=1, description="The instruction to evaluate on.")


JSONL_SCHEMAS: dict[str, type[BaseModel]] = {
    "pilot_row": PilotRow,
    "instruction_row": InstructionRow,
}
"""Row schemas by name; phases and plugins add theirs with `register_schema`."""


def register_schema(name: str, model: type[BaseModel]) -> None:
    """Make a row model available to `artifact` gates as `schema = "<name>"`."""
    JSONL_SCHEMAS[name] = model


class JsonlCheck(GateOptions):
    """A JSONL file whose rows must validate."""

    path: PathTemplate = Field(description='JSONL file, e.g. "{artifacts}/pilot/pilot_data.jsonl".')
    schema_name: str = Field(
        alias="schema",
        description='Name of the row schema, e.g. "pilot_row" (instruction and response, both non-empty strings).',
    )
    min_rows: int = Field(
        default=1,
        ge=0,
        description="Fewest valid rows the file must hold (0 lets an empty file pass).",
    )
    max_reported: int = Field(
        default=10,
        ge=1,
        description="How many invalid rows the evidence lists (the total is always given).",
    )

    @field_validator("schema_name")
    @classmethod
    def _known_schema(cls, name: str) -> str:
        if name not in JSONL_SCHEMAS:
            raise ValueError(
                f"unknown JSONL schema {name!r}; known schemas: {', '.join(sorted(JSONL_SCHEMAS))}"
            )
        return name


class ArtifactOptions(GateOptions):
    """Options of an `artifact` gate."""

    files: list[PathTemplate] = Field(
        default_factory=list,
        description="Files that must exist and be non-empty; relative paths are from the session folder.",
    )
    jsonl: JsonlCheck | None = Field(
        default=None, description="A JSONL file whose rows must validate against a named schema."
    )

    @model_validator(mode="after")
    def _something_to_check(self) -> Self:
        if not self.files and self.jsonl is None:
            raise ValueError("an artifact gate needs `files`, `jsonl` or both")
        return self


def check_file(path: Path) -> dict[str, Any]:
    """Whether one file exists, is a regular file and has content."""
    if not path.exists():
        return {"path": str(path), "ok": False, "problem": "missing"}
    if not path.is_file():
        return {"path": str(path), "ok": False, "problem": "not a regular file"}
    size = path.stat().st_size
    return {
        "path": str(path),
        "ok": size > 0,
        "bytes": size,
        **({} if size else {"problem": "empty"}),
    }


@dataclass
class JsonlReport:
    """What scanning a JSONL file found."""

    rows: int = 0
    invalid_total: int = 0
    invalid: list[dict[str, Any]] = field(default_factory=list)


def _row_error(raw: bytes, model: type[BaseModel]) -> str | None:
    """Why one line is not a valid row, or None when it is."""
    try:
        row = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return f"not UTF-8: {exc.reason}"
    except json.JSONDecodeError as exc:
        return f"not JSON: {exc.msg} at column {exc.colno}"
    except RecursionError:
        return "nested too deep to read"
    if not isinstance(row, dict):
        return f"not a JSON object ({type(row).__name__})"
    try:
        model.model_validate(row)
    except ValidationError as exc:
        return "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
    return None


def scan_jsonl(path: Path, model: type[BaseModel], max_reported: int) -> JsonlReport:
    """Validate each non-blank line of a JSONL file, keeping the first invalid ones with line numbers."""
    report = JsonlReport()
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            error = _row_error(raw, model)
            if error is None:
                report.rows += 1
                continue
            report.invalid_total += 1
            if len(report.invalid) < max_reported:
                report.invalid.append({"line": line_number, "error": error})
    return report


def check_jsonl(check: JsonlCheck, path: Path) -> tuple[list[str], dict[str, Any]]:
    """Problems found in the JSONL file, and the evidence about it."""
    evidence: dict[str, Any] = {
        "path": str(path),
        "schema": check.schema_name,
        "min_rows": check.min_rows,
    }
    status = check_file(path)
    if not status["ok"] and status["problem"] != "empty":
        return [f"{path}: {status['problem']}"], evidence | {"problem": status["problem"]}
    try:
        report = scan_jsonl(path, JSONL_SCHEMAS[check.schema_name], check.max_reported)
    except OSError as exc:
        return [f"{path}: cannot be read: {exc.strerror or exc}"], evidence | {
            "problem": "unreadable"
        }
    evidence |= {
        "rows": report.rows,
        "invalid_rows": report.invalid_total,
        "first_invalid": report.invalid,
    }
    problems = []
    if report.invalid_total:
        first = report.invalid[0]
        problems.append(
            f"{path}: {report.invalid_total} invalid row(s), first at line {first['line']}: {first['error']}"
        )
    if report.rows < check.min_rows:
        problems.append(f"{path}: {report.rows} valid row(s), needs at least {check.min_rows}")
    return problems, evidence


def evaluate_artifacts(options: ArtifactOptions, resolve: Callable[[str], Path]) -> GateResult:
    """Check every declared file and the JSONL file; `resolve` maps a session path to a Path."""
    files = [check_file(resolve(path)) for path in options.files]
    problems = [f"{f['path']}: {f['problem']}" for f in files if not f["ok"]]
    evidence: dict[str, Any] = {"files": files}
    metrics: dict[str, float] = {"files_ok": float(sum(f["ok"] for f in files))}
    if options.jsonl is not None:
        jsonl_problems, evidence["jsonl"] = check_jsonl(options.jsonl, resolve(options.jsonl.path))
        problems += jsonl_problems
        for key in ("rows", "invalid_rows"):
            if key in evidence["jsonl"]:
                metrics[key] = float(evidence["jsonl"][key])
    evidence["problems"] = problems
    if problems:
        return GateResult(GateStatus.FAIL, "; ".join(problems), evidence, metrics)
    return GateResult(
        GateStatus.PASS, _pass_summary(files, evidence.get("jsonl")), evidence, metrics
    )


def _pass_summary(files: list[dict[str, Any]], jsonl: dict[str, Any] | None) -> str:
    """One line saying what was checked."""
    parts = [f"{len(files)} file(s) present and non-empty"] if files else []
    if jsonl is not None:
        parts.append(f"{Path(jsonl['path']).name}: {jsonl['rows']} valid {jsonl['schema']} row(s)")
    return "; ".join(parts)


@gate_kind
class ArtifactGate(Gate[ArtifactOptions]):
    """Passes when the phase's outputs exist, are non-empty and (for JSONL) validate."""

    kind: ClassVar[str] = "artifact"
    options_model: ClassVar[type[ArtifactOptions]] = ArtifactOptions

    def check(self, options: ArtifactOptions, context: GateContext) -> GateResult:
        """Check the declared outputs."""
        return evaluate_artifacts(options, context.resolve)
