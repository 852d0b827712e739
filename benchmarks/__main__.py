"""Run every benchmark (`python -m benchmarks`) and rewrite benchmarks/RESULTS.md.

Each figure is measured side by side in one run, so ratios compare like with like on this machine.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULES = ["bench_core", "bench_pipeline", "bench_pipeline2", "bench_tui"]


def machine() -> str:
    """One line naming the machine the figures came from."""
    import torch

    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.system()} {platform.machine()} ({cpu}), {os.cpu_count()} cores, Python {platform.python_version()}, {gpu}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", help="run only these benchmark modules")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    load_before = os.getloadavg()[0]
    sections = []
    for name in args.only or MODULES:
        if not (HERE / f"{name}.py").exists():
            continue
        print(f"running {name} …", file=sys.stderr)
        sections.append(importlib.import_module(name).main())
    # Sections measured elsewhere, kept as they were written: the engines (in vLLM's own environment,
    # `make bench-engines`) and the GPU figures.
    kept = [HERE / "ENGINES.md", HERE / "GPU.md"]
    header = [
        "# Benchmark results",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on: {machine()}.",
        # Other work on the machine skews absolute times (ratios less so): say how busy it was.
        f"Load average (1 min) {load_before:.1f} when the run began, {os.getloadavg()[0]:.1f} when it ended.",
        "Rewritten by `make bench` (`python -m benchmarks`); GPU figures, where present, are in the section",
        "marked GPU and name the device they came from.",
        "",
    ]
    text = "\n".join(header + sections)
    for path in kept:
        if path.exists():
            text += "\n" + path.read_text()
    (HERE / "RESULTS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
