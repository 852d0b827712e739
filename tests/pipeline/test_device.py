"""No silent CPU fallback: a GPU session without usable CUDA stops at its first model phase, saying why."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from phasegate.journal.events import EventKind
from phasegate.pipeline import versions
from phasegate.pipeline.context import PhaseContext
from phasegate.pipeline.errors import CudaRequiredError
from phasegate.pipeline.model.spec import ModelSpec
from tests.conftest import events_of, run_cli, status_json

# This machine's torch is a CPU build: CUDA is never usable here.
NO_CUDA = ("torch.cuda.is_available() = False, device_count() = 0",
           "torch.cuda.init() failed: AssertionError: Torch not compiled with CUDA enabled")


def session(model: Path, *, session_extra: str = "", device: str = "auto") -> str:
    return (f'[session]\nname = "dev"\n{session_extra}\n\n[model]\npath = "{model}"\ndevice = "{device}"\n\n'
            '[[phases]]\nid = "prepare"\nrun = ["true"]\n\n'
            '[[phases]]\nid = "load"\nkind = "load_check"\nretries = 2\n\n'
            '[[phases]]\nid = "after"\nrun = ["true"]\n')


@pytest.mark.parametrize(("device", "session_extra"), [("cuda", ""), ("auto", "gpu_hourly_usd = 2.0"),
                                                       ("auto", 'gpu = "H100"')])
def test_gpu_session_without_cuda_stops_at_the_first_model_phase(tmp_path, tiny_model_dir, device,
                                                                 session_extra):
    (tmp_path / "s.toml").write_text(session(tiny_model_dir, device=device, session_extra=session_extra))
    started = time.monotonic()
    result = run_cli("run", tmp_path / "s.toml", "--headless", "--run-dir", tmp_path / "run")
    elapsed = time.monotonic() - started
    assert elapsed < 30, f"took {elapsed:.1f} s"
    # The phase's invalid input is the session's: exit 2 with its message, no retry (none would find CUDA).
    assert result.returncode == 2, result.stderr
    assert "error: phase load: " in result.stderr and "CUDA is not usable here" in result.stderr
    assert "Traceback" not in result.stderr
    status = status_json(tmp_path / "run")
    assert [p["state"] for p in status["phases"]] == ["passed", "failed", "pending"]
    assert status["phases"][1]["attempts"] == 1 and status["stop_trigger"] == "invalid_input"
    assert status["next_action"]["action"] == "resume"  # once CUDA works (or the plan is amended) it goes on
    log = (tmp_path / "run" / "logs" / "load.log").read_text()
    assert '"exit_code": 2' in log and "Traceback" not in log
    import torch

    assert f"torch {torch.__version__} (CUDA build None)" in log
    for line in NO_CUDA:
        assert line in log
    assert "no NVIDIA driver found" in log
    assert "Install the CUDA build of torch that matches the driver" in log
    assert "set [model] device = 'auto' or 'cpu' and remove [session] gpu_hourly_usd and gpu" in log
    report = Path(status["incident"]).read_text()
    assert "exit_code: 2" in report and "not usable here" in report


def test_auto_on_a_cpu_session_runs_on_cpu_and_says_so(tmp_path, tiny_model_dir):
    (tmp_path / "s.toml").write_text(session(tiny_model_dir))
    result = run_cli("run", tmp_path / "s.toml", "--headless", "--run-dir", tmp_path / "run", timeout=300)
    assert result.returncode == 0, result.stderr
    log = (tmp_path / "run" / "logs" / "load.log").read_text()
    assert "warning: running on CPU: no usable CUDA (torch " in log and NO_CUDA[0] in log
    messages = [e.data["message"] for e in events_of(tmp_path / "run", EventKind.LOG) if e.phase == "load"]
    assert any(m.startswith("warning: running on CPU: no usable CUDA") for m in messages)
    metrics = status_json(tmp_path / "run")
    assert metrics["phases"][1]["state"] == "passed"
    assert [e.data for e in events_of(tmp_path / "run", EventKind.METRIC)
            if e.phase == "load" and e.data["name"] == "cpu_fallback"][0]["value"] == 1
    # The checkpoint's phase table says it where the GPU peak would be.
    row = next(line for line in (tmp_path / "run" / "CHECKPOINT.md").read_text().splitlines() if "| load |" in line)
    assert row.endswith("| on CPU: no usable CUDA |")


def context(tmp_path: Path, device: str, gpu_expected: bool) -> PhaseContext:
    return PhaseContext(phase_id="p", kind="load_check", run_dir=tmp_path, session_dir=tmp_path,
                        artifacts_dir=tmp_path, model=ModelSpec(path="m", device=device),
                        gpu_expected=gpu_expected)


def test_a_gpu_session_turns_auto_into_cuda_but_keeps_an_explicit_cpu(tmp_path):
    assert context(tmp_path, "auto", True).require_model().device == "cuda"
    assert context(tmp_path, "auto", False).require_model().device == "auto"
    assert context(tmp_path, "cpu", True).require_model().resolved_device() == "cpu"
    with pytest.raises(CudaRequiredError, match="CUDA is not usable here"):
        context(tmp_path, "auto", True).require_model().resolved_device()


class FakeNvml:
    """NVML of a machine whose driver is there (whatever torch thinks)."""

    def nvmlInit(self): ...
    def nvmlShutdown(self): ...
    def nvmlDeviceGetCount(self): return 1
    def nvmlSystemGetDriverVersion(self): return "550.54.14"
    def nvmlSystemGetCudaDriverVersion(self): return 12040
    def nvmlDeviceGetHandleByIndex(self, index): raise RuntimeError("not needed")


def test_cuda_that_torch_sees_but_cannot_initialise_is_not_usable(monkeypatch):
    import torch

    def broken_init():
        raise RuntimeError("The NVIDIA driver on your system is too old (found version 11040)")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "init", broken_init)
    usable, report = versions.cuda_status(FakeNvml())
    assert not usable
    assert "torch.cuda.is_available() = True, device_count() = 1" in report
    assert "torch.cuda.init() failed: RuntimeError: The NVIDIA driver on your system is too old" in report
    assert "NVIDIA driver 550.54.14 (supports CUDA 12.4, 1 GPU(s))" in report
