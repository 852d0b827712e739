"""The pipeline's errors: each message says what went wrong and what to do about it."""

from __future__ import annotations

from typing import Any

# Exit codes match the controller's (phasegate.floor.errors.ExitCode) without importing it:
# pipeline/ may only use the small phase-context API of session/.
EXIT_INVALID_INPUT = 2
EXIT_STOPPED = 3


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
