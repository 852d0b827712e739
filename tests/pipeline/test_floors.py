"""True version floors: pyproject.toml and the load-time check agree, and a too-old library is an exit 2."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from phasegate.pipeline import versions
from phasegate.pipeline.__main__ import main
from phasegate.pipeline.errors import ModelLoadError
from phasegate.pipeline.model.loader import ModelSpec, load_clean
from tests.pipeline.test_phases import write_context

ROOT = Path(__file__).resolve().parents[2]


def declared_floors() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {}
    for dep in map(Requirement, deps):
        for spec in dep.specifier:
            if spec.operator == ">=":
                floors[dep.name] = spec.version
    return floors


def test_the_load_time_floors_are_the_declared_ones():
    declared = declared_floors()
    assert {name: declared[name] for name in versions.LIBRARY_FLOORS} == versions.LIBRARY_FLOORS
    # from_pretrained(dtype=...) is what the loader calls; transformers accepts it from 4.56 on.
    assert declared["transformers"] == "4.56"


def with_installed(monkeypatch: pytest.MonkeyPatch, **fake: str | None) -> None:
    """Make the metadata lookup report other versions for some distributions."""
    real = versions.package_version
    monkeypatch.setattr(versions, "package_version", lambda name: fake[name] if name in fake else real(name))


def test_a_too_old_transformers_is_an_exit_2_naming_it(tmp_path, tiny_model_dir, monkeypatch, capsys):
    with_installed(monkeypatch, transformers="4.44.2")
    context = write_context(tmp_path, "load_check", tiny_model_dir, {})
    assert main(["load_check", "--context", str(context)]) == 2
    err = capsys.readouterr().err
    assert "transformers 4.44.2 is installed, but phasegate needs transformers>=4.56" in err
    assert "pip install -U 'transformers>=4.56'" in err and "Traceback" not in err


def test_a_missing_or_old_peft_and_accelerate_are_all_named(tiny_model_dir, monkeypatch):
    with_installed(monkeypatch, peft=None, accelerate="0.33.0")
    with pytest.raises(ModelLoadError) as error:
        load_clean(ModelSpec(path=str(tiny_model_dir)), checks=False)
    assert "peft is not installed (phasegate needs peft>=0.18)" in str(error.value)
    assert "accelerate 0.33.0 is installed, but phasegate needs accelerate>=1.1" in str(error.value)


@pytest.mark.parametrize("kind", [TypeError, ImportError, ValueError, OSError])
def test_a_library_error_in_from_pretrained_is_a_model_load_error(tmp_path, tiny_model_dir, monkeypatch,
                                                                    capsys, kind):
    import transformers

    def old_library(*args, **kwargs):
        raise kind("__init__() got an unexpected keyword argument 'dtype'")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", old_library)
    context = write_context(tmp_path, "load_check", tiny_model_dir, {})
    assert main(["load_check", "--context", str(context)]) == 2
    err = capsys.readouterr().err
    assert f"cannot load a causal LM from {tiny_model_dir.resolve()}" in err
    assert f"transformers {transformers.__version__}" in err and "peft " in err
    assert f"{kind.__name__}: __init__() got an unexpected keyword argument 'dtype'" in err
    assert "Traceback" not in err
