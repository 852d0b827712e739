"""The `testset` phase: held-out instructions per type, checked for overlap with the training data.

Instructions come from built-in templates (no model): each type's template x slot combinations
are shuffled with a seed derived from the phase seed and the type, exact duplicates (after
normalization) dropped, and the first `per_type` kept. Same seed, same test set, on any machine.

Overlap: each test instruction is compared with every training instruction, exactly (normalized
text) and nearly (word n-gram Jaccard >= `near_dup_threshold`). The phase exits 0 either way and
writes `overlap_count` at the top of overlap_report.json; the decision belongs to a gate:

    [[phases.gates]]
    kind = "threshold"
    file = "{artifacts}/overlap_report.json"
    rules = ["overlap_count == 0"]

Outputs: testset.jsonl ({id, type, instruction, template, seed}), overlap_report.json.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from phasegate.pipeline.context import PhaseContext
from phasegate.pipeline.data.dedup import NearDupIndex, normalize_text
from phasegate.pipeline.errors import PhaseInputError
from phasegate.pipeline.files import atomic_write_jsonl, numbered_jsonl, sha256_file
from phasegate.pipeline.phase_io import parse_params, resolve_path, upstream_file, write_output

_COUNTRIES = ("France", "Japan", "Brazil", "Kenya", "Canada", "Norway", "Egypt", "India",
              "Mexico", "Italy", "Peru", "Spain", "Chile", "Greece", "Ireland", "Vietnam",
              "Poland", "Morocco", "Sweden", "Argentina")
_THINGS = ("fruits", "vegetables", "birds", "rivers", "musical instruments", "board games",
           "metals", "planets", "breeds of dog", "kitchen tools", "sports played with a ball",
           "programming languages", "flowers", "types of cloud", "desert animals")
_COUNTS = ("two", "three", "four", "five")
_SENTENCES = ("I walk to the station every morning.", "She writes a letter to her aunt.",
              "We cook dinner together on Sundays.", "The children play in the park.",
              "He fixes old bicycles in his garage.", "They watch the stars at night.",
              "The baker opens the shop at six.", "My brother studies for his exams.",
              "The train leaves from platform four.", "Our team wins the final match.",
              "The cat sleeps on the warm windowsill.", "I plant tomatoes in the spring.",
              "The museum closes early on Mondays.", "She paints the fence bright blue.",
              "We hike up the hill before lunch.", "The river floods after heavy rain.")
_CONCEPTS = ("photosynthesis", "inflation", "gravity", "a rainbow", "compound interest",
             "the water cycle", "a leap year", "an eclipse", "recycling", "a vaccine",
             "erosion", "a budget", "democracy", "evaporation", "a thermometer",
             "the tides", "a food chain", "friction", "a volcano", "an echo")
_TOPICS = ("autumn leaves", "a quiet harbour", "the first snow", "a lost umbrella",
           "morning coffee", "a lighthouse", "a city at night", "an old library", "a thunderstorm",
           "a garden in spring", "a long train journey", "the moon", "a sleepy cat",
           "the ocean", "a mountain path", "a birthday party", "fresh bread", "a kite",
           "a rainy Monday", "a field of sunflowers")

# type -> (templates, slot values); every type yields well over 40 distinct instructions.
TEMPLATES: dict[str, tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]] = {
    "open_qa": (("What is the capital of {0}?", "Which continent is {0} in?",
                 "What is the main language spoken in {0}?"), (_COUNTRIES,)),
    "list": (("List {0} {1}.", "Name {0} {1}."), (_COUNTS, _THINGS)),
    "rewrite": (("Rewrite this sentence in the past tense: {0}",
                 "Rewrite this sentence as a question: {0}",
                 "Rewrite this sentence in the future tense: {0}"), (_SENTENCES,)),
    "explain": (("Explain {0} in one sentence.", "Explain {0} to a ten-year-old.",
                 "Describe {0} in two sentences."), (_CONCEPTS,)),
    "creative": (("Write a haiku about {0}.", "Write a two-line poem about {0}.",
                  "Write a one-sentence story about {0}."), (_TOPICS,)),
}


class TestsetParams(BaseModel):
    """The `testset` phase's `[phases.with]` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_type: int = Field(40, ge=1, description="Held-out instructions per type.")
    types: list[str] = Field(list(TEMPLATES), min_length=1,
                             description=f"Instruction types, from: {', '.join(TEMPLATES)}.")
    seed: int | None = Field(None, description="Shuffling seed; default: the session seed.")
    train_data: list[str] | None = Field(
        None, description="Training JSONL file(s) to check overlap against (rows with "
        "`instruction`); default: the latest earlier scale (else generate) phase's data.",
    )
    ngram: int = Field(3, ge=1, description="Word n-gram size of the near-duplicate check.")
    near_dup_threshold: float = Field(
        0.8, gt=0.0, le=1.0, description="Jaccard similarity from which a pair is a near-duplicate."
    )


def _type_seed(seed: int, kind: str) -> str:
    """The shuffling seed of one type (a string: random.Random hashes it stably)."""
    return f"testset:{seed}:{kind}"


def instructions_for(kind: str, n: int, seed: int) -> list[tuple[str, str]]:
    """`n` distinct (instruction, template) pairs of one type, in seeded order."""
    templates, slots = TEMPLATES[kind]
    pool = [(t.format(*values), t) for t in templates for values in itertools.product(*slots)]
    random.Random(_type_seed(seed, kind)).shuffle(pool)
    picked, seen = [], set()
    for text, template in pool:
        key = normalize_text(text)
        if key not in seen:
            seen.add(key)
            picked.append((text, template))
    if len(picked) < n:
        raise PhaseInputError(f"type {kind!r} has {len(picked)} distinct instructions; "
                              f"set per_type to at most {len(picked)}")
    return picked[:n]


def build_testset(types: list[str], per_type: int, seed: int) -> list[dict[str, Any]]:
    """The test rows of every type, ids like `open_qa-007`."""
    unknown = sorted(set(types) - set(TEMPLATES))
    if unknown:
        raise PhaseInputError(f"unknown instruction type(s) {unknown}; known: {list(TEMPLATES)}")
    return [
        {"id": f"{kind}-{i:03d}", "type": kind, "instruction": text, "template": template,
         "seed": seed}
        for kind in types for i, (text, template) in enumerate(instructions_for(kind, per_type, seed))
    ]


def read_instructions(path: Path) -> list[str]:
    """The `instruction` of every row of a training JSONL file, with errors naming the line."""
    found = []
    for number, row in numbered_jsonl(path, "training data"):
        if not isinstance(row, dict) or not isinstance(row.get("instruction"), str):
            raise PhaseInputError(f"{path} line {number} has no string `instruction`")
        found.append(row["instruction"])
    return found


def _train_files(ctx: PhaseContext, params: TestsetParams) -> list[Path]:
    """The training files named in params, else the latest upstream data file."""
    if params.train_data is not None:
        return [resolve_path(ctx, p) for p in params.train_data]
    names = {"scale": "scale_data.jsonl", "generate": "pilot_data.jsonl"}
    return [upstream_file(ctx, ("scale", "generate"), names)]


def overlap_report(rows: list[dict], files: list[Path], params: TestsetParams) -> dict[str, Any]:
    """Every test row that matches a training instruction exactly or nearly, with counts."""
    train = [(f, i, text) for f in files for i, text in enumerate(read_instructions(f), start=1)]
    index = NearDupIndex([text for _, _, text in train], n=params.ngram)
    overlaps = []
    for row in rows:
        match = index.best_match(row["instruction"], params.near_dup_threshold)
        if match is not None:
            path, line, text = train[match.index]
            overlaps.append({"test_id": row["id"], "instruction": row["instruction"],
                             "kind": match.kind, "similarity": round(match.similarity, 4),
                             "train_file": str(path), "train_line": line,
                             "train_instruction": text})
    return {
        "overlap_count": len(overlaps),
        "exact_count": sum(o["kind"] == "exact" for o in overlaps),
        "near_count": sum(o["kind"] == "near" for o in overlaps),
        "n_test": len(rows),
        "n_train": len(train),
        "train_files": [{"path": str(f), "sha256": sha256_file(f)} for f in files],
        "ngram": params.ngram,
        "near_dup_threshold": params.near_dup_threshold,
        "overlaps": overlaps,
    }


def testset(ctx: PhaseContext) -> int:
    """Build the test set, check it against the training data, write both outputs (exit 0)."""
    params = parse_params(ctx, TestsetParams)
    seed = ctx.seed if params.seed is None else params.seed
    rows = build_testset(params.types, params.per_type, seed)
    report = overlap_report(rows, _train_files(ctx, params), params)
    path = atomic_write_jsonl(ctx.artifacts_dir / "testset.jsonl", rows)
    ctx.reporter.artifact(path)
    write_output(ctx, "overlap_report.json", report)
    ctx.reporter.metric("n_test", len(rows))
    ctx.reporter.metric("overlap_count", report["overlap_count"])
    return 0
