"""The pilot data generation phase: instructions -> critic -> responses -> critic -> QC.

Work is done in batches; each batch's rows land atomically in their own file in the phase's state
folder (`RUN_DIR/state/<phase>/batches/`, kept across attempts), so the next attempt after a crash,
a stop or a retry skips the batch files that exist.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field

from phasegate.pipeline.context import PhaseContext
from phasegate.pipeline.data.dedup import NEAR_DUP_THRESHOLD, drop_repeated_instructions
from phasegate.pipeline.data.rounds import PilotRun, TargetFields, plan_next_round
from phasegate.pipeline.engines.engine import Engine
from phasegate.pipeline.errors import PhaseInputError
from phasegate.pipeline.files import atomic_write_jsonl, read_jsonl, sha256_text
from phasegate.pipeline.generation.critic import DEFAULT_MIN_MARGIN
from phasegate.pipeline.generation.generate import GenerationResult, GenerationSettings
from phasegate.pipeline.generation.prompts import (
    INSTRUCTION_STOPS,
    RESPONSE_STOPS,
    SEED_INSTRUCTIONS,
    instruction_critic_prompt,
    instruction_generation_prompt,
    load_seed_pool,
    pair_critic_prompt,
    parse_instruction_list,
    response_prompt,
)
from phasegate.pipeline.model.loader import LoadedModel
from phasegate.pipeline.phase_io import prepare_work_dir, resolve_path
from phasegate.pipeline.tokenizer import CleanTokenizer

STEPS = ("instructions", "instruction_critic", "responses", "pair_critic", "write")
class GenerateParams(TargetFields):
    """The `generate` phase's `[phases.with]` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(
        100,
        ge=1,
        description="How many instruction candidates to generate; with `target_kept`, how many "
        "the first round generates (default then: target_kept).",
    )
    seed: int | None = Field(None, description="Sampling seed; default: the session seed.")
    temperature: float = Field(
        0.7, ge=0.0, description="Response sampling temperature; 0 = greedy."
    )
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="Nucleus sampling mass for responses.")
    max_new_tokens: int = Field(100, ge=1, description="Token limit of one response.")
    stop: list[str] = Field(list(RESPONSE_STOPS), description="Stop strings that end a response.")
    batch_size: int = Field(16, ge=1, description="Rows per batch (and per resumable batch file).")
    instruction_temperature: float = Field(
        1.0, ge=0.0, description="Sampling temperature for new instructions."
    )
    instruction_max_new_tokens: int = Field(48, ge=1, description="Token limit of one instruction.")
    n_shots: int = Field(
        5, ge=1, description="Seed instructions shown in the few-shot list prompt."
    )
    seed_file: str | None = Field(
        None,
        description="File of example instructions for the few-shot prompts, relative to the "
        "session folder: one a line, or JSON lines (.jsonl) of strings or "
        '{"instruction": ...} objects; default: the 12 built-in examples.',
    )
    near_dup_threshold: float = Field(
        NEAR_DUP_THRESHOLD,
        gt=0.0,
        le=1.0,
        description="A kept instruction whose MinHash Jaccard estimate (word 3-grams, 128 "
        "permutations) with an earlier kept one reaches this is dropped as a near-duplicate.",
    )
    keep_truncated_instructions: bool = Field(
        False, description="Keep instructions cut off by their token limit (normally discarded)."
    )
    filter_instructions: bool = Field(
        True, description="Answer only instructions the critic accepted (false: answer all)."
    )
    min_margin: float = Field(
        DEFAULT_MIN_MARGIN, ge=0.0, description="|logp(A) - logp(B)| for a confident critique."
    )
    thresholds: dict[str, str] = Field(
        default_factory=dict,
        description="QC rule overrides by metric, e.g. {median_tokens = 'median_tokens < 60'}.",
    )

    @property
    def first_round(self) -> int:
        """Candidates of the first round: `count` as given, else (with a target) target_kept."""
        if self.target_kept is not None and "count" not in self.model_fields_set:
            return self.target_kept
        return self.count


def _derive_seed(seed: int, batch: int, step: str) -> int:
    """A seed for one step of one batch, independent of how many batches ran before."""
    digest = hashlib.sha256(f"{seed}:{batch}:{step}".encode()).hexdigest()
    return int(digest[:8], 16)


def _instruction_status(
    result: GenerationResult, tok: CleanTokenizer, params: GenerateParams
) -> tuple[str | None, str]:
    """The instruction parsed from one list continuation, and why it is (not) usable."""
    items = parse_instruction_list(result.text)
    if not items:
        return None, "empty"
    if result.leakage or set(tok.encode(items[0])) & tok.special_ids:
        return items[0], "leakage"  # it would put a marker or special token into later prompts
    if result.hit_token_limit and not params.keep_truncated_instructions:
        return items[0], "truncated"
    return items[0], "ok"


class PilotBatch:
    """One batch of candidates taken through the four model steps."""

    def __init__(
        self,
        engine: Engine,
        params: GenerateParams,
        seed: int,
        report: Callable[[int, str], None],
        pool: Sequence[str] = SEED_INSTRUCTIONS,
    ) -> None:
        self.engine, self.tok = engine, engine.tok
        self.params, self.seed, self.report, self.pool = params, seed, report, pool

    def _settings(self, batch: int, step: str, **overrides: Any) -> GenerationSettings:
        """Generation settings of one step, seeded per batch and step."""
        p = self.params
        base = dict(
            temperature=p.temperature,
            top_p=p.top_p,
            max_new_tokens=p.max_new_tokens,
            stop=tuple(p.stop),
            batch_size=p.batch_size,
            seed=_derive_seed(self.seed, batch, step),
        )
        return GenerationSettings(**{**base, **overrides})

    def _instructions(
        self, batch: int, size: int
    ) -> tuple[list[dict[str, Any]], GenerationSettings]:
        """Step 1: sample one instruction per few-shot list prompt; rows for all candidates."""
        p = self.params
        settings = self._settings(
            batch,
            "instructions",
            temperature=p.instruction_temperature,
            max_new_tokens=p.instruction_max_new_tokens,
            stop=INSTRUCTION_STOPS,
        )
        prompts = [
            instruction_generation_prompt(settings.seed + k, n_shots=p.n_shots, pool=self.pool)
            for k in range(size)
        ]
        rows, seen = [], set()
        for k, result in enumerate(self.engine.generate(prompts, settings)):
            instruction, status = _instruction_status(result, self.tok, p)
            if status == "ok" and instruction.lower() in seen:
                status = "duplicate"
            seen.add((instruction or "").lower())
            rows.append(_new_row(batch, k, instruction, status, result, settings.seed))
        return rows, settings

    def _judge(self, prompts: list[str]) -> list[dict[str, Any]]:
        """Steps 2 and 4: the A/B critic over `prompts`."""
        p = self.params
        found = self.engine.score_ab(prompts, batch_size=p.batch_size, min_margin=p.min_margin)
        return [c.to_dict() for c in found]

    def _responses(self, rows: list[dict[str, Any]], settings: GenerationSettings) -> None:
        """Step 3: answer each row's instruction in completion mode."""
        prompts = [response_prompt(r["instruction"]) for r in rows]
        for row, result in zip(
            rows, self.engine.generate(prompts, settings), strict=True
        ):
            row["response"] = result.text
            row["generation"] = {k: v for k, v in result.to_dict().items() if k != "prompt"}

    def run(self, batch: int, size: int) -> list[dict[str, Any]]:
        """Generate, judge, answer and judge `size` candidates; returns their rows."""
        rows, instruction_settings = self._instructions(batch, size)
        self.report(batch, "instruction_critic")
        valid = [r for r in rows if r["instruction_status"] == "ok"]
        judged = self._judge([instruction_critic_prompt(r["instruction"]) for r in valid])
        for row, critique in zip(valid, judged, strict=True):
            row["instruction_critique"] = critique
        self.report(batch, "responses")
        answer = [
            r
            for r in valid
            if r["instruction_critique"]["accepted"] or not self.params.filter_instructions
        ]
        response_settings = self._settings(batch, "responses")
        self._responses(answer, response_settings)
        self.report(batch, "pair_critic")
        judged = self._judge([pair_critic_prompt(r["instruction"], r["response"]) for r in answer])
        used = {
            "instructions": instruction_settings.to_dict(),
            "responses": response_settings.to_dict(),
        }
        for row in rows:
            row["generation_params"] = used
        for row, critique in zip(answer, judged, strict=True):
            row["pair_critique"] = critique
            row["kept"] = _keep(row)
        return rows


def _new_row(
    batch: int, k: int, instruction: str | None, status: str, result: GenerationResult, seed: int
) -> dict[str, Any]:
    """A candidate row before any judgement."""
    return {
        "id": f"b{batch:05d}-{k:03d}",
        "batch": batch,
        "instruction": instruction,
        "instruction_status": status,
        "instruction_tokens": result.n_new_tokens,
        "instruction_critique": None,
        "response": None,
        "generation": None,
        "pair_critique": None,
        "kept": False,
        "batch_seed": seed,
    }


def _keep(row: dict[str, Any]) -> bool:
    """A row is training data when both critics chose A and the response is clean and ended."""
    gen = row["generation"]
    return bool(
        row["instruction_critique"]["accepted"]
        and row["pair_critique"]["accepted"]
        and row["response"]
        and not gen["leakage"]
        and not gen["runaway"]
    )


# Fields that only judge finished rows (or, for seed_file, name the pool the fingerprint holds).
JUDGING_FIELDS = frozenset({"thresholds", "near_dup_threshold", "seed_file"})
# Fields that only say how many candidates to make, never what one of them holds.
EXTENT_FIELDS = frozenset({"count", "target_kept", "max_candidates"})


def seed_pool(ctx: PhaseContext, params: GenerateParams) -> tuple[str, ...]:
    """The example instructions the few-shot prompts draw from: the seed file's, else the built-in."""
    if params.seed_file is None:
        return SEED_INSTRUCTIONS
    try:
        return load_seed_pool(resolve_path(ctx, params.seed_file), params.seed_file)
    except PhaseInputError as error:
        raise PhaseInputError(f"phase {ctx.phase_id!r} ({ctx.kind}): {error}") from None


def pool_key(pool: Sequence[str]) -> dict[str, str]:
    """The seed pool's part of a fingerprint: none for the built-in pool, so older work stays valid."""
    if tuple(pool) == SEED_INSTRUCTIONS:
        return {}
    return {"seed_pool": sha256_text(json.dumps(list(pool)))}


def _fingerprint(
    params: GenerateParams, seed: int, loaded: LoadedModel, engine: Engine, pool: Sequence[str]
) -> str:
    """What batch files depend on; batches written under another fingerprint are stale.

    `count` and the target are left out so a pilot can be extended, and thresholds since they
    only judge.
    """
    prov = loaded.provenance
    key = {
        "params": params.model_dump(exclude=JUDGING_FIELDS | EXTENT_FIELDS),
        **pool_key(pool),
        **engine.identity(),
        "versions": prov.versions,
        "seed": seed,
        "weights": prov.weights_sha256,
        "config": prov.config_sha256,
        "tokenizer": prov.tokenizer_sha256,
        "dtype": prov.dtype,
        "quantization": prov.quantization,
    }
    return sha256_text(json.dumps(key, sort_keys=True))


def _finished_batch(path: Path, size: int) -> list[dict[str, Any]] | None:
    """The rows of a batch file that holds exactly `size` rows, else None (the batch must run)."""
    try:
        rows = read_jsonl(path)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return rows if len(rows) == size else None


def generate_rows(
    ctx: PhaseContext,
    loaded: LoadedModel,
    engine: Engine,
    params: GenerateParams,
    seed: int,
    provenance_ref: dict[str, str],
) -> PilotRun:
    """Run every batch whose file is missing, round by round until the plan says stop.

    A round's batches follow the earlier ones' indices; each batch is seeded by its index, so the
    rows, the acceptance measured after each round and so the next round's plan are the same in
    a run resumed from its batch files as in an uninterrupted one.
    """
    pool = seed_pool(ctx, params)
    batch_dir = ctx.work_dir / "batches"
    prepare_work_dir(batch_dir, _fingerprint(params, seed, loaded, engine, pool))
    run = PilotRun()
    plan = {"batches": 0}

    def report(batch: int, step: str) -> None:
        total = plan["batches"] * len(STEPS)
        ctx.reporter.progress(
            batch * len(STEPS) + STEPS.index(step),
            total,
            step=f"batch {batch + 1}/{plan['batches']}: {step}",
        )

    pilot = PilotBatch(engine, params, seed, report, pool)
    while (size := plan_next_round(params, run.n_kept, len(run.rows))) > 0:
        run.rounds.append(size)
        end = len(run.rows) + size
        plan["batches"] += -(-size // params.batch_size)
        while len(run.rows) < end:
            _one_batch(pilot, batch_dir, len(run.batches["generated"]) + len(run.batches["reused"]),
                       min(params.batch_size, end - len(run.rows)), run, seed, provenance_ref)
        drop_repeated_instructions(run.rows, params.near_dup_threshold)
    total = plan["batches"] * len(STEPS)
    ctx.reporter.progress(total, total, step="batches done")
    return run


def _one_batch(
    pilot: PilotBatch, batch_dir: Path, batch: int, size: int, run: PilotRun, seed: int,
    provenance_ref: dict[str, str],
) -> None:
    """Reuse batch `batch`'s file when it holds `size` rows, else generate and write it."""
    path = batch_dir / f"batch-{batch:05d}.jsonl"
    batch_rows = _finished_batch(path, size)
    if batch_rows is not None:
        run.batches["reused"].append(batch)
    else:
        pilot.report(batch, "instructions")
        started = time.monotonic()
        batch_rows = pilot.run(batch, size)
        run.gen_s += time.monotonic() - started
        run.generated += size
        pilot.report(batch, "write")
        for row in batch_rows:
            row.update(seed=seed, provenance_ref=provenance_ref)
        atomic_write_jsonl(path, batch_rows)
        run.batches["generated"].append(batch)
    run.rows.extend(batch_rows)

