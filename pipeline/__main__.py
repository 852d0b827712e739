"""`python -m phasegate.pipeline KIND --context FILE`: run one built-in phase as a child process."""

from __future__ import annotations

import argparse
import json
import sys
import traceback

from phasegate.floor.errors import ExitCode
from phasegate.pipeline.errors import ContaminationError, PipelineError


def _parser() -> argparse.ArgumentParser:
    """The command line: a phase kind and its context file."""
    from phasegate.pipeline.phases import PHASES

    parser = argparse.ArgumentParser(
        prog="python -m phasegate.pipeline",
        description=f"Run one built-in phase. Exit codes: {ExitCode.COMPLETED:d} done, "
        f"{ExitCode.INTERNAL_ERROR:d} internal error, {ExitCode.INVALID_INPUT:d} invalid input (context, params, "
        f"model path, data), {ExitCode.STOPPED:d} stopped (contamination, LoRA parameters without gradients).",
    )
    parser.add_argument("kind", choices=sorted(PHASES), help="the built-in phase to run")
    parser.add_argument("--context", required=True, help="JSON file written by the controller")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the phase; stdout gets one JSON line with the outcome, diagnostics go to stderr."""
    from phasegate.pipeline.context import PhaseContext
    from phasegate.pipeline.phases import PHASES

    args = _parser().parse_args(argv)
    try:
        ctx = PhaseContext.from_file(args.context)
        code = PHASES[args.kind](ctx)
    except ContaminationError as error:
        print(f"STOPPED: {error}", file=sys.stderr)
        print(json.dumps(error.evidence, indent=2, default=str), file=sys.stderr)
        code = error.exit_code
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        code = error.exit_code
    except Exception:  # an unexpected failure: keep the traceback for the phase log
        traceback.print_exc()
        code = ExitCode.INTERNAL_ERROR
    print(json.dumps({"phase": args.kind, "exit_code": code}))
    return code


if __name__ == "__main__":
    sys.exit(main())
