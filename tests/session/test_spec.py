"""The session file: validation errors name the file, line and field, and say what to write."""

import json

import pytest

from phasegate.floor.errors import SpecError
from phasegate.session.spec import SessionSpec, load_spec
from tests.conftest import run_cli

GOOD = '''
[session]
name = "demo"

[[phases]]
id = "prepare"
run = ["python3", "prep.py", "--out", "{artifacts}/data.json"]
'''


def write(tmp_path, text):
    path = tmp_path / "session.toml"
    path.write_text(text)
    return path


def error_of(tmp_path, text) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, text))
    return str(info.value)


def test_valid_file_loads(tmp_path):
    loaded = load_spec(write(tmp_path, GOOD))
    assert loaded.spec.phases[0].run[-1] == "{artifacts}/data.json"
    assert len(loaded.sha256) == 64


def test_unknown_key_names_file_line_and_field(tmp_path):
    message = error_of(tmp_path, GOOD + 'timeout = 5\n')
    assert "session.toml line 8: phases[0].timeout (phase 'prepare'): unknown key 'timeout'; did you mean " \
           "'timeout_s'?" in message


def test_duplicate_phase_ids(tmp_path):
    message = error_of(tmp_path, GOOD + '\n[[phases]]\nid = "prepare"\nrun = ["x"]\n')
    assert "used twice" in message and "prepare" in message


def test_bad_placeholder_lists_known_ones(tmp_path):
    message = error_of(tmp_path, GOOD.replace("{artifacts}", "{artifact}"))
    assert "line 7" in message and "unknown placeholder {artifact}" in message and "{run_dir}" in message


def test_unbalanced_brace(tmp_path):
    message = error_of(tmp_path, GOOD.replace("{artifacts}/data.json", "{oops"))
    assert "phases[0].run" in message and "literal brace" in message


def test_empty_run_for_command_phase(tmp_path):
    message = error_of(tmp_path, GOOD.replace('run = ["python3", "prep.py", "--out", "{artifacts}/data.json"]', "run = []"))
    assert "needs `run`" in message


def test_second_phase_error_points_at_its_line(tmp_path):
    text = GOOD + '\n[[phases]]\nid = "Bad Id"\nrun = ["x"]\n'
    assert "line 10: phases[1].id" in error_of(tmp_path, text)


def test_toml_syntax_error(tmp_path):
    assert "not valid TOML" in error_of(tmp_path, "[session\nname = 1")


def test_missing_file(tmp_path):
    assert "no such session file" in error_of_path(tmp_path / "nope.toml")


def error_of_path(path):
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return str(info.value)


def test_bad_session_name(tmp_path):
    assert "session.name" in error_of(tmp_path, GOOD.replace('"demo"', '"Demo Session"'))


def test_every_field_has_a_description():
    schema = SessionSpec.model_json_schema(by_alias=True)
    for name, model in schema["$defs"].items():
        for field, body in model.get("properties", {}).items():
            assert body.get("description"), f"{name}.{field} has no description"


def test_check_and_schema_commands(tmp_path):
    (tmp_path / "prep.py").write_text("print('prepared')\n")  # `check` refuses a script that does not exist
    path = write(tmp_path, GOOD)
    ok = run_cli("check", path)
    assert ok.returncode == 0 and "valid" in ok.stdout
    bad = run_cli("check", write(tmp_path, GOOD + "bogus = 1\n"))
    assert bad.returncode == 2 and "unknown key 'bogus'" in bad.stderr and bad.stdout == ""
    schema = json.loads(run_cli("schema").stdout)
    assert schema["title"] == "SessionSpec" and "phases" in schema["properties"]
