"""The phase-side API and its schema: what a phase's child process may tell the controller.

A child reports on the file descriptor named by `PHASEGATE_EVENTS_FD`, one JSON object per
line. Without that variable (a script run by hand) every call is a no-op, so the same code
runs inside and outside a session. The child writes with `encode` and the controller reads
with `parse_line`: both go through the event classes below, so the two sides cannot drift.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)

from phasegate.floor.errors import ExitCode

EVENTS_FD_ENV = "PHASEGATE_EVENTS_FD"
# A phase that exits with this code asks the controller to stop the session (no retry).
EARLY_STOP_EXIT = ExitCode.STOPPED
# A longer line is refused unread: parsing a flood of huge lines would stall the controller.
MAX_LINE_BYTES = 64 * 1024
# Names (a metric, a step, a trigger) are labels, never text: longer ones are refused.
MAX_NAME_CHARS = 200
MAX_PATH_CHARS = 4096
# SQLite's INTEGER: the journal stores progress counts as one.
MAX_COUNT = 2**63 - 1
# Evidence is a table shown in an incident report, not a data dump.
MAX_EVIDENCE_DEPTH = 8


def _finite_number(value: Any) -> float:
    """Any finite JSON number (a bool included, as Python counts it); NaN, infinities and the rest are bad fields."""
    if not isinstance(value, int | float):
        raise ValueError("a metric's value is a number")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError("a metric's value is a finite number") from None
    if not math.isfinite(number):
        raise ValueError("a metric's value is a finite number")
    return number


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in a JSON value (counted without recursion)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
    return deepest


def _shallow(value: Any) -> Any:
    """Evidence nested at most MAX_EVIDENCE_DEPTH deep (its type is checked next)."""
    if _depth(value) > MAX_EVIDENCE_DEPTH:
        raise ValueError(f"evidence nests more than {MAX_EVIDENCE_DEPTH} levels deep")
    return value


Number = Annotated[float, BeforeValidator(_finite_number)]
Count = Annotated[StrictInt, Field(ge=0, le=MAX_COUNT)]
Name = Annotated[StrictStr, Field(min_length=1, max_length=MAX_NAME_CHARS)]
Evidence = Annotated[dict[str, JsonValue], BeforeValidator(_shallow)]


class ChildEvent(BaseModel):
    """One line a child sends: frozen, and readable by field name like the JSON object it came from."""

    model_config = ConfigDict(frozen=True)

    def __getitem__(self, key: str) -> Any:
        """A field by its JSON name (`event["type"]`)."""
        return getattr(self, key)


class ProgressEvent(ChildEvent):
    """`done` of `total` units of work, optionally within a named step."""

    type: Literal["progress"] = "progress"
    done: Count = 0
    total: Count = 0
    step: Name | None = None


class MetricEvent(ChildEvent):
    """One numeric metric of the phase."""

    type: Literal["metric"] = "metric"
    name: Name
    value: Number


class ArtifactEvent(ChildEvent):
    """A finished output file (an absolute path); the controller records it with its sha256."""

    type: Literal["artifact"] = "artifact"
    path: Annotated[StrictStr, Field(min_length=1, max_length=MAX_PATH_CHARS)]


class HeartbeatEvent(ChildEvent):
    """The phase is alive while it produces nothing else."""

    type: Literal["heartbeat"] = "heartbeat"


class StopEvent(ChildEvent):
    """The phase asks for an early stop (it then exits with EARLY_STOP_EXIT)."""

    type: Literal["stop"] = "stop"
    trigger: Name | None = None
    summary: StrictStr | None = None
    evidence: Evidence = Field(default_factory=dict)


class LogEvent(ChildEvent):
    """One human-readable line for the session's event stream."""

    type: Literal["log"] = "log"
    message: StrictStr = ""


class InvalidEvent(ChildEvent):
    """A line the controller cannot use: not JSON, no type, an unknown type or a bad field.

    Never sent by a child: `parse_line` makes it, so a bad line becomes a warning, never an error.
    The line is kept whole (up to MAX_LINE_BYTES): the journal masks secrets before it cuts it short.
    """

    type: Literal["invalid"] = "invalid"
    line: str
    error: str = "not a JSON object with a type"

    @property
    def journaled(self) -> dict[str, Any]:
        """What the journal keeps of it: why it was refused, and its line."""
        return {"error": self.error, "line": self.line}


SentEvent = ProgressEvent | MetricEvent | ArtifactEvent | HeartbeatEvent | StopEvent | LogEvent
_SENT: TypeAdapter[SentEvent] = TypeAdapter(Annotated[SentEvent, Field(discriminator="type")])
KNOWN_TYPES = frozenset(kind.model_fields["type"].default for kind in SentEvent.__args__)


def _unicode(value: Any) -> bool:
    """Whether every string in a parsed JSON value (keys included) can be written as UTF-8."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _problems(exc: ValidationError, limit: int = 3) -> str:
    """The first few field errors, as `progress.done: Input should be a valid integer`."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False)[:limit])


def parse_line(line: bytes) -> SentEvent | InvalidEvent:
    """The event one line of the events pipe holds; anything unusable becomes an InvalidEvent."""
    text = line[:MAX_LINE_BYTES].decode("utf-8", errors="replace")
    if len(line) > MAX_LINE_BYTES:
        return InvalidEvent(line=text, error=f"line longer than {MAX_LINE_BYTES} bytes")
    try:
        received = json.loads(line)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep to read
        return InvalidEvent(line=text, error="not JSON")
    if not isinstance(received, dict) or not isinstance(received.get("type"), str):
        return InvalidEvent(line=text)
    if not _unicode(received):  # a lone surrogate (`"\ud800"`) cannot be stored, written or shown
        return InvalidEvent(line=text, error="text that is not valid Unicode (a lone surrogate)")
    if received["type"] not in KNOWN_TYPES:  # the type itself stays in the line, where it is masked
        return InvalidEvent(line=text, error="unknown event type")
    try:
        return _SENT.validate_python(received)
    except ValidationError as exc:
        return InvalidEvent(line=text, error=_problems(exc))


def encode(event: ChildEvent) -> str:
    """The event as one JSON line (without its newline), every field of its class included."""
    # Python mode, not JSON mode: a NaN metric stays NaN (JSON mode would write null).
    return json.dumps(event.model_dump(warnings=False), separators=(",", ":"))


class ChildReporter:
    """Writes progress, metric, artifact, heartbeat and log events to the controller."""

    def __init__(self, fd: int | None = None) -> None:
        if fd is None:
            raw = os.environ.get(EVENTS_FD_ENV)
            fd = int(raw) if raw and raw.isdigit() else None
        self._stream = os.fdopen(fd, "w", buffering=1, closefd=False) if fd is not None else None

    def _emit(self, kind: type[ChildEvent], **fields: Any) -> None:
        if self._stream is None:
            return
        # Not validated here: a phase's report must never crash the phase; the controller validates.
        self._stream.write(encode(kind.model_construct(**fields)) + "\n")
        self._stream.flush()

    def progress(self, done: int, total: int, step: str | None = None) -> None:
        """Report `done` of `total` units of work (optionally within a named step)."""
        self._emit(ProgressEvent, done=done, total=total, step=step)

    def metric(self, name: str, value: float) -> None:
        """Report one numeric metric of this phase."""
        self._emit(MetricEvent, name=name, value=value)

    def artifact(self, path: str | Path) -> None:
        """Declare a finished output file; the controller records it with its sha256."""
        self._emit(ArtifactEvent, path=str(Path(path).resolve()))

    def heartbeat(self) -> None:
        """Say the phase is alive while it produces nothing else."""
        self._emit(HeartbeatEvent)

    def early_stop(self, trigger: str, summary: str, evidence: dict[str, Any] | None = None) -> None:
        """Ask for an early stop (then exit with EARLY_STOP_EXIT): the session stops, no retry."""
        self._emit(StopEvent, trigger=trigger, summary=summary, evidence=evidence or {})

    def log(self, message: str) -> None:
        """Send one human-readable line to the session's event stream."""
        self._emit(LogEvent, message=message)


_default: ChildReporter | None = None


def reporter() -> ChildReporter:
    """The process-wide reporter, created on first use."""
    global _default
    if _default is None:
        _default = ChildReporter()
    return _default
