"""Phase children: own process group, events on a pipe, timeouts end the whole group."""

import os
import subprocess
import sys
import textwrap
import time

from phasegate.session.runner import end_process_group, process_is, process_start_time, spawn


def py(code):
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_events_are_parsed_and_garbage_tolerated(tmp_path):
    child = spawn(py('''
        import os
        f = os.fdopen(int(os.environ["PHASEGATE_EVENTS_FD"]), "w")
        f.write('{"type":"progress","done":1,"total":2}\\nnot json\\n{"type":"metric","name":"m","value":0.5}\\n')
        print("hello log")
    '''), cwd=tmp_path, env=dict(os.environ), log_path=tmp_path / "x.log")
    events = []
    result = child.wait(events.append, lambda: None, timeout_s=30)
    assert result.succeeded
    assert [e["type"] for e in events] == ["progress", "invalid", "metric"]
    assert "hello log" in (tmp_path / "x.log").read_text()


def test_child_runs_in_its_own_process_group(tmp_path):
    child = spawn(py("import os; print(os.getpgid(0) == os.getpid())"), cwd=tmp_path, env=dict(os.environ),
                  log_path=tmp_path / "x.log")
    child.wait(lambda e: None, lambda: None, timeout_s=30)
    assert (tmp_path / "x.log").read_text().strip() == "True"


def test_timeout_kills_the_whole_group_including_grandchildren(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    child = spawn(py(f'''
        import subprocess, sys, time
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pidfile)!r}, "w").write(str(p.pid))
        time.sleep(60)
    '''), cwd=tmp_path, env=dict(os.environ), log_path=tmp_path / "x.log")
    while not pidfile.exists() or not pidfile.read_text():
        time.sleep(0.01)
    start = time.monotonic()
    result = child.wait(lambda e: None, lambda: None, timeout_s=0.5)
    assert result.interrupted == "timeout" and time.monotonic() - start < 10
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{grandchild}") and "Z" not in open(f"/proc/{grandchild}/stat").read().split(")")[1][:3]:
        assert time.monotonic() < deadline, "grandchild survived the timeout"
        time.sleep(0.02)


def test_tick_can_end_a_child(tmp_path):
    child = spawn(py("import time; time.sleep(60)"), cwd=tmp_path, env=dict(os.environ), log_path=tmp_path / "x.log")
    result = child.wait(lambda e: None, lambda: "operator stop: test", timeout_s=None)
    assert result.interrupted == "operator stop: test" and not result.succeeded


def test_child_dies_with_its_controller(tmp_path):
    """A controller killed with -9 takes its phase child with it (no orphan keeps the GPU)."""
    pidfile = tmp_path / "child.pid"
    controller = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f'''
        import os, sys, time
        from pathlib import Path
        from phasegate.session.runner import spawn
        child = spawn([sys.executable, "-c", "import time; time.sleep(60)"], cwd=Path({str(tmp_path)!r}),
                      env=dict(os.environ), log_path=Path({str(tmp_path)!r}) / "c.log")
        open({str(pidfile)!r}, "w").write(str(child.pid) + " " + child.start_time)
        time.sleep(60)
    ''')])
    while not pidfile.exists() or " " not in pidfile.read_text():
        time.sleep(0.01)
    pid, start = pidfile.read_text().split()
    assert process_is(int(pid), start)
    controller.kill()
    controller.wait()
    deadline = time.monotonic() + 5
    while process_start_time(int(pid)) == start and "Z" not in open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1][:3]:
        assert time.monotonic() < deadline, "phase child outlived its controller"
        time.sleep(0.02)


def test_process_identity_needs_pid_and_start_time():
    me = os.getpid()
    assert process_is(me, process_start_time(me))
    assert not process_is(me, "1")
    assert not process_is(me, None)
    end_process_group(2**22 + 12345)  # a group that does not exist is not an error
