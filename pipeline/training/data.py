"""SFT data: validation before any model is loaded, completion-format tokenization, batching.

An example is `[<bos>]{system}\\n\\nInstruction: X\\nResponse: Y<eos>` (BOS where the model's
tokenizer starts sequences with it, the system part only when a profile template is given);
labels are -100 on every prompt token (BOS included), so the loss is on the response and its
end-of-sequence token alone.
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from phasegate.pipeline.errors import PhaseInputError
from phasegate.pipeline.generation.prompts import response_prompt

IGNORE_INDEX = -100
MAX_LISTED = 5


class DatasetError(PhaseInputError):
    """The training data cannot be used; the message names the file and the first bad rows."""


@dataclass(frozen=True)
class Example:
    """One tokenized training example."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]


def render_system_prompt(template: str, date: str) -> str:
    """Fill a profile's system prompt template; `{date}` is the only placeholder."""
    try:
        names = {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
    except ValueError as error:
        raise PhaseInputError(f"system prompt template {template!r}: {error}") from error
    unknown = sorted(names - {"date"})
    if unknown:
        raise PhaseInputError(
            f"system prompt template {template!r} uses {unknown}; only {{date}} is filled in"
        )
    return template.format(date=date)


def prompt_text(instruction: str, system_prompt: str | None) -> str:
    """The prompt part of an example (everything the loss ignores)."""
    prompt = response_prompt(instruction)
    return f"{system_prompt.strip()}\n\n{prompt}" if system_prompt else prompt


def _row_problem(row: Any) -> str | None:
    """Why a parsed row is not a training example, or None."""
    if not isinstance(row, dict):
        return f"is a {type(row).__name__}, not an object"
    for key in ("instruction", "response"):
        value = row.get(key)
        if not isinstance(value, str):
            return f"has no string {key!r}"
        if not value.strip():
            return f"has an empty {key!r}"
    return None


def encode_example(tok: Any, row: dict[str, Any], system_prompt: str | None) -> Example:
    """Prompt ids (labels -100) followed by ' response' ids and eos (labels = ids)."""
    # The prompt starts the sequence (BOS where the model expects one); the response is a piece
    # appended to it, so it gets no BOS of its own, only the one EOS the loss teaches to end with.
    prompt = tok.encode_sequence(prompt_text(row["instruction"], system_prompt))
    eos = sorted(tok.eos_token_ids)
    response = tok.encode(" " + row["response"].strip()) + eos[:1]
    return Example(tuple(prompt + response), tuple([IGNORE_INDEX] * len(prompt) + response))


def _parse_lines(path: Path) -> list[tuple[int, Any, str | None]]:
    """(line number, row, problem) for every non-blank line of a JSONL file."""
    parsed = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            parsed.append((number, None, f"is not JSON ({error.msg})"))
            continue
        parsed.append((number, row, _row_problem(row)))
    return parsed


def _fail(path: Path, problems: list[str], total: int, why: str) -> DatasetError:
    """A dataset error listing the first few bad lines."""
    listed = "; ".join(problems[:MAX_LISTED])
    more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
    return DatasetError(f"training data {path}: {len(problems)} of {total} rows {why}: "
                        f"{listed}{more}; fix or drop these rows and re-run")


def load_examples(
    paths: Sequence[Path], tok: Any, max_length: int, system_prompt: str | None
) -> list[Example]:
    """Validate and tokenize every file; DatasetError on the first file with a problem."""
    examples: list[Example] = []
    for path in paths:
        if not path.is_file():
            raise DatasetError(f"training data {path} does not exist")
        parsed = _parse_lines(path)
        if not parsed:
            raise DatasetError(f"training data {path} has no rows; the SFT phase needs at least one "
                               "{instruction, response} row")
        bad = [f"line {n} {problem}" for n, _, problem in parsed if problem]
        if bad:
            raise _fail(path, bad, len(parsed), "do not match the schema {instruction, response}")
        encoded = [(n, encode_example(tok, row, system_prompt)) for n, row, _ in parsed]
        long = [f"line {n} has {len(e.input_ids)} tokens" for n, e in encoded
                if len(e.input_ids) > max_length]
        if long:
            raise _fail(path, long, len(parsed), f"exceed max_length = {max_length} tokens")
        examples.extend(e for _, e in encoded)
    return examples


def pack(examples: Sequence[Example], max_length: int) -> list[list[Example]]:
    """Greedily group consecutive examples into sequences of at most `max_length` tokens."""
    groups: list[list[Example]] = []
    used = max_length + 1
    for example in examples:
        if used + len(example.input_ids) > max_length:
            groups.append([])
            used = 0
        groups[-1].append(example)
        used += len(example.input_ids)
    return groups


def collate(groups: Sequence[Sequence[Example]], pad_id: int, packed: bool) -> dict[str, torch.Tensor]:
    """A right-padded batch; a packed row has per-example positions and no attention mask.

    With position ids that restart at every example, no 2D mask and no KV cache (pass
    use_cache=False), transformers builds a block-diagonal causal mask, so packed examples
    never attend to each other; the padding is one more such block, with labels -100.
    """
    width = max(sum(len(e.input_ids) for e in g) for g in groups)
    ids, labels, mask, positions = [], [], [], []
    for group in groups:
        row_ids = [t for e in group for t in e.input_ids]
        row_labels = [t for e in group for t in e.labels]
        row_pos = [p for e in group for p in range(len(e.input_ids))]
        pad = width - len(row_ids)
        ids.append(row_ids + [pad_id] * pad)
        labels.append(row_labels + [IGNORE_INDEX] * pad)
        mask.append([1] * len(row_ids) + [0] * pad)
        positions.append(row_pos + list(range(pad)))
    batch = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}
    if packed:
        batch["position_ids"] = torch.tensor(positions)
    else:
        batch["attention_mask"] = torch.tensor(mask)
    return batch


def n_tokens(groups: Sequence[Sequence[Example]]) -> int:
    """Real (non-padding) tokens in a batch of groups: the unit of tokens/s."""
    return sum(len(e.input_ids) for group in groups for e in group)
