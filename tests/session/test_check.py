"""`check` (and `run`, before it creates anything) finds what would fail later: missing programs and scripts,
placeholders that are never filled, misspelled keys; `stop` needs no reason; `--version`."""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from phasegate.session.preflight import script_index
from tests.conftest import run_cli, session_toml, status_json

PY = json.dumps(sys.executable)


def with_phase(workspace: Path, run: str, *, phase_id: str = "evaluate", before: tuple[str, ...] = ("prepare", "fit"),
               extra: str = "") -> Path:
    """A session of test phases `before`, then one phase with the given `run` (a TOML list)."""
    text = session_toml("check", list(before)) + f'\n[[phases]]\nid = "{phase_id}"\nrun = {run}\n{extra}'
    path = workspace / "session.toml"
    path.write_text(text)
    return path


def assert_refused(result, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "phasegate: error: " in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.mark.parametrize(("run", "needles"), [
    ('["pyhton3", "phase.py"]', ["phases[2].run[0] (phase 'evaluate')", "program 'pyhton3' is not on PATH",
                                 "install it or check its spelling"]),
    (f'[{PY}, "quickstart/evalute.py"]', ["phases[2].run[1] (phase 'evaluate')", "'quickstart/evalute.py' does not "
                                          "exist", "did you mean 'quickstart/evaluate.py'?"]),
    (f'[{PY}, "-u", "phsae.py", "--out", "{{artifacts}}/x.py"]', ["phases[2].run[2]", "did you mean 'phase.py'?"]),
])
def test_a_typo_in_a_later_phase_fails_check_and_run_before_anything_runs(workspace, run, needles):
    (workspace / "quickstart").mkdir()
    (workspace / "quickstart" / "evaluate.py").write_text("print('ok')\n")
    path = with_phase(workspace, run)
    assert_refused(run_cli("check", path), f"{path} line 14", *needles)
    assert_refused(run_cli("run", path, "--headless", "--run-dir", workspace / "run"), *needles)
    assert not (workspace / "run").exists() and not (workspace / "ledger.txt").exists()  # nothing ran, nothing spent


def test_a_file_an_earlier_phase_writes_is_a_warning_and_the_run_completes(workspace):
    setup = f'[{PY}, "-c", "open(\'gen.py\', \'w\').write(\'print(1)\')"]'
    text = (f'[session]\nname = "gen"\n\n[[phases]]\nid = "setup"\nrun = {setup}\n\n'
            f'[[phases]]\nid = "use"\nrun = [{PY}, "gen.py"]\n')
    path = workspace / "session.toml"
    path.write_text(text)
    check = run_cli("check", path)
    assert check.returncode == 0, check.stderr
    assert "warning: phase 'use': script 'gen.py' does not exist" in check.stderr
    assert "phase 'setup' names 'gen.py'" in check.stderr
    assert run_cli("run", path, "--headless", "--run-dir", workspace / "run").returncode == 0


@pytest.mark.parametrize(("before", "code"), [(("prepare",), 0), ((), 2)])
def test_a_script_in_a_folder_that_does_not_exist_yet_is_an_error_only_with_no_earlier_phase(workspace, before, code):
    result = run_cli("check", with_phase(workspace, f'[{PY}, "build/tool.py"]', before=before))
    assert result.returncode == code, result.stderr
    assert "script 'build/tool.py' does not exist" in result.stderr
    if code == 0:
        assert "its folder" in result.stderr and "does not exist yet" in result.stderr


def test_placeholders_modules_inline_code_and_other_arguments_are_not_checked(workspace):
    runs = [f'[{PY}, "{{artifacts}}/made.py"]', f'[{PY}, "-m", "no_such_module.py"]',
            f'[{PY}, "-c", "print(1)", "x.py"]', '["sh", "-c", "echo {state}", "a.sh"]',
            f'[{PY}, "{{session_dir}}/phase.py", "{{session_dir}}/ledger.txt", "--out", "out.py"]']
    path = workspace / "session.toml"
    path.write_text('[session]\nname = "skip"\n' + "".join(f'\n[[phases]]\nid = "p{i}"\nrun = {run}\n'
                                                        for i, run in enumerate(runs)))
    result = run_cli("check", path)
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr


@pytest.mark.parametrize(("argv", "index"), [
    (["python3", "x.py"], 1), (["python3", "-u", "-W", "ignore", "x.py"], 4), (["python3", "-m", "x.py"], None),
    (["python3", "-uc", "x.py"], None), (["bash", "-e", "-o", "pipefail", "run.sh"], 4), (["sh", "-c", "a.sh"], None),
    (["uv", "run", "--with", "numpy", "x.py"], 4), (["uv", "run", "-m", "x"], None), (["./tool", "x.py"], None),
    (["/usr/bin/python3.12", "--", "x.py"], 2), (["node", "-r", "dotenv/config", "app.js"], 3),
])
def test_script_index_finds_the_file_an_interpreter_runs(argv, index):
    assert script_index(argv) == index


def test_a_script_removed_after_check_stops_the_run_with_exit_2_and_resumes_once_back(workspace):
    (workspace / "later.py").write_text("print('later')\n")
    path = with_phase(workspace, f'[{PY}, "later.py"]', before=("prepare",),
                      extra='\n[[phases.pre_gates]]\nkind = "approval"\n')
    assert run_cli("run", path, "--headless", "--run-dir", workspace / "run").returncode == 4
    (workspace / "later.py").unlink()
    assert run_cli("approve", workspace / "run", "evaluate.pre.approval").returncode == 0
    assert_refused(run_cli("resume", workspace / "run", "--headless"), "phase 'evaluate' cannot start",
                   "script 'later.py' does not exist")
    assert status_json(workspace / "run")["state"] == "stopped"  # the user's to fix: never "failed"
    (workspace / "later.py").write_text("print('later')\n")
    assert run_cli("resume", workspace / "run", "--headless").returncode == 0


@pytest.mark.parametrize(("extra", "needles"), [
    ('[phases.env]\nOUT = "{artifacts}/x"\n', ["phases[0].env (phase 'train')", "{artifacts} is passed as written",
                                               "PHASEGATE_ARTIFACTS", "{run_dir}, {artifacts}"]),
    ('[phases.with]\nout = {to = ["{artifact:prepare}"]}\n', ["phases[0].with (phase 'train')", "with.out.to[0]",
                                                             "{artifact:prepare} (the placeholder {artifacts}?)"]),
])
def test_a_placeholder_where_none_is_filled_is_refused(workspace, extra, needles):
    path = with_phase(workspace, '["true"]', phase_id="train", before=(), extra=extra)
    assert_refused(run_cli("check", path), *needles)


@pytest.mark.parametrize(("arg", "needles"), [
    ("{artifact}/x", ["unknown placeholder {artifact} (did you mean {artifacts}?)", "{state}"]),
    ("{artifacts:prepare}", ["placeholder {artifacts} takes no format spec"]),
    ("{phase!r}", ["placeholder {phase} takes no format spec or conversion"]),
    ("{oops", ["literal brace is written twice"]),
])
def test_a_bad_placeholder_in_run_names_the_phase_and_the_known_ones(workspace, arg, needles):
    path = with_phase(workspace, f'["true", "{arg}"]', phase_id="train", before=())
    assert_refused(run_cli("check", path), "phases[0].run (phase 'train')", *needles)


FULL = '''[session]
name = "keys"

[model]
path = "models/base"

[reviewers.critic]
preset = "llm"

[[phases]]
id = "prepare"
run = ["true"]

[[phases.pre_gates]]
kind = "approval"
message = "go?"

[[phases.gates]]
kind = "threshold"
file = "{artifacts}/m.json"
rules = ["a >= 1"]

[[phases.gates]]
kind = "policy"
rules = [{kind = "no_call", function = "eval"}]

[[phases.gates]]
kind = "artifact"
files = ["{artifacts}/x"]

[[phases.gates]]
kind = "budget"
margin = 0.2

[[phases.gates]]
kind = "review"
reviewer = "critic"
question = "ok?"

[[phases.gates]]
kind = "stat"
file = "{artifacts}/e.json"
'''

RAW_PYDANTIC = ("pydantic", "For further information visit", "msg =", "Input should be", "Extra inputs",
                "Field required", "Value error")


@pytest.mark.parametrize(("old", "new", "where", "suggestion"), [
    ('name = "keys"', 'nmae = "keys"', "line 2: session.nmae", "'name'"),
    ('path = "models/base"', 'pth = "models/base"', "line 5: model.pth", "'path'"),
    ('preset = "llm"', 'prest = "llm"', "line 8: reviewers.critic.prest", "'preset'"),
    ('id = "prepare"\nrun', 'id = "prepare"\ntimout_s = 3\nrun', "line 12: phases[0].timout_s (phase 'prepare')",
     "'timeout_s'"),
    ('[[phases.gates]]\nkind = "threshold"', '[[phases.gate]]\nkind = "threshold"', "phases[0].gate ", "'gates'"),
    ('message = "go?"', 'mesage = "go?"', "line 16: phases[0].pre_gates[0].mesage (phase 'prepare', approval gate)",
     "'message'"),
    ('kind = "approval"', 'kind = "approval"\nidd = "a"', "phases[0].pre_gates[0].idd", "'id'"),
    ('kind = "approval"', 'knd = "approval"', "phases[0].pre_gates[0].kind", "is 'knd' a misspelling of it?"),
    ('kind = "approval"', 'kind = "aproval"', "phases[0].pre_gates[0].kind", "'approval'"),
    ('file = "{artifacts}/m.json"', 'fiel = "{artifacts}/m.json"', "line 20: phases[0].gates[0].fiel (phase "
     "'prepare', threshold gate)", "'file'"),
    ('rules = [{kind = "no_call"', 'rulez = [{kind = "no_call"', "phases[0].gates[1].rulez", "'rules'"),
    ('function = "eval"', 'functoin = "eval"', "phases[0].gates[1].rules[0]", "'function'"),
    ('files = ["{artifacts}/x"]', 'file = ["{artifacts}/x"]', "phases[0].gates[2].file", "'files'"),
    ('margin = 0.2', 'margn = 0.2', "phases[0].gates[3].margn", "'margin'"),
    ('question = "ok?"', 'questoin = "ok?"', "phases[0].gates[4].questoin", "'question'"),
    ('file = "{artifacts}/e.json"', 'flie = "{artifacts}/e.json"', "phases[0].gates[5].flie", "'file'"),
])
def test_a_misspelled_key_in_any_table_is_named_with_the_closest_valid_key(workspace, old, new, where, suggestion):
    assert old in FULL
    path = workspace / "session.toml"
    path.write_text(FULL.replace(old, new, 1))
    result = run_cli("check", path)
    assert_refused(result, f"{path} {where}" if where.startswith("line") else where, suggestion)
    assert len(result.stderr.strip().splitlines()) == 1  # one problem, said once (not also as "missing")
    assert not any(raw in result.stderr for raw in RAW_PYDANTIC), result.stderr


@pytest.mark.parametrize(("old", "new", "needle"), [
    ('margin = 0.2', 'margin = 1.2', "margin (phase 'prepare', budget gate): must be at most 1.0 (got 1.2)"),
    ('path = "models/base"', 'path = "m"\ndtype = "fp16"', "model.dtype: must be one of 'auto', 'float32'"),
    ('name = "keys"', 'name = "keys"\nseed = "x"', "session.seed: must be a whole number (got 'x')"),
])
def test_a_bad_value_is_said_in_plain_words(workspace, old, new, needle):
    path = workspace / "session.toml"
    path.write_text(FULL.replace(old, new, 1))
    result = run_cli("check", path)
    assert_refused(result, needle)
    assert not any(raw in result.stderr for raw in RAW_PYDANTIC), result.stderr


def test_stop_without_a_reason_records_no_reason_given(workspace):
    path = with_phase(workspace, '["true"]', before=(), extra='\n[[phases.pre_gates]]\nkind = "approval"\n')
    assert run_cli("run", path, "--headless", "--run-dir", workspace / "run").returncode == 4
    stop = run_cli("stop", workspace / "run")
    assert stop.returncode == 0, stop.stderr
    assert status_json(workspace / "run")["reason"] == "operator stop: no reason given"
    incidents = list((workspace / "run" / "incidents").glob("INCIDENT-*.md"))
    assert len(incidents) == 1 and "reason: no reason given" in incidents[0].read_text()


def test_version_prints_the_installed_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout == f"phasegate {version('phasegate')}\n"
