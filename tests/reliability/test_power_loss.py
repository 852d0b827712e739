"""Power loss under a live run (lossy filesystem): no phase acknowledged as passed is ever lost or run again."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import session_toml, status_json
from tests.reliability import lossyfs

PHASES = ["p1", "p2", "p3", "p4", "p5", "p6"]
# A longer soak: PHASEGATE_POWER_LOSS_ITERATIONS=50 PHASEGATE_POWER_LOSS_SEED=7 pytest this file.
ITERATIONS = int(os.environ.get("PHASEGATE_POWER_LOSS_ITERATIONS", "5"))
SEED = int(os.environ.get("PHASEGATE_POWER_LOSS_SEED", "20261123"))


@pytest.fixture
def lossy(tmp_path):
    with lossyfs.mounted(tmp_path / "fs") as mount:
        yield mount


class Controller:
    """A headless `phasegate` process; a thread hands over its stdout events as they are printed."""

    def __init__(self, args: list, env: dict, stderr: Path) -> None:
        with open(stderr, "ab") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "phasegate", *map(str, args), "--headless"],
                                         stdout=subprocess.PIPE, stderr=err, env=env, text=True)
        self.events: queue.Queue[dict | None] = queue.Queue()
        self.printed: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.events.put(json.loads(line))
        self.events.put(None)

    def wait_for_passes(self, count: int, timeout: float = 60) -> bool:
        """Take events until `count` phases were acknowledged as passed; False if the process ended first."""
        deadline = time.monotonic() + timeout
        while len(passed(self.printed)) < count:
            event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            if event is None:
                return False
            self.printed.append(event)
        return True

    def finish(self) -> list[dict]:
        """Every event the process printed before it ended (by itself or killed)."""
        self.proc.wait(timeout=120)
        self._reader.join(timeout=30)
        while not self.events.empty():
            if (event := self.events.get_nowait()) is not None:
                self.printed.append(event)
        return self.printed


def passed(events: list[dict]) -> dict[str, int]:
    """phase -> attempt of each `phase_finished` event with state passed: what the controller acknowledged."""
    return {e["phase"]: e["attempt"] for e in events if e["type"] == "phase_finished" and e["state"] == "passed"}


def descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def cut_power(mount: lossyfs.LossyMount, controller: Controller) -> None:
    """The machine dies: the controller and its phases stop at once, unsynced data is gone; then it reboots."""
    os.kill(controller.proc.pid, signal.SIGSTOP)  # frozen: it can neither spawn nor print anything more
    for pid in [*descendants(controller.proc.pid), controller.proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    mount.power_loss()


def check_journal(run_dir: Path, acked: dict[str, int]) -> None:
    """After a power loss: the journal is intact and every acknowledged pass is there, with durable artifacts."""
    status_json(run_dir)  # phasegate itself opens it (with its quick_check) without an error
    conn = sqlite3.connect(run_dir / "state.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        states = dict(conn.execute("SELECT id, state FROM phases"))
        attempts = {(p, a): s for p, a, s in conn.execute("SELECT phase, attempt, state FROM attempts")}
        artifacts = conn.execute("SELECT phase, path, sha256, size FROM artifacts").fetchall()
    finally:
        conn.close()
    for phase, attempt in acked.items():
        assert states[phase] == "passed", f"{phase} was acknowledged as passed, the journal says {states[phase]}"
        assert attempts[(phase, attempt)] == "passed"
    for phase, path, digest, size in artifacts:
        if states[phase] == "passed":  # a passed phase's artifacts were fsync'ed before its completion row
            data = (run_dir / path).read_bytes()
            assert (hashlib.sha256(data).hexdigest(), len(data)) == (digest, size), f"{path} is not durable"


def run_with_power_losses(mount, folder: Path, run_dir: Path, rng: random.Random,
                          env: dict) -> tuple[dict[str, int], int]:
    """Start the run, cut the power once or twice at random moments, let a resume finish.

    Returns the acknowledged passes and how many of them were printed before a power loss.
    """
    acked: dict[str, int] = {}
    acked_before_a_crash = 0
    stderr = folder / "controller.stderr"
    crashes = rng.randint(1, 2)
    while True:
        args = ["resume", run_dir] if run_dir.exists() else ["run", folder / "s.toml", "--run-dir", run_dir]
        controller = Controller(args, env, stderr)
        crash = crashes > 0 and controller.wait_for_passes(rng.randint(0, max(0, len(PHASES) - len(acked) - 1)))
        if crash:
            time.sleep(rng.uniform(0.0, 0.3))  # lands anywhere: in a phase, a commit, a checkpoint write
            cut_power(mount, controller)
            crashes -= 1
        printed = controller.finish()
        acked.update(passed(printed))
        acked_before_a_crash += len(passed(printed)) if crash else 0
        if run_dir.exists():
            check_journal(run_dir, acked)
        else:
            assert not acked, "phases were acknowledged, but the run folder is gone"
        if controller.proc.returncode == 0:
            return acked, acked_before_a_crash
        assert crash, f"the controller failed without a crash: {stderr.read_text()[-3000:]}"


def test_power_loss_never_loses_an_acknowledged_phase(lossy, workspace, tmp_path):
    env = {**os.environ, "PHASE_SLEEP": "0.02"}
    rng = random.Random(SEED)
    acked_before_a_crash = 0
    for iteration in range(ITERATIONS):
        folder = tmp_path / f"it{iteration}"
        folder.mkdir()
        (folder / "phase.py").write_text((workspace / "phase.py").read_text())
        (folder / "s.toml").write_text(session_toml("power", PHASES))
        run_dir = lossy.mountpoint / f"run{iteration}"
        acked, before_crash = run_with_power_losses(lossy, folder, run_dir, rng, env)
        acked_before_a_crash += before_crash

        status = status_json(run_dir)
        assert status["state"] == "completed"
        assert all(p["state"] == "passed" for p in status["phases"])
        check_journal(run_dir, acked)
        ledger = [line.split() for line in (folder / "ledger.txt").read_text().splitlines()]
        for phase, attempt in acked.items():  # an acknowledged phase never ran again
            assert all(int(a) <= attempt for _, p, a in ledger if p == phase), f"{phase} ran after its pass"
    assert acked_before_a_crash >= ITERATIONS  # the crashes really came after acknowledged phases
