"""Nothing a phase or a reviewer started outlives it: controller kill -9, SIGTERM/SIGINT, normal exits, resume, stop."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import signal
import subprocess
import sys
import termios
import textwrap
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
import yaml

from phasegate.floor.errors import ExitCode
from phasegate.floor.processes import process_info
from phasegate.session.controller import Controller
from phasegate.session.gpu import GpuSample
from phasegate.session.runs import create_run
from phasegate.session.spec import load_spec
from tests.conftest import run_cli, session_toml, status_json

# A worker writes "<pid> <start time>" to <name>.pid, then sleeps; `check` says which attempt-1 workers still live.
TREE = textwrap.dedent('''
    import os, sys, time
    from pathlib import Path
    here = Path(__file__).parent
    def alive(pid, start):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return False
        return stat[19] == start and stat[0] not in "ZX"
    if sys.argv[1] == "worker":
        start = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()[19]
        (here / f"{sys.argv[2]}.tmp").write_text(f"{os.getpid()} {start}")
        (here / f"{sys.argv[2]}.tmp").rename(here / f"{sys.argv[2]}.pid")
        time.sleep(600)
    else:
        seen = [f"{p.stem} {'alive' if alive(*p.read_text().split()) else 'gone'}" for p in sorted(here.glob("*.pid"))]
        (here / "seen.txt").write_text(chr(10).join(seen))
''')
WORKERS = ("worker", "escapee", "wiped")


def phase_script(workspace: Path, first_attempt: str) -> list[str]:
    """A bash wrapper phase: attempt 1 runs `first_attempt`, later attempts record which workers still live."""
    tree = f"{sys.executable} {workspace / 'tree.py'}"
    return ["bash", "-c", f'if [ "$PHASEGATE_ATTEMPT" = 1 ]; then {first_attempt}; else exec {tree} check; fi']


def start_workers(workspace: Path) -> str:
    """Bash commands: a worker in the phase's group, a `setsid` escapee, and an escapee that also drops its tag."""
    tree = f"{sys.executable} {workspace / 'tree.py'}"
    return f"{tree} worker worker & setsid {tree} worker escapee & setsid env -i {tree} worker wiped &"


def write_session(workspace: Path, run: list[str], extra: str = "") -> Path:
    session = workspace / "s.toml"
    session.write_text(f'[session]\nname = "tree"\n{extra}\n[[phases]]\nid = "train"\nrun = {json.dumps(run)}\n')
    (workspace / "tree.py").write_text(TREE)
    return session


def start_controller(*args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "phasegate", *map(str, args), "--headless"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def wait_for_pids(folder: Path, names: tuple[str, ...], controller: subprocess.Popen) -> dict[str, tuple[int, str]]:
    deadline = time.monotonic() + 60
    while not all((folder / f"{name}.pid").exists() for name in names):
        assert controller.poll() is None, controller.stderr.read().decode() if controller.stderr else ""
        assert time.monotonic() < deadline, f"workers did not start: {sorted(p.name for p in folder.iterdir())}"
        time.sleep(0.02)
    out = {}
    for name in names:
        pid, start = (folder / f"{name}.pid").read_text().split()
        out[name] = (int(pid), start)
    return out


def alive(pid: int, start: str) -> bool:
    info = process_info(pid)
    return info is not None and info.start == start and not info.zombie


def survivors(pids: dict[str, tuple[int, str]], within_s: float = 0.0) -> list[str]:
    deadline = time.monotonic() + within_s
    while True:
        left = [name for name, (pid, start) in pids.items() if alive(pid, start)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def children_of(pid: int, marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        info = process_info(int(entry.name)) if entry.name.isdigit() else None
        if info is not None and info.ppid == pid:
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(info.pid)
            except OSError:
                continue
    return found


def incident_front(run_dir: Path) -> dict:
    path = status_json(run_dir)["incident"]
    return yaml.safe_load(Path(path).read_text().split("---")[1])


@pytest.fixture(autouse=True)
def _end_survivors(tmp_path):
    """Whatever a failing test leaves running is killed, so a failure never keeps processes around."""
    yield
    for pidfile in tmp_path.rglob("*.pid"):
        pid, start = pidfile.read_text().split()
        if alive(int(pid), start):
            os.kill(int(pid), signal.SIGKILL)


def test_kill_minus_nine_of_the_controller_ends_the_whole_phase_tree(workspace):
    session = write_session(workspace, phase_script(workspace, f"{start_workers(workspace)} sleep 600"))
    controller = start_controller("run", session, "--run-dir", workspace / "run")
    pids = wait_for_pids(workspace, WORKERS, controller)
    os.kill(controller.pid, signal.SIGKILL)
    controller.wait()
    # The sentinel ends the group and every tagged process; an escapee that dropped its tag is beyond reach
    # once the controller is gone (the README says so), and is killed here by the fixture.
    assert survivors({k: v for k, v in pids.items() if k != "wiped"}, within_s=10) == []


def test_resume_ends_a_wrapper_group_whose_leader_died_before_the_next_attempt(workspace):
    session = write_session(workspace, phase_script(workspace, f"{start_workers(workspace)} sleep 600"))
    run_dir = workspace / "run"
    controller = start_controller("run", session, "--run-dir", run_dir)
    pids = wait_for_pids(workspace, WORKERS, controller)
    for sentinel in children_of(controller.pid, "phasegate.floor.sentinel"):
        os.kill(sentinel, signal.SIGKILL)  # as if the OOM killer took it too: resume alone must clean up
    os.kill(controller.pid, signal.SIGKILL)
    controller.wait()
    (workspace / "wiped.pid").unlink()  # untagged and outside the group: no resume can know it (see the README)
    os.kill(pids.pop("wiped")[0], signal.SIGKILL)
    assert survivors(pids) != [], "the wrapper's workers must still run here for this test to mean anything"
    resumed = run_cli("resume", run_dir, "--headless")
    assert resumed.returncode == 0, resumed.stderr
    # The second attempt saw none of the first attempt's workers beside it.
    assert (workspace / "seen.txt").read_text().split("\n") == ["escapee gone", "worker gone"]


def test_background_jobs_and_escapees_end_with_their_phase(workspace):
    wait = " && ".join(f"until [ -s {workspace / name}.pid ]; do sleep 0.02; done" for name in WORKERS)
    session = write_session(workspace, phase_script(workspace, f"{start_workers(workspace)} {wait}"))
    result = run_cli("run", session, "--run-dir", workspace / "run", "--headless")
    assert result.returncode == 0, result.stderr
    pids = {name: tuple((workspace / f"{name}.pid").read_text().split()) for name in WORKERS}
    # The tree ended before the controller went on; the untagged escapee too (it was adopted by the controller).
    assert survivors({name: (int(pid), start) for name, (pid, start) in pids.items()}) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_and_sigint_stop_the_run_resumably(workspace, signum):
    session = write_session(workspace, phase_script(workspace, f"{start_workers(workspace)} sleep 600"))
    run_dir = workspace / "run"
    controller = start_controller("run", session, "--run-dir", run_dir)
    pids = wait_for_pids(workspace, WORKERS, controller)
    os.kill(controller.pid, signum)
    assert controller.wait(timeout=60) == 3, controller.stderr.read().decode()
    assert status_json(run_dir)["state"] == "stopped"
    front = incident_front(run_dir)
    assert front["trigger"] == "signal" and front["phase"] == "train"
    assert survivors(pids) == []
    resumed = run_cli("resume", run_dir, "--headless")
    assert resumed.returncode == 0, resumed.stderr
    assert status_json(run_dir)["state"] == "completed"


def reviewed_session(workspace: Path) -> Path:
    tree = f"{workspace / 'tree.py'}"
    reviewer = ["/bin/bash", "-c", f"{sys.executable} {tree} worker reviewer-child & exec {sys.executable} {tree} "
                                   "worker reviewer"]
    extra = f"[reviewers.critic]\ncommand = {json.dumps(reviewer)}\ntimeout_s = 600\n"
    session = write_session(workspace, ["true"], extra)
    session.write_text(session.read_text() + '[[phases.gates]]\nid = "review"\nkind = "review"\nreviewer = "critic"\n'
                                              'question = "Go on?"\n')
    return session


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_reviewer_never_outlives_its_controller(workspace, signum):
    run_dir = workspace / "run"
    controller = start_controller("run", reviewed_session(workspace), "--run-dir", run_dir)
    pids = wait_for_pids(workspace, ("reviewer", "reviewer-child"), controller)
    os.kill(controller.pid, signum)
    code = controller.wait(timeout=60)
    assert survivors(pids, within_s=10) == []
    if signum == signal.SIGTERM:
        assert code == 3 and status_json(run_dir)["state"] == "stopped"
        assert incident_front(run_dir)["trigger"] == "signal"


def test_stop_of_a_crashed_run_ends_what_its_controller_left(workspace):
    session = write_session(workspace, phase_script(workspace, f"{start_workers(workspace)} sleep 600"))
    run_dir = workspace / "run"
    controller = start_controller("run", session, "--run-dir", run_dir)
    pids = wait_for_pids(workspace, ("worker", "escapee"), controller)
    for sentinel in children_of(controller.pid, "phasegate.floor.sentinel"):
        os.kill(sentinel, signal.SIGKILL)
    os.kill(controller.pid, signal.SIGKILL)
    controller.wait()
    assert survivors(pids) != []
    stopped = run_cli("stop", run_dir, "--reason", "pod is going away")
    assert stopped.returncode == 0 and "stopped" in stopped.stderr, stopped.stderr
    assert survivors(pids) == [] and status_json(run_dir)["state"] == "stopped"


def test_a_terminal_hang_up_stops_a_headless_run_that_prints_to_it(workspace):
    # As on a pod reached over SSH: the controller prints to its terminal, then the connection drops.
    session = write_session(workspace, phase_script(workspace, f"{start_workers(workspace)} sleep 600"))
    run_dir = workspace / "run"
    terminal, tty = pty.openpty()
    controller = subprocess.Popen([sys.executable, "-m", "phasegate", "run", str(session), "--run-dir", str(run_dir),
                                   "--headless"], stdin=tty, stdout=tty, stderr=tty, start_new_session=True,
                                  preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(tty)
    os.set_blocking(terminal, False)
    deadline = time.monotonic() + 60
    while not all((workspace / f"{name}.pid").exists() for name in WORKERS):
        assert controller.poll() is None and time.monotonic() < deadline, "the workers did not start"
        with contextlib.suppress(BlockingIOError):
            os.read(terminal, 65536)  # a terminal nobody reads would block the controller's output
        time.sleep(0.02)
    pids = wait_for_pids(workspace, WORKERS, controller)
    os.close(terminal)  # the hang-up: SIGHUP to the controller, and its output now fails with EIO
    assert controller.wait(timeout=60) == 3
    assert status_json(run_dir)["state"] == "stopped"
    assert incident_front(run_dir)["trigger"] == "signal"
    assert survivors(pids) == []
    resumed = run_cli("resume", run_dir, "--headless")
    assert resumed.returncode == 0, resumed.stderr
    assert status_json(run_dir)["state"] == "completed"


def test_a_reader_that_goes_away_neither_fails_nor_ends_the_run(workspace):
    # `phasegate run … --headless | head -1`: the rest of the output has nowhere to go; the journal has it all.
    session = workspace / "s.toml"
    session.write_text(session_toml("reader", ["p1", "p2"]))
    run_dir = workspace / "run"
    controller = subprocess.Popen([sys.executable, "-m", "phasegate", "run", str(session), "--run-dir", str(run_dir),
                                   "--headless"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env={**os.environ, "PHASE_SLEEP": "0.2"})
    assert json.loads(controller.stdout.readline())["type"] == "run_created"
    controller.stdout.close()
    assert controller.wait(timeout=120) == 0, controller.stderr.read().decode()
    assert controller.stderr.read() == b""
    assert status_json(run_dir)["state"] == "completed"
    assert (workspace / "ledger.txt").read_text().split("\n").count("end p2 1") == 1


class FakeNvml:
    """A GPU reader as NVML answers: the device's memory, and the memory of those of the asked pids that use it."""

    def __init__(self, gpu_users: Callable[[], dict[int, float]]) -> None:
        self.gpu_users = gpu_users

    def read(self, pids: Iterable[int]) -> list[GpuSample]:
        used = [mb for pid, mb in self.gpu_users().items() if pid in set(pids)]
        return [GpuSample(gpu=0, available=True, mem_used_mb=9000.0, mem_total_mb=80000.0,
                          proc_mem_mb=sum(used) if used else None)]


def test_gpu_memory_of_a_phase_counts_its_escapees(workspace):
    # The training process left the group (setsid); its memory is still the phase's own.
    tree = f"{sys.executable} {workspace / 'tree.py'}"
    wait = f"until [ -s {workspace / 'escapee'}.pid ]; do sleep 0.02; done; sleep 1.5"
    session = write_session(workspace, ["bash", "-c", f"setsid {tree} worker escapee & {wait}"])

    def gpu_users() -> dict[int, float]:
        pidfile = workspace / "escapee.pid"
        return {int(pidfile.read_text().split()[0]): 1234.0} if pidfile.exists() else {}

    run = create_run(load_spec(session), workspace / "run")
    try:
        assert Controller(run, base_env=dict(os.environ), gpu_reader=FakeNvml(gpu_users)).execute() == ExitCode.COMPLETED
    finally:
        run.journal.close()
    assert status_json(workspace / "run")["metrics"]["train"]["gpu_peak_mem_mb"] == 1234.0
