"""The architecture holds: import-linter's contracts pass, the core stays headless, the docs match the tree."""

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ["floor", "journal", "checkpoints", "reviews", "gates", "pipeline", "session", "demo"]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def packages() -> set[str]:
    """The top-level folders that are phasegate subpackages."""
    return {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "benchmarks", "examples", "docs"}


def test_import_linter_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:]


def test_no_core_module_imports_textual():
    offenders = [str(p.relative_to(ROOT)) for folder in CORE for p in (ROOT / folder).rglob("*.py")
                 if "textual" in imported_modules(p)]
    assert offenders == []


def test_loading_the_cli_and_controller_does_not_load_textual():
    code = ("import sys, phasegate.cli.main, phasegate.session.controller, phasegate.checkpoints.render, "
            "phasegate.gates; print('textual' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_package_is_in_the_layers_contract():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    [layers] = [c["layers"] for c in config if c["type"] == "layers"]
    layered = {name.strip().removeprefix("phasegate.") for layer in layers for name in layer.split("|")}
    assert layered == packages()


def test_the_readme_layout_and_the_architecture_doc_name_every_package_in_layer_order():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    [layers] = [c["layers"] for c in config if c["type"] == "layers"]
    order = [name.strip().removeprefix("phasegate.") for layer in layers for name in layer.split("|")]
    layout = (ROOT / "README.md").read_text().split("### Layout", 1)[1].split("\n## ", 1)[0]
    in_readme = re.findall(r"^\|[^|]*\| `(\w+)/`(?: · `(\w+)/`)? \|", layout, flags=re.M)
    assert [name for pair in in_readme for name in pair if name] == order
    diagram = (ROOT / "docs" / "architecture.md").read_text().split("```", 2)[1]
    columns = [re.split(r"\s{2,}", line.strip())[0] for line in diagram.splitlines() if re.match(r"^  [a-z]", line)]
    assert [name.strip() for column in columns for name in column.split("·")] == order
