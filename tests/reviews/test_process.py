"""run_bounded: output reading stays bounded when grandchildren hold the pipes open."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from phasegate.reviews import Decision, ReviewerSpec
from phasegate.reviews.process import run_bounded


def test_answer_then_exit_while_a_grandchild_holds_stdout(fakes, review, dead) -> None:
    fakes.scenario(mode="grandchild_holds_pipe")
    started = time.monotonic()
    outcome = review(ReviewerSpec(command=["reviewer-cmd"], timeout_s=30))
    assert time.monotonic() - started < 5  # bounded by the grace, not the 30 s timeout
    assert outcome.decision is Decision.SCALE and outcome.error is None
    (grandchild,) = fakes.grandchild_pids()
    assert dead(grandchild)  # the leftover was killed with the reviewer's group


def test_grandchild_that_left_the_group_cannot_stall_reading(fakes, review, dead, kill) -> None:
    fakes.scenario(mode="setsid_grandchild_holds_pipe")
    started = time.monotonic()
    try:
        outcome = review(ReviewerSpec(command=["reviewer-cmd"], timeout_s=30))
        assert time.monotonic() - started < 5
        assert outcome.decision is Decision.SCALE
    finally:
        for pid in fakes.grandchild_pids():
            kill(pid)
            assert dead(pid)


def test_stdin_larger_than_a_pipe_buffer_is_delivered(tmp_path: Path) -> None:
    prompt = b"x" * (1024 * 1024)
    script = "import sys; data = sys.stdin.buffer.read(); print(len(data))"
    result = run_bounded(
        [sys.executable, "-c", script], stdin=prompt, cwd=tmp_path, env={}, timeout_s=10
    )
    assert result.exit_code == 0 and result.stdout.strip() == str(len(prompt)).encode()


def test_child_that_never_reads_stdin_still_times_out(tmp_path: Path) -> None:
    result = run_bounded(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        stdin=b"y" * (1024 * 1024),
        cwd=tmp_path,
        env={},
        timeout_s=0.5,
    )
    assert result.timed_out and result.signal == 9


def test_a_watch_ends_the_run_early_and_kills_its_tree(tmp_path: Path) -> None:
    # Lines arrive split across reads; the watch still sees each whole line, and the tree dies with the run.
    script = ("import sys, time\n"
              "for n in range(1000):\n"
              "    sys.stdout.write('wait' if n % 2 == 0 else 'ing %d\\n' % n); sys.stdout.flush(); time.sleep(0.02)\n")
    seen: list[bytes] = []

    def watch(stream: str, data: bytes) -> str | None:
        seen.append(data)
        return "three waits" if b"".join(seen).count(b"waiting") >= 3 else None

    started = time.monotonic()
    result = run_bounded([sys.executable, "-c", script], stdin=b"", cwd=tmp_path, env={}, timeout_s=30, watch=watch)
    assert time.monotonic() - started < 10
    assert result.ended_early == "three waits" and not result.timed_out and result.signal is not None
    assert result.stdout.count(b"waiting") < 10
