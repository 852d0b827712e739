"""constraints-floors.txt pins every declared floor, so `make floors` tests exactly what pyproject.toml promises."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
# The one torch wheel on the test machine's disk; any other version is a multi-GB CUDA download.
LOCAL_TORCH = Version("2.13.0")
# The test tools `make floors` installs beside phasegate, pinned as constraints.txt pins them.
FLOOR_TEST_TOOLS = {"pytest", "pytest-asyncio", "pytest-textual-snapshot", "syrupy", "jsonschema"}


def pins(path: Path) -> dict[str, Version]:
    """The `name==version` lines of a constraints file, by canonical name."""
    found = {}
    for line in path.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        requirement = Requirement(text)
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{path.name}: {line!r} is not an == pin"
        found[canonicalize_name(requirement.name)] = Version(spec.version)
    return found


def declared_floors() -> dict[str, Version]:
    """The `>=` floor of every direct dependency in pyproject.toml, by canonical name."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {}
    for requirement in map(Requirement, deps):
        lower = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        assert lower, f"pyproject.toml: {requirement} declares no >= floor"
        floors[canonicalize_name(requirement.name)] = Version(lower[0])
    return floors


def test_every_declared_floor_is_pinned_at_that_floor():
    floors, pinned = declared_floors(), pins(ROOT / "constraints-floors.txt")
    runtime = {name: version for name, version in pinned.items() if name not in FLOOR_TEST_TOOLS}
    assert runtime.keys() == floors.keys()
    assert pinned["torch"] == LOCAL_TORCH and LOCAL_TORCH >= floors["torch"]
    assert {name: v for name, v in runtime.items() if name != "torch"} == {
        name: v for name, v in floors.items() if name != "torch"
    }


def test_the_test_tools_are_pinned_as_in_constraints_txt():
    pinned, tested = pins(ROOT / "constraints-floors.txt"), pins(ROOT / "constraints.txt")
    assert {name: pinned.get(name) for name in FLOOR_TEST_TOOLS} == {
        name: tested[name] for name in FLOOR_TEST_TOOLS
    }
