"""GPU telemetry through NVML: one query wrapper that never raises, a sampler, and a scripted fake reader.

Every NVML call goes through `_query`, which returns None instead of raising, so a missing GPU, a
missing library or an unsupported field shows as "not available", never as a crash.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from phasegate.floor.processes import group_tree

FAKE_READER_ENV = "PHASEGATE_GPU_READER"  # "fake:<json file>": scripted samples, for tests and demos
MIB = 1024 * 1024


@dataclass(frozen=True)
class GpuSample:
    """One reading of one GPU (fields None when the driver does not report them)."""

    gpu: int
    available: bool
    reason: str | None = None
    name: str | None = None
    mem_used_mb: float | None = None
    mem_total_mb: float | None = None
    util_pct: float | None = None
    temp_c: float | None = None
    power_w: float | None = None
    proc_mem_mb: float | None = None  # memory of the phase's own processes, when the driver says

    @property
    def mem_fraction(self) -> float | None:
        if self.mem_used_mb is None or not self.mem_total_mb:
            return None
        return self.mem_used_mb / self.mem_total_mb


def not_available(reason: str) -> list[GpuSample]:
    return [GpuSample(gpu=0, available=False, reason=reason)]


class GpuReader(Protocol):
    def read(self, pids: Iterable[int]) -> list[GpuSample]: ...


def _query(fn: Callable[..., Any], *args: Any) -> Any:
    """Call one NVML function; None when it fails for any reason."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - NVML raises many error classes; each means "not available"
        return None


class NvmlReader:
    """Reads every visible GPU through pynvml; says why when there is nothing to read."""

    def __init__(self) -> None:
        self.reason: str | None = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
        except Exception as exc:  # noqa: BLE001 - no library, no driver, no GPU: all mean "not available"
            self._nvml = None
            self.reason = f"NVML unavailable: {exc}" if str(exc) else f"NVML unavailable: {type(exc).__name__}"

    def read(self, pids: Iterable[int]) -> list[GpuSample]:
        if self._nvml is None:
            return not_available(self.reason or "NVML unavailable")
        count = _query(self._nvml.nvmlDeviceGetCount) or 0
        if count == 0:
            return not_available("no GPU visible to NVML")
        wanted = set(pids)
        return [self._device(index, wanted) for index in range(count)]

    def _device(self, index: int, pids: set[int]) -> GpuSample:
        nvml = self._nvml
        handle = _query(nvml.nvmlDeviceGetHandleByIndex, index)
        memory = _query(nvml.nvmlDeviceGetMemoryInfo, handle)
        util = _query(nvml.nvmlDeviceGetUtilizationRates, handle)
        temp = _query(nvml.nvmlDeviceGetTemperature, handle, 0)  # 0 = NVML_TEMPERATURE_GPU
        power = _query(nvml.nvmlDeviceGetPowerUsage, handle)
        procs = _query(nvml.nvmlDeviceGetComputeRunningProcesses, handle) or []
        used_by_phase = [p.usedGpuMemory for p in procs if p.pid in pids and p.usedGpuMemory]
        name = _query(nvml.nvmlDeviceGetName, handle)
        return GpuSample(
            gpu=index, available=True, name=name.decode() if isinstance(name, bytes) else name,
            mem_used_mb=memory.used / MIB if memory else None, mem_total_mb=memory.total / MIB if memory else None,
            util_pct=float(util.gpu) if util else None, temp_c=float(temp) if temp is not None else None,
            power_w=power / 1000 if power is not None else None,
            proc_mem_mb=sum(used_by_phase) / MIB if used_by_phase else None,
        )


class ScriptedReader:
    """Replays samples from a JSON list (the last one repeats): a fake NVML for tests and the demo."""

    def __init__(self, path: Path) -> None:
        self._samples = [GpuSample(**{"gpu": 0, "available": True, **s}) for s in json.loads(Path(path).read_text())]
        self._next = 0

    def read(self, pids: Iterable[int]) -> list[GpuSample]:
        sample = self._samples[min(self._next, len(self._samples) - 1)]
        self._next += 1
        return [sample]


def default_reader(env: dict[str, str] | None = None) -> GpuReader:
    """The real NVML reader, unless the environment names a scripted one."""
    spec = (env if env is not None else os.environ).get(FAKE_READER_ENV, "")
    if spec.startswith("fake:"):
        return ScriptedReader(Path(spec.removeprefix("fake:")))
    return NvmlReader()


def process_group_pids(pgid: int) -> set[int]:
    """Pids of the phase tree whose process group is `pgid`: the group, every process with the tree's tag
    (escapees that called setsid included) and the orphans the controller adopted, as containment finds them."""
    members, _ = group_tree(pgid).members()
    return {member.pid for member in members}
