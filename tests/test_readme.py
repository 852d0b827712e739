"""The README is true: generated references current, its commands exist, its example runs, its tables match the code."""

from __future__ import annotations

import inspect
import shutil
import tomllib
from pathlib import Path
from typing import get_type_hints

from phasegate.cli.docs import render_readme
from phasegate.floor import events
from phasegate.floor.events import KNOWN_TYPES, SentEvent
from phasegate.floor.rundir import RunDir
from phasegate.journal import intake
from tests.conftest import run_cli, status_json

ROOT = Path(__file__).resolve().parents[1]


def test_generated_references_are_current():
    text = (ROOT / "README.md").read_text()
    assert render_readme(text) == text, "run: python -m phasegate.cli.docs --write README.md"


def test_the_two_commands_are_make_targets_and_ci_runs_the_test_one():
    readme, makefile = (ROOT / "README.md").read_text(), (ROOT / "Makefile").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "\ndemo:" in makefile and "\ntest:" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def section(heading: str) -> str:
    """The README's text under `heading` (a whole line such as "### The run folder"), up to the next heading."""
    text = (ROOT / "README.md").read_text()
    level = heading.split(" ")[0]
    body = text.split(f"\n{heading}\n", 1)[1]
    ends = [body.find(f"\n{'#' * n} ") for n in range(1, len(level) + 1)]
    return body[: min((end for end in ends if end >= 0), default=len(body))]


def test_the_session_file_example_runs_as_written(tmp_path):
    block = section("## A session file").split("```toml\n", 1)[1].split("```", 1)[0]
    example = ROOT / "examples" / "quickstart.toml"
    assert tomllib.loads(block) == tomllib.loads(example.read_text()), "the README shows examples/quickstart.toml"
    shutil.copytree(example.with_suffix(""), tmp_path / "quickstart")
    (tmp_path / "session.toml").write_text(block)
    result = run_cli("run", tmp_path / "session.toml", "--headless", "--run-dir", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    status = status_json(tmp_path / "run")
    assert status["state"] == "completed"
    assert [g["status"] for g in status["gates"]] == ["pass"]  # the threshold gate on the score


def events_table() -> dict[str, str]:
    """The README's event table: each row's `type` and its fields cell."""
    text = section("### What a phase may tell phasegate")
    body = text.split("\n| `type` | fields | what phasegate does with it |\n|---|---|---|\n", 1)[1]
    rows = {}
    for line in body.split("\n\n", 1)[0].splitlines():
        kind, fields, _ = (cell.strip() for cell in line.strip().strip("|").split("|"))
        rows[kind.strip("`")] = fields
    return rows


def test_every_event_and_field_is_in_the_readme_table():
    table = events_table()
    for kind in SentEvent.__args__:
        name = kind.model_fields["type"].default
        assert name in table, f"README event table: no row for {name!r}"
        for field in set(kind.model_fields) - {"type"}:
            assert f"`{field}`" in table[name], f"README event table, {name!r}: no field `{field}`"
    assert set(table) == KNOWN_TYPES


def test_the_readme_gives_the_event_limits_of_the_code():
    text = section("### What a phase may tell phasegate")
    limits = [f"1 to {events.MAX_NAME_CHARS} characters", f"1 to {events.MAX_PATH_CHARS} characters",
              f"0 to 2^{events.MAX_COUNT.bit_length()}−1", f"{events.MAX_EVIDENCE_DEPTH} levels deep",
              f"at most {events.MAX_LINE_BYTES // 1024} KiB", f"exits with {int(events.EARLY_STOP_EXIT)}",
              f"past {intake.MAX_WARNINGS_PER_ATTEMPT} warnings",
              f"a burst of {intake.MESSAGE_BURST}, then {intake.MESSAGES_PER_S:g} a second",
              f"a burst of {intake.METRIC_EVENT_BURST} metric events, then {intake.METRIC_EVENTS_PER_S:g} a second",
              f"at most {intake.MAX_METRIC_NAMES} names", f"at most {1 / intake.UPDATE_INTERVAL_S:g} times a second",
              "at most once a second" if intake.TOUCH_INTERVAL_S == 1 else f"every {intake.TOUCH_INTERVAL_S:g} s"]
    missing = [limit for limit in limits if limit not in " ".join(text.split())]
    assert not missing, f"README, 'What a phase may tell phasegate': no {missing}"


class Shown(int):
    """A number (2) that a path shows as its placeholder: `attempt` makes `reviews/<gate>-<attempt>`."""

    def __new__(cls, label: str) -> Shown:
        shown = super().__new__(cls, 2)
        shown.label = label
        return shown

    def __format__(self, spec: str) -> str:
        return self.label

    def __str__(self) -> str:
        return self.label


def placeholder(parameter: str, annotation: object) -> str | Shown:
    """How the README writes a RunDir argument: `phase_id` as `<phase>`, an int `version` as `<version>`."""
    label = f"<{parameter.removesuffix('_id')}>"
    return Shown(label) if annotation is int else label


def test_every_name_of_the_run_folder_is_in_the_readme(tmp_path):
    text = section("### The run folder")
    names = []
    for member in vars(RunDir).values():
        getter = member.fget if isinstance(member, property) else member
        hints = get_type_hints(getter) if callable(getter) else {}
        if hints.get("return") is not Path:
            continue
        args = [placeholder(p, hints.get(p)) for p in list(inspect.signature(getter).parameters)[1:]]
        names.append(getter(RunDir(tmp_path), *args).relative_to(tmp_path).as_posix())
    RunDir(tmp_path).create_layout()
    names += [f"{folder.name}/" for folder in tmp_path.iterdir()]
    assert len(names) > 10
    missing = [name for name in names if name not in text]
    assert not missing, f"README, 'The run folder': no {missing}"
