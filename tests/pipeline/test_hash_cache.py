"""The per-run hash cache: weights are read once per run, however many phases load the model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from phasegate.pipeline import files
from phasegate.pipeline.files import HASH_CACHE_NAME, RUN_DIR_ENV, HashCache, hash_files
from phasegate.pipeline.model.loader import ModelSpec, load_clean


@pytest.fixture
def hash_calls(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file whose bytes are hashed (the real hashing still runs)."""
    calls: list[Path] = []
    real = files.sha256_file

    def counting(path: Path) -> str:
        calls.append(Path(path))
        return real(path)

    monkeypatch.setattr(files, "sha256_file", counting)
    return calls


@pytest.fixture
def in_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run folder, announced the way the controller announces it to a phase."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    monkeypatch.setenv(RUN_DIR_ENV, str(run_dir))
    return run_dir


def test_second_load_in_a_run_does_not_read_the_weights_again(tiny_model_dir, in_run, hash_calls):
    spec = ModelSpec(path=str(tiny_model_dir))
    first = load_clean(spec, checks=False)
    weights = {p for p in hash_calls if p.suffix == ".safetensors"}
    assert weights, "the first load hashes the weight files"
    hash_calls.clear()
    second = load_clean(spec, checks=False)
    assert not [p for p in hash_calls if p.suffix == ".safetensors"]
    assert second.provenance.weights_sha256 == first.provenance.weights_sha256
    cache = json.loads((in_run / HASH_CACHE_NAME).read_text())
    assert {str(p.resolve()) for p in weights} <= set(cache)


def test_a_touched_file_is_hashed_again(tmp_path, in_run, hash_calls):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"a" * 1000)
    before = hash_files([weights], tmp_path)
    weights.write_bytes(b"b" * 1000)  # same size: only the mtime tells
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    hash_calls.clear()
    after = hash_files([weights], tmp_path)
    assert hash_calls == [weights.resolve()]
    assert after["files"]["model.safetensors"] != before["files"]["model.safetensors"]
    hash_calls.clear()
    assert hash_files([weights], tmp_path) == after and hash_calls == []


@pytest.mark.parametrize("garbage", [b"{not json", b"\xff\xfe\x00", b"[1, 2]", b'{"x": {"size": "big"}}'])
def test_a_corrupt_cache_is_ignored_and_rewritten(tmp_path, in_run, hash_calls, garbage):
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"weights")
    cache_file = in_run / HASH_CACHE_NAME
    cache_file.parent.mkdir(parents=True)
    cache_file.write_bytes(garbage)
    result = hash_files([weights], tmp_path)
    assert result["files"]["model.bin"] == files.durable.sha256_file(weights)
    assert hash_calls == [weights.resolve()]
    assert json.loads(cache_file.read_text())[str(weights.resolve())]["sha256"] == result["files"]["model.bin"]


def test_processes_share_the_cache_file(tmp_path, hash_calls):
    one, two = tmp_path / "a.bin", tmp_path / "b.bin"
    one.write_bytes(b"1")
    two.write_bytes(b"2")
    path = tmp_path / "cache.json"
    hash_files([one], tmp_path, HashCache(path))
    hash_files([two], tmp_path, HashCache(path))  # a later phase: a fresh object, same file
    hash_calls.clear()
    hash_files([one, two], tmp_path, HashCache(path))
    assert hash_calls == []
