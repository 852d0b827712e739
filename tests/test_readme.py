"""The README's generated references match the code, and its two commands exist."""

from pathlib import Path

from phasegate.cli.docs import render_readme

ROOT = Path(__file__).resolve().parents[1]


def test_generated_references_are_current():
    text = (ROOT / "README.md").read_text()
    assert render_readme(text) == text, "run: python -m phasegate.cli.docs --write README.md"


def test_the_two_commands_are_make_targets_and_ci_runs_the_test_one():
    readme, makefile = (ROOT / "README.md").read_text(), (ROOT / "Makefile").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "\ndemo:" in makefile and "\ntest:" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()
