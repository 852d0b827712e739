"""What one attempt's child tells the controller: journaled (masked, bounded), shown to the watchdog, collected."""

from __future__ import annotations

from pathlib import Path

from phasegate.floor.events import (
    ArtifactEvent,
    ChildEvent,
    HeartbeatEvent,
    InvalidEvent,
    LogEvent,
    MetricEvent,
    ProgressEvent,
    StopEvent,
)
from phasegate.journal.events import EventKind
from phasegate.journal.store import Journal
from phasegate.session.artifacts import MAX_DECLARED, refusal
from phasegate.session.watchdog import Watchdog


class PhaseEvents:
    """The events of one attempt: the artifacts it declared and its early-stop request, if any."""

    def __init__(self, journal: Journal, watchdog: Watchdog, phase_id: str, artifacts: Path) -> None:
        self.journal = journal
        self.watchdog = watchdog
        self.phase_id = phase_id
        self.artifacts = artifacts
        self.artifact_paths: list[Path] = []
        self.stop_request: StopEvent | None = None

    def handle(self, event: ChildEvent) -> None:
        """Journal one event (the journal masks, cuts and throttles it) and tell the watchdog."""
        phase_id = self.phase_id
        self.watchdog.activity()
        match event:
            case ProgressEvent(done=done, total=total, step=step):  # the journal throttles it, keeping the latest
                self.journal.record_progress(phase_id, done, total, step)
            case MetricEvent(name=name, value=value):
                self.journal.record_metric(phase_id, name, value)
                self.watchdog.metric(name, value)
            case ArtifactEvent(path=path):
                self._declare(path)
            case StopEvent(trigger=trigger, summary=summary):
                self.stop_request = event  # journaled within the attempt's limit, like a log line
                self.journal.record_message(EventKind.EARLY_STOP_REQUESTED, phase_id,
                                            {"trigger": trigger, "summary": summary})
            case HeartbeatEvent():
                self.journal.touch(phase_id)
            case LogEvent(message=message):  # the journal masks, cuts it short, and counts it past its limit
                self.journal.record_message(EventKind.LOG, phase_id, {"message": message})
            case InvalidEvent():  # a warning, bounded in size and in number; the phase goes on
                self.journal.record_warning(EventKind.INVALID_EVENT, phase_id, event.journaled)

    def _declare(self, path: str) -> None:
        if (problem := refusal(Path(path), self.artifacts)) is not None:  # never read: /etc/shadow is no output
            self.journal.record_warning(EventKind.ARTIFACT_REFUSED, self.phase_id, {"path": path, "error": problem})
        elif len(self.artifact_paths) < MAX_DECLARED:  # the folder's walk finds every file anyway
            self.artifact_paths.append(Path(path))
