"""A phase's state folder survives its attempts (a retry, a crash), and is moved aside when its inputs change."""

from __future__ import annotations

import sys
from pathlib import Path

from phasegate.session.state_dir import KEY_FILE, prepare_state_folder
from tests.conftest import run_cli, status_json

# Counts its attempts in its state folder; the artifact folder must be clean each time. Fails the first attempt.
COUNTING = '''
import os, pathlib, sys
state, artifacts = pathlib.Path(sys.argv[1]), pathlib.Path(os.environ["PHASEGATE_ARTIFACTS"])
assert state == pathlib.Path(os.environ["PHASEGATE_STATE_DIR"])
seen = sorted(p.name for p in artifacts.iterdir())
counter = state / "attempts"
count = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(count))
(artifacts / "leftover.txt").write_text("x")
(artifacts / "seen.txt").write_text(f"{count} {seen}")
sys.exit(0 if count >= 2 else 1)
'''


def test_state_survives_a_retry_while_the_artifact_folder_starts_clean(tmp_path: Path) -> None:
    (tmp_path / "count.py").write_text(COUNTING)
    (tmp_path / "s.toml").write_text(f'[session]\nname = "state"\n[[phases]]\nid = "train"\nretries = 1\n'
                                     f'run = ["{sys.executable}", "count.py", "{{state}}"]\n')
    result = run_cli("run", tmp_path / "s.toml", "--run-dir", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "artifacts" / "train" / "seen.txt").read_text() == "2 []"
    assert (tmp_path / "run" / "state" / "train" / "attempts").read_text() == "2"
    assert status_json(tmp_path / "run")["phases"][0]["attempts"] == 2


def test_state_made_from_other_inputs_is_moved_aside_never_reused(tmp_path: Path) -> None:
    folder = tmp_path / "state" / "train"
    assert prepare_state_folder(folder, "inputs-a") is None
    (folder / "step-17.ckpt").write_text("weights")
    assert prepare_state_folder(folder, "inputs-a") is None  # same inputs: kept as it is
    assert (folder / "step-17.ckpt").exists()
    moved = prepare_state_folder(folder, "inputs-b", clock=lambda: 0.0)
    assert moved is not None and (moved / "step-17.ckpt").read_text() == "weights"
    assert sorted(p.name for p in folder.iterdir()) == [KEY_FILE]
    (folder / "step-3.ckpt").write_text("newer")
    again = prepare_state_folder(folder, "inputs-c", clock=lambda: 0.0)  # the same second: a name of its own
    assert again != moved and (again / "step-3.ckpt").exists() and (moved / "step-17.ckpt").exists()


def test_a_state_folder_swapped_for_a_link_is_never_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("x")
    folder = tmp_path / "state" / "train"
    folder.parent.mkdir()
    folder.symlink_to(elsewhere)
    prepare_state_folder(folder, "inputs-a")
    assert folder.is_dir() and not folder.is_symlink()
    assert sorted(p.name for p in elsewhere.iterdir()) == ["keep.txt"]
