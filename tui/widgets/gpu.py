"""The GPU panel: memory as a bar and a sparkline, utilisation, temperature, power and peak."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import ProgressBar, Sparkline, Static

from phasegate.tui.format import DASH, gib
from phasegate.tui.view import RunView
from phasegate.tui.widgets import set_text


def _num(value: float | None, unit: str) -> str:
    return DASH if value is None else f"{value:.0f}{unit}"


def gpu_lines(view: RunView) -> tuple[str, str]:
    """The panel's title line and its stats line."""
    gpu = view.snapshot.gpu
    if not gpu.available:
        # A model phase that fell back to the CPU says so here too (device = "auto" without usable CUDA).
        fallback = [phase for phase, values in view.snapshot.metrics.items() if values.get("cpu_fallback")]
        ran = f" · {', '.join(fallback)} ran on the CPU: no usable CUDA" if fallback else ""
        return f"GPU: not available ({gpu.reason or 'unknown reason'}){ran}", ""
    # Memory first: the name is what a narrow panel can best afford to cut.
    title = f"mem {gib(gpu.mem_used_mb)}/{gib(gpu.mem_total_mb)} GiB · {gpu.name or 'GPU 0'}"
    stats = (f"util {_num(gpu.util_pct, '%')} · {_num(gpu.temp_c, '°C')} · {_num(gpu.power_w, 'W')}"
             f" · peak {gib(gpu.peak_mem_mb)} GiB")
    return title, stats


class GpuPanel(Vertical):
    """Live GPU memory and health from the journal's samples; says why when there is no GPU."""

    view: reactive[RunView | None] = reactive(None)
    """The latest view of the run (bound to the app's)."""

    def compose(self) -> ComposeResult:
        yield Static("GPU: waiting for the first reading", id="gpu-title")
        yield ProgressBar(total=100, show_eta=False, id="gpu-mem")
        yield Sparkline([], id="gpu-spark")
        yield Static("", id="gpu-stats")

    def watch_view(self, view: RunView | None) -> None:
        if view is None:
            return
        gpu = view.snapshot.gpu
        title, stats = gpu_lines(view)
        set_text(self.query_one("#gpu-title", Static), title, layout=not gpu.available)  # the reason may wrap
        set_text(self.query_one("#gpu-stats", Static), stats)
        self.set_class(not gpu.available, "-unavailable")
        for part in ("#gpu-mem", "#gpu-spark", "#gpu-stats"):
            self.query_one(part).display = gpu.available
        if gpu.available:
            self.query_one("#gpu-mem", ProgressBar).update(total=100, progress=gpu.mem_pct or 0.0)
            self.query_one("#gpu-spark", Sparkline).data = list(gpu.history_mem_pct)
