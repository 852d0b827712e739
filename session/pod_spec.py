"""The `[pod]` table and what `check` and `run` ask of it: a pod phasegate can stop from where it runs."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from phasegate.floor.errors import SpecError
from phasegate.session.spec_errors import describe_problem

RUNPOD_POD_ID = "RUNPOD_POD_ID"
RUNPODCTL = "runpodctl"
# The SDK is asked in a child process, as the CLI is: bounded by the same timeout, a failure is an exit code.
_SDK_STOP = ("import os, runpod; runpod.api_key = os.environ.get('RUNPOD_API_KEY') or runpod.api_key; "
             "runpod.stop_pod(os.environ['RUNPOD_POD_ID'])")


class PodSpec(BaseModel):
    """The `[pod]` table: stop the pod phasegate runs on while nobody is needed, so that it stops billing."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    provider: Literal["runpod", "command"] = Field(description="`runpod`: `runpodctl stop pod $RUNPOD_POD_ID` (the `runpod` Python SDK when runpodctl is not on PATH); `command`: the `stop` argv, for any other cloud.")
    stop: list[str] = Field(default_factory=list, description="With provider = \"command\": the argv that stops this machine (no shell, no placeholders), run in the session folder with PHASEGATE_RUN_DIR set.")
    release_after_min: float = Field(5.0, ge=0, description="Minutes a paused run waits for an operator (an approval in that time goes on without a resume) before the pod is stopped.")
    stop_on: list[Literal["stopped", "completed"]] = Field(default_factory=list, description="Also stop the pod, after the final checkpoint, when the run stops (`stopped`, not by a signal) or completes (`completed`).")

    @model_validator(mode="after")
    def _stop_matches_provider(self) -> PodSpec:
        if self.provider == "command" and not self.stop:
            raise ValueError('provider = "command" needs `stop`, the argv that stops this machine, e.g. '
                             'stop = ["gcloud", "compute", "instances", "stop", "my-vm"]')
        if self.provider == "command" and (not self.stop[0].strip() or self.stop[0].endswith("/")):
            raise ValueError(f"stop: {self.stop[0]!r} is not a program; write the program first")
        if self.provider != "command" and self.stop:
            raise ValueError(f'provider = "{self.provider}" knows how to stop its pod and takes no `stop`; '
                             'use provider = "command" to run your own')
        return self


class PodUnavailable(Exception):
    """The pod cannot be stopped from here; `key` is the `[pod]` key the message is about."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def stop_argv(pod: PodSpec, env: Mapping[str, str], session_dir: Path) -> list[str]:
    """The argv that stops this pod; raises PodUnavailable with what to do when there is none."""
    if pod.provider == "command":
        program = pod.stop[0]
        found = shutil.which(str(session_dir / program) if "/" in program else program, path=env.get("PATH"))
        if found is None:
            raise PodUnavailable("stop", f"program {program!r} cannot be started (not on PATH, missing or not "
                                         "executable); install it or fix `stop`")
        return list(pod.stop)
    pod_id = env.get(RUNPOD_POD_ID, "").strip()
    if not pod_id:
        raise PodUnavailable("provider", f"{RUNPOD_POD_ID} is not set, so phasegate cannot tell which pod to stop; "
                                         "run phasegate on the RunPod pod itself (RunPod sets it there), or remove "
                                         "the [pod] table")
    if (runpodctl := shutil.which(RUNPODCTL, path=env.get("PATH"))) is not None:
        return [runpodctl, "stop", "pod", pod_id]
    if importlib.util.find_spec("runpod") is not None:
        return [sys.executable, "-c", _SDK_STOP]
    raise PodUnavailable("provider", f"neither {RUNPODCTL} (on every RunPod pod) is on PATH nor the `runpod` Python "
                                     "SDK installed; install one (`pip install runpod`)")


def check_pod(pod: PodSpec | None, text: str, shown: str | Path, session_dir: Path,
              environ: Mapping[str, str] = os.environ) -> None:
    """Raise SpecError, with file and line, when the `[pod]` table could not stop the pod from here."""
    if pod is None:
        return
    try:
        stop_argv(pod, environ, session_dir)
    except PodUnavailable as exc:
        raise SpecError(describe_problem(text, str(shown), ("pod", exc.key), str(exc))) from None


def pod_warnings(*, release_when_paused: bool) -> list[str]:
    """What `check` warns of in the session file's pod settings: the deprecated `release_when_paused`."""
    if not release_when_paused:
        return []
    return ["[session] release_when_paused is deprecated and ignored: it only changed the accounting while the pod "
            "kept billing; add a [pod] table (provider = \"runpod\" or \"command\") to stop the pod on a pause"]
