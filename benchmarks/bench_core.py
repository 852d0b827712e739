"""Session core: journal transaction latency, controller overhead per phase, resume latency."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from phasegate.journal.store import Journal

PHASES = 100


def journal_latency(folder: Path, count: int = 400) -> tuple[float, float]:
    """p50 and p99 of one durable state-change transaction, in milliseconds."""
    journal = Journal.create(
        folder / "state.db",
        run_id="b",
        name="b",
        spec_sha256="0" * 64,
        session_dir=folder,
        spec_path=folder / "s.toml",
        phases=[("p", "command")],
    )
    samples = []
    for i in range(count):
        start = time.perf_counter()
        journal.record_metric("p", "loss", float(i))
        samples.append((time.perf_counter() - start) * 1000)
    journal.close()
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def _session(folder: Path, phases: int) -> Path:
    lines = ['[session]\nname = "bench"\n']
    lines += [f'[[phases]]\nid = "p{i}"\nrun = ["/bin/true"]\n' for i in range(phases)]
    path = folder / "bench.toml"
    path.write_text("\n".join(lines))
    return path


def controller_overhead(folder: Path) -> tuple[float, float, float]:
    """Wall time of 100 no-op phases under phasegate vs the same commands in a shell loop."""
    session = _session(folder, PHASES)
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "phasegate",
            "run",
            str(session),
            "--run-dir",
            str(folder / "run"),
            "--headless",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    controlled = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run(["bash", "-c", f"for i in $(seq {PHASES}); do /bin/true; done"], check=True)
    loop = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "phasegate", "--help"], check=True, stdout=subprocess.DEVNULL
    )
    startup = time.perf_counter() - start
    per_phase_ms = (controlled - startup - loop) / PHASES * 1000
    return controlled, loop, per_phase_ms


def resume_latency(folder: Path) -> tuple[float, float]:
    """Seconds from starting `phasegate resume` to the next phase's start, and a bare CLI start for scale."""
    session = folder / "resume.toml"
    session.write_text(
        '[session]\nname = "resume"\n\n[[phases]]\nid = "first"\nrun = ["/bin/true"]\n\n'
        '[[phases]]\nid = "second"\nrun = ["/bin/true"]\n\n'
        '[[phases.pre_gates]]\nid = "go"\nkind = "approval"\nmessage = "continue?"\n'
    )
    run_dir = folder / "resume-run"
    paused = subprocess.run(
        [sys.executable, "-m", "phasegate", "run", str(session), "--run-dir", str(run_dir)],
        stderr=subprocess.DEVNULL,
    )
    assert paused.returncode == 4, "the run should pause at the approval gate"
    subprocess.run(
        [sys.executable, "-m", "phasegate", "approve", str(run_dir), "go"],
        check=True,
        stderr=subprocess.DEVNULL,
    )
    start = time.time()
    out = subprocess.run(
        [sys.executable, "-m", "phasegate", "resume", str(run_dir), "--headless"],
        capture_output=True,
        text=True,
        check=True,
    )
    events = [json.loads(line) for line in out.stdout.splitlines()]
    started = next(e["ts"] for e in events if e["type"] == "phase_started")
    latency = datetime.fromisoformat(started).timestamp() - start
    begin = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "phasegate", "--help"], check=True, stdout=subprocess.DEVNULL
    )
    return latency, time.perf_counter() - begin


def main() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        p50, p99 = journal_latency(folder)
        controlled, loop, per_phase = controller_overhead(folder)
        resume_s, cli_s = resume_latency(folder)
    return "\n".join(
        [
            "## Session core",
            "",
            "| figure | phasegate | side by side | ratio |",
            "|---|---|---|---|",
            f"| journal: one durable state change (synchronous=FULL, WAL) | p50 {p50:.2f} ms, p99 {p99:.2f} ms | — | — |",
            f"| {PHASES} no-op phases (`/bin/true`) | {controlled:.2f} s | shell loop {loop:.3f} s "
            f"| {controlled / loop:.0f}× |",
            f"| controller overhead per phase (minus CLI start and the commands) | {per_phase:.1f} ms | goal < 20 ms | "
            f"{per_phase / 20:.2f} of goal |",
            f"| `phasegate resume` → next phase running | {resume_s * 1000:.0f} ms | bare `phasegate --help` "
            f"{cli_s * 1000:.0f} ms | {resume_s / cli_s:.2f}× |",
            "",
        ]
    )


if __name__ == "__main__":
    print(main())
