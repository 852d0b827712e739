"""Policy globs: `*` stays in one folder, `**` crosses folders, a folder pattern covers its files."""

from __future__ import annotations

import pytest

from phasegate.gates.globs import check_glob, matches


@pytest.mark.parametrize(
    ("path", "pattern", "expected"),
    [
        ("a.py", "**/*.py", True),
        ("x/y/a.py", "**/*.py", True),
        ("a.pyc", "**/*.py", False),
        ("evaluate_x.py", "evaluate_*.py", True),
        ("sub/evaluate_x.py", "evaluate_*.py", False),
        ("archived/old.py", "archived/**", True),
        ("archived/deep/old.py", "archived/**", True),
        ("archived_not/old.py", "archived/**", False),
        ("archived/old.py", "archived", True),  # a folder covers its files
        ("utils/clean_model_loader.py", "utils/clean_model_loader.py", True),
        ("utils/clean_model_loaderXpy", "utils/clean_model_loader.py", False),  # `.` is literal
        ("a1.py", "a[0-9].py", True),
        ("ab.py", "a[!b].py", False),
        ("a/b.py", "a?b.py", False),
        ("./a.py", "a.py", True),  # paths are normalized
        ("a.py", "./a.py", True),
    ],
)
def test_matches(path: str, pattern: str, expected: bool) -> None:
    assert matches(path, pattern) is expected


@pytest.mark.parametrize("pattern", ["", "/abs/*.py", "[z-a].py"])
def test_bad_globs_are_rejected(pattern: str) -> None:
    with pytest.raises(ValueError):
        check_glob(pattern)
