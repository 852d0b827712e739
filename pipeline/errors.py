"""The pipeline's errors: each message says what went wrong and what to do about it."""

from __future__ import annotations

from typing import Any

from phasegate.floor.errors import ExitCode

# The controller's own codes (the phases of pipeline/ import these names).
EXIT_INVALID_INPUT = ExitCode.INVALID_INPUT
EXIT_STOPPED = ExitCode.STOPPED
EXIT_INTERNAL_ERROR = ExitCode.INTERNAL_ERROR


class PipelineError(Exception):
    """Base class of errors a built-in phase raises on purpose; the message is actionable."""

    exit_code: int = EXIT_INVALID_INPUT


class ModelLoadError(PipelineError):
    """A model or tokenizer cannot be loaded from the path the session file gives."""


class CudaRequiredError(PipelineError):
    """The requested work needs a CUDA GPU and none is available."""


class PhaseInputError(PipelineError):
    """A phase's context file or parameters cannot be used as they are."""


class ContaminationError(PipelineError):
    """A contamination check failed: the model is not a clean base model in completion mode."""

    exit_code = EXIT_STOPPED

    def __init__(self, message: str, evidence: dict[str, Any]) -> None:
        super().__init__(message)
        self.evidence = evidence
