"""Near-duplicate instructions: MinHash LSH over word 3-grams, in the pilot and across scale shards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from phasegate.pipeline.context import PhaseContext
from phasegate.pipeline.data.dedup import MinHashIndex, drop_repeated_instructions, minhash
from phasegate.pipeline.data.pilot import GenerateParams, generate_rows
from phasegate.pipeline.data.scale import merge
from phasegate.pipeline.data.shards import ShardJob, plan_shards, write_shard
from phasegate.pipeline.engines.engine import HfEngine
from phasegate.pipeline.files import atomic_write_jsonl, read_jsonl
from phasegate.pipeline.model.spec import ModelSpec

# 20 words: one changed word at the end leaves 17 of 19 distinct 3-grams shared (Jaccard 0.89).
LONG = ("Write a short friendly letter to your neighbour thanking them for watering the garden "
        "and feeding the cat last {}")
DISTINCT = "Convert five kilometres to miles and show each step of the arithmetic clearly"


def kept(i: int, text: str, *, keep: bool = True) -> dict:
    return {"id": f"r{i}", "instruction": text, "kept": keep}


def test_a_signature_is_the_same_in_every_process() -> None:
    """Which row is dropped must not depend on the process (no Python hash() in the signature)."""
    code = ("from phasegate.pipeline.data.dedup import minhash; "
            f"print(list(minhash({LONG.format('week')!r}).hashvalues))")
    outputs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}, timeout=60).stdout
        for seed in ("1", "2")
    }
    assert outputs == {f"{list(minhash(LONG.format('week')).hashvalues)}\n"}


def test_the_index_matches_the_earliest_near_repeat_only() -> None:
    index = MinHashIndex(0.8)
    assert index.match_or_add("a", LONG.format("week")) is None
    assert index.match_or_add("b", DISTINCT) is None
    key, similarity = index.match_or_add("c", LONG.format("month"))
    assert key == "a" and 0.8 <= similarity < 1.0
    assert len(index) == 2  # a near repeat is not added: later texts match the row that was kept
    assert index.match_or_add("d", "") is None and len(index) == 2


def test_repeats_of_earlier_kept_instructions_are_dropped_with_a_reason() -> None:
    rows = [
        kept(0, LONG.format("night"), keep=False),  # not kept: never a reason to drop a later row
        kept(1, LONG.format("week")),
        kept(2, DISTINCT),
        kept(3, LONG.format("month")),
        kept(4, LONG.format("week").upper() + "!"),
    ]
    assert drop_repeated_instructions(rows) == 2
    assert [r["kept"] for r in rows] == [False, True, True, False, False]
    assert rows[3]["drop_reason"] == "near_duplicate" and rows[3]["duplicate_of"] == "r1"
    assert 0.8 <= rows[3]["near_dup_similarity"] < 1.0
    assert rows[4]["drop_reason"] == "duplicate" and rows[4]["duplicate_of"] == "r1"
    assert "drop_reason" not in rows[0]


def test_the_threshold_decides_what_counts_as_near() -> None:
    rows = [kept(1, LONG.format("week")), kept(2, LONG.format("month"))]
    assert drop_repeated_instructions(rows, near_dup_threshold=0.99) == 0
    assert all(r["kept"] for r in rows)


def test_scale_merge_drops_near_repeats_across_shards_in_shard_order(tmp_path: Path) -> None:
    params = GenerateParams(count=4, near_dup_threshold=0.8)
    job = ShardJob(model=ModelSpec(path="m"), model_base=".", params=params, seed=0,
                   fingerprint="f", shard_dir=str(tmp_path), shards=plan_shards(4, 2, 0))
    write_shard(tmp_path, 0, "f", [kept(0, LONG.format("week")), kept(1, DISTINCT)], {})
    write_shard(tmp_path, 1, "f", [kept(2, LONG.format("month")), kept(3, "Name two rivers.")], {})
    rows, _, duplicates = merge(job)
    assert duplicates == 1 and [r["kept"] for r in rows] == [True, True, False, True]
    assert rows[2]["duplicate_of"] == "r0" and rows[2]["drop_reason"] == "near_duplicate"


def test_the_pilot_drops_near_repeats_across_its_batches(tmp_path: Path, loaded, tiny_model_dir) -> None:
    ctx = PhaseContext(phase_id="pilot", kind="generate", run_dir=tmp_path / "run",
                       session_dir=tmp_path, artifacts_dir=tmp_path / "run" / "artifacts" / "pilot",
                       model={"path": str(tiny_model_dir)})
    params = GenerateParams(count=4, batch_size=2, max_new_tokens=2, instruction_max_new_tokens=4)
    generate_rows(ctx, loaded, HfEngine(loaded.model, loaded.tokenizer), params, 1, {})
    batches = ctx.work_dir / "batches"
    # Batch files of the same fingerprint are reused as they are; the filter runs over them all.
    atomic_write_jsonl(batches / "batch-00000.jsonl", [kept(0, LONG.format("week")), kept(1, DISTINCT)])
    atomic_write_jsonl(batches / "batch-00001.jsonl", [kept(2, "Name two rivers."),
                                                       kept(3, LONG.format("month"))])
    run = generate_rows(ctx, loaded, HfEngine(loaded.model, loaded.tokenizer), params, 1, {})
    rows, done = run.rows, run.batches
    assert done == {"generated": [], "reused": [0, 1]}
    assert [r["kept"] for r in rows] == [True, True, True, False]
    assert rows[3]["drop_reason"] == "near_duplicate" and rows[3]["duplicate_of"] == "r0"
    assert read_jsonl(batches / "batch-00001.jsonl")[1]["kept"] is True  # the files keep the raw rows
