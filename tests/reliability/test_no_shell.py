"""Nothing passes through a shell: metacharacters in arguments, run paths and artifact names stay inert."""

from __future__ import annotations

import stat
import sys

from tests.conftest import run_cli, status_json


def test_shell_metacharacters_are_never_executed(tmp_path):
    canary = tmp_path / "pwned"
    evil = f"$(touch {canary}); touch {canary}; `touch {canary}`"
    writer = ("import os, sys; name = sys.argv[1]; "
              "open(os.path.join(os.environ['PHASEGATE_ARTIFACTS'], name.replace('/', '_')), 'w').write(name)")
    (tmp_path / "s.toml").write_text(
        '[session]\nname = "inert"\n\n[[phases]]\nid = "p"\n'
        f'run = ["{sys.executable}", "-c", "{writer}", "{evil}"]\n'.replace("\\", "\\\\"))
    run_dir = tmp_path / f"run $(touch {canary}); x"
    result = run_cli("run", tmp_path / "s.toml", "--run-dir", run_dir)
    assert result.returncode == 0, result.stderr
    assert not canary.exists()
    names = [a["path"] for a in status_json(run_dir)["artifacts"]]
    assert names == [f"artifacts/p/{evil.replace('/', '_')}"]
    assert not canary.exists()


def test_logs_and_incidents_are_private(tmp_path):
    (tmp_path / "s.toml").write_text('[session]\nname = "private"\n\n[[phases]]\nid = "p"\nrun = ["false"]\n')
    assert run_cli("run", tmp_path / "s.toml", "--run-dir", tmp_path / "run").returncode == 3
    for path in [tmp_path / "run" / "logs" / "p.log", *(tmp_path / "run" / "incidents").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
