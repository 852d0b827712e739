"""Phase 0 (`pipeline/versions.py`): git state, packages, NVML fallbacks and the atomic JSON write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from phasegate import __version__
from phasegate.pipeline import versions
from phasegate.pipeline.versions import (
    collect_versions,
    git_info,
    gpu_info,
    main,
    redact_url,
    write_versions,
)


@pytest.fixture(scope="module")
def record(tmp_path_factory) -> dict:
    """One full record of a fresh repo (collected once: the first collection imports torch)."""
    return collect_versions(
        tmp_path_factory.mktemp("plain"), now=datetime(2025, 10, 4, 12, 0, tzinfo=UTC)
    )


def test_record_has_every_section(record: dict) -> None:
    assert record["timestamp"] == "2025-10-04T12:00:00Z"
    assert record["phasegate_version"] == __version__
    assert record["hostname"]
    assert record["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert record["python"]["implementation"] == "CPython"
    assert set(record["packages"]) == {
        "torch",
        "transformers",
        "bitsandbytes",
        "peft",
        "accelerate",
    }
    assert record["packages"]["torch"] == record["summary"]["torch"]
    freeze = record["pip_freeze"]
    assert freeze == sorted(freeze, key=str.lower)
    assert any(line.lower().startswith("pydantic==") for line in freeze)
    assert all("==" in line for line in freeze)
    json.dumps(record)


def test_absent_packages_are_recorded_as_absent(monkeypatch) -> None:
    real = versions.package_version
    monkeypatch.setattr(
        versions, "package_version", lambda name: None if name == "bitsandbytes" else real(name)
    )
    packages = versions.ml_packages()
    assert packages["bitsandbytes"] is None and packages["transformers"]


def test_cuda_without_a_gpu(record: dict) -> None:
    cuda = record["cuda"]
    assert cuda["torch_installed"] is True
    if not cuda["available"]:
        assert cuda["device_count"] == 0


def test_git_commit_branch_and_dirty_flag(tmp_path: Path, repo_with) -> None:
    repo = repo_with(tmp_path, {"train.py": "print('v1')\n"})
    info = git_info(tmp_path)
    assert info["available"] is True
    assert info["commit"] == repo.head.commit.hexsha
    assert (info["branch"], info["detached"], info["dirty"]) == ("main", False, False)
    (tmp_path / "train.py").write_text("print('v2')\n")
    (tmp_path / "new.py").write_text("")
    edited = git_info(tmp_path / ".")
    assert edited["dirty"] is True and edited["untracked_files"] == 1


def test_git_from_a_subfolder_detached_head_and_remotes(tmp_path: Path, repo_with) -> None:
    repo = repo_with(tmp_path, {"scripts/a.py": "x = 1\n"})
    repo.create_remote("origin", "https://user:ghp_secret@github.com/org/repo.git")
    repo.create_remote("mirror", "git@github.com:org/repo.git")
    repo.head.reference = repo.head.commit  # detach
    info = git_info(tmp_path / "scripts")
    assert info["root"] == str(tmp_path)
    assert (info["detached"], info["branch"]) == (True, None)
    assert info["commit"] == repo.head.commit.hexsha
    assert info["remotes"] == {
        "origin": ["https://***@github.com/org/repo.git"],
        "mirror": ["git@github.com:org/repo.git"],
    }


def test_repo_without_commits(tmp_path: Path, repo_with) -> None:
    repo_with(tmp_path)
    info = git_info(tmp_path)
    assert info["available"] is True and info["commit"] is None and info["note"] == "no commits yet"
    assert info["branch"] == "main"


def test_outside_a_git_repo_is_recorded_not_fatal(tmp_path: Path) -> None:
    assert git_info(tmp_path) == {"available": False, "reason": f"not a git repository: {tmp_path}"}
    assert git_info(tmp_path / "absent")["available"] is False


def test_nvml_on_this_machine_never_raises() -> None:
    gpu = gpu_info()
    if gpu["available"]:
        assert gpu["count"] >= 1 and gpu["devices"][0]["name"]
    else:
        assert gpu["reason"].startswith(
            "NVMLError"
        )  # e.g. NVMLError_LibraryNotFound: no driver here


class FakeNVMLError(Exception):
    """Stands in for pynvml.NVMLError in the fake below."""


def fake_nvml(*, init_error: bool = False) -> SimpleNamespace:
    """A stand-in for pynvml with one H100 whose UUID query fails (no GPU on this machine)."""

    def fail(*_args):
        raise FakeNVMLError("Not Supported")

    def init():
        if init_error:
            raise FakeNVMLError("Driver Not Loaded")

    return SimpleNamespace(
        NVMLError=FakeNVMLError,
        nvmlInit=init,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: 1,
        nvmlSystemGetDriverVersion=lambda: "550.54.15",
        nvmlSystemGetCudaDriverVersion=lambda: 12040,
        nvmlDeviceGetHandleByIndex=lambda i: f"handle{i}",
        nvmlDeviceGetName=lambda h: b"NVIDIA H100 80GB HBM3",
        nvmlDeviceGetUUID=fail,
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(total=81559 * 2**20),
        nvmlDeviceGetCudaComputeCapability=lambda h: (9, 0),
    )


def test_nvml_fields_fall_back_to_not_available() -> None:
    gpu = gpu_info(fake_nvml())
    assert (gpu["available"], gpu["driver"], gpu["cuda_driver"], gpu["count"]) == (
        True,
        "550.54.15",
        "12.4",
        1,
    )
    device = gpu["devices"][0]
    assert device["name"] == "NVIDIA H100 80GB HBM3"
    assert device["memory_total_mib"] == 81559 and device["compute_capability"] == "9.0"
    assert device["uuid"] == "N/A (FakeNVMLError: Not Supported)"
    assert gpu_info(fake_nvml(init_error=True)) == {
        "available": False,
        "reason": "FakeNVMLError: Driver Not Loaded",
    }


def test_summary_names_the_gpu(tmp_path: Path) -> None:
    record = collect_versions(tmp_path, nvml=fake_nvml())
    assert record["summary"]["gpu_name"] == "NVIDIA H100 80GB HBM3"


def test_write_is_valid_json_and_atomic(tmp_path: Path, repo_with, monkeypatch) -> None:
    repo = repo_with(tmp_path / "repo", {"a.py": "x = 1\n"})
    out = tmp_path / "artifacts/versions/session_versions.json"
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(versions.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    written = write_versions(out, tmp_path / "repo")
    assert json.loads(out.read_text()) == written
    assert written["git"]["commit"] == repo.head.commit.hexsha
    assert synced, "the temp file was not fsynced before the rename"
    assert sorted(p.name for p in out.parent.iterdir()) == ["session_versions.json"]

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(versions.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_versions(out, tmp_path / "repo")
    assert json.loads(out.read_text()) == written  # the old record survives whole
    assert sorted(p.name for p in out.parent.iterdir()) == ["session_versions.json"]  # no temp left


def test_main_writes_the_file_and_reports_a_bad_path(tmp_path: Path, capsys) -> None:
    out = tmp_path / "v.json"
    assert main(["--out", str(out), "--repo", str(tmp_path)]) == 0
    assert json.loads(out.read_text())["git"]["available"] is False
    assert capsys.readouterr().out == ""  # stdout stays clean for machine-readable use
    (tmp_path / "file").write_text("")
    assert main(["--out", str(tmp_path / "file" / "v.json")]) == 1
    assert "cannot write" in capsys.readouterr().err


def test_main_without_out_prints_the_record(tmp_path: Path, capsys) -> None:
    assert main(["--repo", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["format_version"] == 1


def test_credentials_in_remote_urls_are_redacted() -> None:
    assert (
        redact_url("https://x-access-token:ghs_abc@github.com/o/r") == "https://***@github.com/o/r"
    )
    assert redact_url("https://ghp_token@github.com/o/r") == "https://***@github.com/o/r"
    assert redact_url("ssh://git:pw@host/r.git") == "ssh://***@host/r.git"
    assert redact_url("ssh://git@host/r.git") == "ssh://git@host/r.git"
    assert redact_url("/srv/git/r.git") == "/srv/git/r.git"


def test_runs_as_a_module_and_declares_its_artifact(tmp_path: Path, repo_with) -> None:
    repo_with(tmp_path / "repo", {"a.py": "x = 1\n"})
    out = tmp_path / "session_versions.json"
    read_fd, write_fd = os.pipe()
    env = dict(os.environ, PHASEGATE_EVENTS_FD=str(write_fd))
    command = [
        sys.executable,
        "-m",
        "phasegate.pipeline.versions",
        "--out",
        str(out),
        "--repo",
        str(tmp_path / "repo"),
    ]
    done = subprocess.run(
        command, env=env, pass_fds=(write_fd,), capture_output=True, text=True, timeout=60
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as events:
        lines = [json.loads(line) for line in events]
    assert done.returncode == 0, done.stderr
    assert lines == [{"type": "artifact", "path": str(out.resolve())}]
    assert json.loads(out.read_text())["git"]["branch"] == "main"


def test_only_torch_is_imported_to_read_versions(tmp_path: Path) -> None:
    code = (
        "import sys; from phasegate.pipeline.versions import collect_versions; "
        f"collect_versions({str(tmp_path)!r}); "
        "print(sorted(m for m in ('transformers', 'bitsandbytes', 'peft', 'accelerate') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
