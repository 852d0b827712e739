"""Notifications end to end: the real CLI, real child processes, apprise posting to an HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from phasegate.journal.events import EventKind
from tests.conftest import events_of, run_cli, session_toml

pytest.importorskip("apprise")

SECRET = "s3cr3t-token-value"
GATE = '[[phases.pre_gates]]\nid = "look"\nkind = "approval"\nmessage = "check train.jsonl (key s3cr3t-token-value)"\n'


class Receiver:
    """A local HTTP service: `/ok` takes a message, `/fail` answers 500, `/hang` never answers until released."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                kind = self.headers.get("Content-Type", "")
                fields = json.loads(body) if "json" in kind else dict(urllib.parse.parse_qsl(body))
                receiver.posts.append({"path": self.path, **fields})
                if self.path.startswith("/hang"):
                    receiver.release.wait(60)
                self.send_response(500 if self.path.startswith("/fail") else 200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def to(self, path: str) -> list[dict]:
        return [p for p in self.posts if p["path"].startswith(path)]


@pytest.fixture
def receiver():
    service = Receiver()
    yield service
    service.release.set()
    service.server.shutdown()


def write_session(workspace: Path, notify: str, *, phases=("a",), extra: str = "", phase_extra=None) -> Path:
    text = session_toml("n", list(phases), extra=extra, phase_extra=phase_extra) + "\n" + notify
    (workspace / "s.toml").write_text(text)
    return workspace / "s.toml"


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


def test_a_paused_run_sends_one_message_with_the_gate_its_question_and_the_commands(workspace, receiver):
    notify = f'[[notify]]\nurls = ["json://127.0.0.1:{receiver.port}/ok/${{NOTIFY_KEY}}"]\n'
    session = write_session(workspace, notify, phase_extra={"a": f'env = {{ API_TOKEN = "{SECRET}" }}\n' + GATE})
    run_dir = workspace / "run"
    result = run_cli("run", session, "--run-dir", run_dir, "--headless", env=env(NOTIFY_KEY="k3y-in-url"))
    assert result.returncode == 4, result.stderr
    assert len(receiver.posts) == 1
    post = receiver.posts[0]
    assert post["path"] == "/ok/k3y-in-url"  # the variable filled in when sending, never in the session file
    assert post["title"] == "phasegate n: paused"
    message = post["message"]
    assert "Gate look (phase a) asks: check train.jsonl" in message
    assert f"phasegate approve {run_dir.resolve()} look --note TEXT" in message
    assert f"phasegate waive {run_dir.resolve()} look --reason TEXT" in message
    assert f"phasegate resume {run_dir.resolve()}" in message and "Budget: $" in message
    assert SECRET not in message and "[REDACTED:API_TOKEN]" in message and "k3y-in-url" not in message
    paused = [e.seq for e in events_of(run_dir, EventKind.SESSION_STATE) if e.data["state"] == "paused"]
    told = events_of(run_dir, EventKind.NOTIFIED)
    assert [(e.data["for_seq"], e.data["event"], e.data["target"], e.data["late"]) for e in told] == \
        [(paused[0], "paused", 0, False)]
    stream = [json.loads(line) for line in result.stdout.splitlines()]
    assert any(e["type"] == "notified" for e in stream)  # shown in the event stream too


def test_a_stopped_run_sends_one_message_with_its_incident_report_and_the_retry(workspace, receiver):
    notify = f'[[notify]]\nurls = ["form://127.0.0.1:{receiver.port}/ok"]\n'
    session = write_session(workspace, notify)
    run_dir = workspace / "run"
    result = run_cli("run", session, "--run-dir", run_dir, env=env(PHASE_EXIT_A="7"))
    assert result.returncode == 3, result.stderr
    # Its incident report is part of the stop: one message, not two.
    assert [p["title"] for p in receiver.posts] == ["phasegate n: stopped"]
    message = receiver.posts[0]["message"]
    assert "stopped — phase a failed (exit code 7)" in message and "Incident report: " in message
    assert f"phasegate resume {run_dir.resolve()} --retry" in message


def test_a_budget_warning_is_sent_while_the_run_goes_on(workspace, receiver):
    notify = f'[[notify]]\nurls = ["json://127.0.0.1:{receiver.port}/ok"]\non = ["budget_warning"]\n'
    session = write_session(workspace, notify, extra="budget_usd = 100.0\ngpu_hourly_usd = 36000.0\nbudget_warn_at = 0.02\n")
    result = run_cli("run", session, "--run-dir", workspace / "run", env=env(PHASE_SLEEP="0.4"))
    assert result.returncode == 0, result.stderr
    assert [p["title"] for p in receiver.posts] == ["phasegate n: budget warning"]
    message = receiver.posts[0]["message"]
    assert "budget warning — $" in message and " left of $100.00" in message
    assert "phasegate watch" in message  # the run was still running: watch it


def test_a_failing_or_hanging_service_is_journaled_and_never_holds_the_run(workspace, receiver):
    notify = (f'[[notify]]\nurls = ["json://127.0.0.1:{receiver.port}/fail"]\non = ["completed"]\n'
              f'[[notify]]\nurls = ["json://127.0.0.1:{receiver.port}/hang"]\non = ["completed"]\ntimeout_s = 1.5\n')
    session = write_session(workspace, notify)
    run_dir = workspace / "run"
    started = time.monotonic()
    result = run_cli("run", session, "--run-dir", run_dir, "--headless")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert elapsed < 30, elapsed  # the hanging service holds its request for 60 s
    assert len(receiver.to("/fail")) == 3  # retried
    failed = {e.data["target"]: e.data["error"] for e in events_of(run_dir, EventKind.NOTIFY_FAILED)}
    assert set(failed) == {0, 1} and "urls[0] (json://…)" in failed[0] and "500" in failed[0]
    assert not events_of(run_dir, EventKind.NOTIFIED)
    stream = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["target"] for e in stream if e["type"] == "notify_failed"] == [0, 1]  # shown in the event stream


def test_a_controller_killed_before_sending_has_the_message_sent_on_resume_once(workspace, receiver):
    notify = f'[[notify]]\nurls = ["json://127.0.0.1:{receiver.port}/ok"]\n'
    session = write_session(workspace, notify, phase_extra={"a": GATE})
    run_dir = workspace / "run"
    crashed = run_cli("run", session, "--run-dir", run_dir, env=env(PHASEGATE_FAULT="crash_at:before_notify"))
    assert crashed.returncode == 86, crashed.stderr
    assert receiver.posts == []
    assert run_cli("approve", run_dir, "look").returncode == 0
    resumed = run_cli("resume", run_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert [p["title"] for p in receiver.posts] == ["phasegate n: paused"]
    assert "Sent by a later controller" in receiver.posts[0]["message"]
    paused = [e.seq for e in events_of(run_dir, EventKind.SESSION_STATE) if e.data["state"] == "paused"]
    told = events_of(run_dir, EventKind.NOTIFIED)
    assert [(e.data["for_seq"], e.data["late"]) for e in told] == [(paused[0], True)]
    assert run_cli("resume", run_dir).returncode == 0  # completed: nothing more is sent
    assert len(receiver.posts) == 1


def test_a_stop_of_a_paused_run_is_sent_by_the_stop_command(workspace, receiver):
    notify = f'[[notify]]\nurls = ["json://127.0.0.1:{receiver.port}/ok"]\non = ["stopped"]\n'
    session = write_session(workspace, notify, phase_extra={"a": GATE})
    run_dir = workspace / "run"
    assert run_cli("run", session, "--run-dir", run_dir).returncode == 4
    assert receiver.posts == []  # not told of pauses
    stopped = run_cli("stop", run_dir, "--reason", "enough")
    assert stopped.returncode == 0, stopped.stderr
    assert [p["title"] for p in receiver.posts] == ["phasegate n: stopped"]
    assert "operator stop: enough" in receiver.posts[0]["message"]
    assert f"phasegate resume {run_dir.resolve()} --force" in receiver.posts[0]["message"]


def test_notify_test_sends_to_every_url_and_names_the_one_that_fails(workspace, receiver):
    notify = (f'[[notify]]\nurls = ["json://127.0.0.1:{receiver.port}/ok", '
              f'"json://127.0.0.1:{receiver.port}/fail/${{HOOK_TOKEN}}", "json://x/${{UNSET_VAR}}"]\ntimeout_s = 2\n')
    session = write_session(workspace, notify)
    result = run_cli("notify-test", session, env=env(HOOK_TOKEN="t0ken-value-123"))
    assert result.returncode == 2, result.stderr
    assert "notify[0].urls[0] (json://…): sent" in result.stdout
    assert f"notify[0].urls[1] (json://127.0.0.1:{receiver.port}/fail/${{HOOK_TOKEN}}): failed:" in result.stdout
    assert "notify[0].urls[2] (json://x/${UNSET_VAR}): failed: environment variable UNSET_VAR is not set" in result.stdout
    assert "t0ken-value-123" not in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert "notify[0].urls[1]" in result.stderr and "notify[0].urls[2]" in result.stderr
    assert receiver.to("/ok")[0]["title"] == "phasegate n: test message"


def test_notify_test_without_a_notify_table_is_invalid_input(workspace):
    session = write_session(workspace, "")
    result = run_cli("notify-test", session)
    assert result.returncode == 2 and "no [[notify]] table" in result.stderr


def test_an_unknown_event_name_is_refused_with_the_known_ones(workspace):
    session = write_session(workspace, '[[notify]]\nurls = ["json://x"]\non = ["paused", "finished"]\n')
    result = run_cli("check", session)
    assert result.returncode == 2 and "finished" in result.stderr and "completed" in result.stderr
