"""Built-in phase 0: record the code, software and hardware a session ran with (`session_versions.json`)."""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import importlib.util
import json
import os
import platform
import re
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from phasegate import __version__
from phasegate.floor.events import reporter
from phasegate.pipeline.files import atomic_write_text

FORMAT_VERSION = 1
ML_PACKAGES = ("torch", "transformers", "bitsandbytes", "peft", "accelerate")
NOT_AVAILABLE = "N/A"


def utc_timestamp(now: datetime | None = None) -> str:
    """An ISO 8601 UTC timestamp ending in `Z`."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def package_version(name: str) -> str | None:
    """The installed version of a distribution, or None when it is absent."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def pip_freeze() -> list[str]:
    """Installed distributions as sorted `name==version` lines, read from metadata rather than by running pip."""
    lines: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        # The first copy on sys.path is the one imports use, so it wins over shadowed ones.
        lines.setdefault(re.sub(r"[-_.]+", "-", name).lower(), f"{name}=={dist.version}")
    return sorted(lines.values(), key=str.lower)


def python_info() -> dict[str, str]:
    """The interpreter's version, implementation, path and platform."""
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
    }


def redact_url(url: str) -> str:
    """Drop credentials from an http(s) remote URL so tokens never reach a shared record."""
    try:
        parts = urlsplit(url)
        if "@" in parts.netloc and (
            parts.scheme in ("http", "https") or parts.password is not None
        ):
            return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))
    except ValueError:
        return "<unparsable url>"
    return url


def _git_state(repo: Any, git: Any) -> dict[str, Any]:
    """Commit, branch, dirty flag (staged or unstaged changes to tracked files) and remotes of a repository."""
    info: dict[str, Any] = {"available": True, "root": repo.working_tree_dir or repo.git_dir}
    info["detached"] = repo.head.is_detached
    info["branch"] = None if info["detached"] else repo.head.reference.name
    if repo.head.is_valid():
        commit = repo.head.commit
        info |= {"commit": commit.hexsha, "commit_date": utc_timestamp(commit.committed_datetime)}
    else:
        info |= {"commit": None, "note": "no commits yet"}
    try:
        info["dirty"] = repo.is_dirty(index=True, working_tree=True, untracked_files=False)
        info["untracked_files"] = len(repo.untracked_files)
    except git.GitCommandError as exc:
        info["dirty"] = None
        info["dirty_error"] = str(exc).strip()
    info["remotes"] = {remote.name: [redact_url(u) for u in remote.urls] for remote in repo.remotes}
    return info


def git_info(repo_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The git state of the repository holding `repo_dir`; anything amiss is recorded, never raised."""
    try:
        import git
    except ImportError as exc:  # GitPython refuses to import when no git executable is found
        return {"available": False, "reason": f"GitPython cannot run: {exc}"}
    try:
        with git.Repo(repo_dir, search_parent_directories=True) as repo:
            return _git_state(repo, git)
    except git.NoSuchPathError:
        return {"available": False, "reason": f"{repo_dir} does not exist"}
    except git.InvalidGitRepositoryError:
        return {"available": False, "reason": f"not a git repository: {repo_dir}"}
    except (git.GitError, ValueError, TypeError, OSError) as exc:
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}"}


def ml_packages() -> dict[str, str | None]:
    """Versions of the ML stack read from metadata (None when absent), so nothing heavy is imported."""
    return {name: package_version(name) for name in ML_PACKAGES}


def cuda_info() -> dict[str, Any]:
    """torch's CUDA runtime and whether it sees a device; torch is imported only when installed."""
    if importlib.util.find_spec("torch") is None:
        return {"torch_installed": False}
    try:
        import torch

        available = torch.cuda.is_available()
        return {
            "torch_installed": True,
            "runtime": torch.version.cuda,
            "available": available,
            "device_count": torch.cuda.device_count() if available else 0,
            "cudnn": torch.backends.cudnn.version() if available else None,
        }
    except Exception as exc:  # a broken CUDA install must not lose the rest of the record
        return {"torch_installed": True, "error": f"{type(exc).__name__}: {exc}"}


# The lowest versions the model code works with; pyproject.toml declares the same floors (a test keeps them
# equal) and says which API sets each one. Checked at every model load, so a pod's too-old library is an
# exit 2 that names it rather than a TypeError deep inside from_pretrained.
LIBRARY_FLOORS = {"transformers": "4.56", "peft": "0.18", "accelerate": "1.1"}


def version_floor_problems(floors: dict[str, str] | None = None) -> dict[str, str]:
    """For each library of `floors` that is absent or older than its floor, what is wrong (empty when all are fine)."""
    from packaging.version import InvalidVersion, Version

    problems = {}
    for name, floor in (floors or LIBRARY_FLOORS).items():
        installed = package_version(name)
        try:
            too_old = installed is not None and Version(installed) < Version(floor)
        except InvalidVersion:
            continue  # a local build with an odd version string: let it try
        if installed is None:
            problems[name] = f"{name} is not installed (phasegate needs {name}>={floor})"
        elif too_old:
            problems[name] = f"{name} {installed} is installed, but phasegate needs {name}>={floor}"
    return problems


def _cuda_init_error(torch: Any) -> str | None:
    """The error `torch.cuda.init()` raises, as `Type: message`, or None when CUDA initialises."""
    try:
        torch.cuda.init()
    except Exception as exc:  # AssertionError on a CPU build, RuntimeError on a driver mismatch, …
        return f"{type(exc).__name__}: {exc}"
    return None


def _driver_line(nvml: Any = None) -> str:
    """The NVIDIA driver NVML reports, or that there is none."""
    gpu = gpu_info(nvml)
    if "driver" not in gpu:
        return "no NVIDIA driver found"
    return f"NVIDIA driver {gpu['driver']} (supports CUDA {gpu['cuda_driver']}, {gpu['count']} GPU(s))"


def cuda_status(nvml: Any = None) -> tuple[bool, str]:
    """Whether CUDA is usable by torch here, and one line saying what torch, torch.cuda and the driver report."""
    import torch

    available = torch.cuda.is_available()
    count = torch.cuda.device_count() if available else 0
    init_error = _cuda_init_error(torch)
    usable = available and count > 0 and init_error is None
    parts = [
        f"torch {torch.__version__} (CUDA build {torch.version.cuda})",
        f"torch.cuda.is_available() = {available}, device_count() = {count}",
        *([f"torch.cuda.init() failed: {init_error}"] if init_error else []),
        _driver_line(nvml),
    ]
    return usable, "; ".join(parts)


def _nvml_reason(exc: BaseException) -> str:
    """Describe an NVML failure by its class (e.g. NVMLError_LibraryNotFound) and message."""
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class Unavailable:
    """An NVML field that could not be read, with the reason."""

    reason: str

    def __str__(self) -> str:
        return f"{NOT_AVAILABLE} ({self.reason})"


def _query(fn: Callable[..., Any], *args: Any) -> Any:
    """Call one NVML function, returning Unavailable instead of raising."""
    try:
        value = fn(*args)
    except (
        Exception
    ) as exc:  # the bindings raise NVMLError subclasses and, on odd drivers, plain errors
        return Unavailable(_nvml_reason(exc))
    return value.decode() if isinstance(value, bytes) else value


def _shown(value: Any, convert: Callable[[Any], Any] = lambda v: v) -> Any:
    """A field for the record: converted when read, `N/A (<reason>)` when not."""
    return str(value) if isinstance(value, Unavailable) else convert(value)


def _device(nvml: Any, index: int) -> dict[str, Any]:
    """Name, memory and identity of one GPU."""
    handle = _query(nvml.nvmlDeviceGetHandleByIndex, index)
    if isinstance(handle, Unavailable):
        return {"index": index, "error": str(handle)}
    return {
        "index": index,
        "name": _shown(_query(nvml.nvmlDeviceGetName, handle)),
        "uuid": _shown(_query(nvml.nvmlDeviceGetUUID, handle)),
        "memory_total_mib": _shown(
            _query(nvml.nvmlDeviceGetMemoryInfo, handle), lambda m: m.total // 2**20
        ),
        "compute_capability": _shown(
            _query(nvml.nvmlDeviceGetCudaComputeCapability, handle), lambda c: ".".join(map(str, c))
        ),
    }


def _cuda_driver_version(nvml: Any) -> str:
    """The highest CUDA version the driver supports, as `12.2`."""
    return _shown(
        _query(nvml.nvmlSystemGetCudaDriverVersion), lambda raw: f"{raw // 1000}.{raw % 1000 // 10}"
    )


def gpu_info(nvml: Any = None) -> dict[str, Any]:
    """GPUs seen by NVML, or `available: false` with the reason; never raises."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError as exc:
            return {"available": False, "reason": f"nvidia-ml-py is not installed: {exc}"}
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded, …
        return {"available": False, "reason": _nvml_reason(exc)}
    try:
        count = _query(nvml.nvmlDeviceGetCount)
        if isinstance(count, Unavailable):
            return {"available": False, "reason": count.reason}
        return {
            "available": count > 0,
            "driver": _shown(_query(nvml.nvmlSystemGetDriverVersion)),
            "cuda_driver": _cuda_driver_version(nvml),
            "count": count,
            "devices": [_device(nvml, index) for index in range(count)],
        }
    finally:
        _query(nvml.nvmlShutdown)


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    """The reference logger's flat fields, for checkpoints and quick reading."""
    devices = record["gpu"].get("devices") or [{}]
    return {
        "git_sha": record["git"].get("commit"),
        "python_version": record["python"]["version"],
        **{name: record["packages"][name] for name in ML_PACKAGES},
        "cuda_version": record["cuda"].get("runtime"),
        "gpu_name": devices[0].get("name") if record["gpu"].get("available") else None,
    }


def collect_versions(
    repo_dir: str | os.PathLike[str] = ".", *, nvml: Any = None, now: datetime | None = None
) -> dict[str, Any]:
    """Everything phase 0 records, as a JSON-ready dict (absent pieces are recorded, not raised)."""
    record: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "timestamp": utc_timestamp(now),
        "hostname": socket.gethostname(),
        "phasegate_version": __version__,
        "python": python_info(),
        "git": git_info(repo_dir),
        "packages": ml_packages(),
        "cuda": cuda_info(),
        "gpu": gpu_info(nvml),
        "pip_freeze": pip_freeze(),
    }
    record["packages_absent"] = [
        name for name, version in record["packages"].items() if version is None
    ]
    record["summary"] = _summary(record)
    return record


def write_versions(
    path: str | os.PathLike[str], repo_dir: str | os.PathLike[str] = ".", **collect: Any
) -> dict[str, Any]:
    """Collect the versions record and write it atomically to `path` as JSON; return the record."""
    record = collect_versions(repo_dir, **collect)
    atomic_write_text(Path(path), json.dumps(record, indent=2) + "\n")
    return record


def _parser() -> argparse.ArgumentParser:
    """The command line of the versions phase."""
    parser = argparse.ArgumentParser(
        prog="python -m phasegate.pipeline.versions",
        description="Record git, Python, package, CUDA and GPU versions as JSON.",
    )
    parser.add_argument(
        "--out", default="-", help="file to write atomically; '-' (default) prints to stdout"
    )
    parser.add_argument(
        "--repo", default=".", help="folder inside the git repository to describe (default: .)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the versions phase and return its exit code: 0 written, 1 cannot write (argparse exits 2 on bad usage)."""
    args = _parser().parse_args(argv)
    if args.out == "-":
        print(json.dumps(collect_versions(args.repo), indent=2))
        return 0
    out = Path(args.out)
    try:
        record = write_versions(out, args.repo)
    except OSError as exc:
        print(f"error: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    reporter().artifact(out)
    summary = record["summary"]
    print(
        f"versions written to {out} (git {summary['git_sha'] or 'n/a'}, gpu {summary['gpu_name'] or 'none'})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
