"""The core stays headless: only tui/ may import textual."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ["session", "gates", "pipeline", "reviews", "checkpoints"]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_core_module_imports_textual():
    offenders = [str(p.relative_to(ROOT)) for folder in CORE for p in (ROOT / folder).rglob("*.py")
                 if "textual" in imported_modules(p)]
    assert offenders == []


def test_loading_the_cli_and_controller_does_not_load_textual():
    code = ("import sys, phasegate.cli.main, phasegate.session.controller, phasegate.checkpoints.render, "
            "phasegate.gates; print('textual' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
