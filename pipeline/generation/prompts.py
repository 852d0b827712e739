"""Completion-style prompts (no chat template anywhere), their parsers, and response cleaning."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from pathlib import Path

from phasegate.pipeline.errors import PhaseInputError

RESPONSE_TEMPLATE = "Instruction: {instruction}\nResponse:"

# Where a base model's continuation must end: it starts the next turn or a new section.
RESPONSE_STOPS: tuple[str, ...] = ("\nInstruction:", "\nResponse:", "###", "\n\n")
INSTRUCTION_STOPS: tuple[str, ...] = ("\n",)

# Chat-template markers of the known model families; one in a prompt means a template leaked.
CHAT_MARKERS: tuple[str, ...] = (
    "<|im_start|>",
    "<|im_end|>",
    "[INST]",
    "[/INST]",
    "<<SYS>>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|begin_of_text|>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<|user|>",
    "<|assistant|>",
    "<|system|>",
    "<|endoftext|>",
    "<|im_sep|>",
)
# Our own completion-format delimiters: inside a response they mean the model ran on.
DELIMITERS: tuple[str, ...] = ("Instruction:", "Response:", "###")

SEED_INSTRUCTIONS: tuple[str, ...] = (
    "Name three countries in South America.",
    "Explain why the sky looks blue in two sentences.",
    "Write a short thank-you note to a neighbour who watered my plants.",
    "List four common uses of baking soda.",
    "Convert 5 kilometres to miles.",
    "Suggest a title for a blog post about learning to cook.",
    "Describe the difference between weather and climate.",
    "Give two tips for staying focused while studying.",
    "Rewrite this sentence in the past tense: I walk to school.",
    "What is the main ingredient of guacamole?",
    "Summarize the plot of Cinderella in one sentence.",
    "Write a haiku about autumn leaves.",
)
INSTRUCTION_LIST_HEADER = (
    "Below is a numbered list of clear, specific and self-contained instructions "
    "that a person might give to a helpful assistant.\n\n"
)

INSTRUCTION_CRITIC_RUBRIC = (
    "Each instruction below is graded A or B.\n"
    "A = good: a clear, specific, self-contained request that can be answered in a few sentences.\n"
    "B = bad: vague, incomplete, not a request, nonsensical, or unsafe.\n\n"
    "Instruction: List three primary colors.\nGrade: A\n\n"
    "Instruction: the and of it\nGrade: B\n\n"
)
PAIR_CRITIC_RUBRIC = (
    "Each response below is graded A or B.\n"
    "A = the response fulfils the instruction: correct, on topic and complete.\n"
    "B = the response does not fulfil the instruction: wrong, off topic, empty or rambling.\n\n"
    "Instruction: What is the capital of France?\nResponse: The capital of France is Paris.\n"
    "Grade: A\n\n"
    "Instruction: Name two planets.\nResponse: I like sandwiches.\nGrade: B\n\n"
)


def _seed_line(line: str, jsonl: bool) -> str:
    """One example instruction from one line of a seed file; ValueError says what is wrong."""
    if not jsonl:
        return line
    try:
        item = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"is not JSON ({error.msg})") from None
    if isinstance(item, dict):
        item = item.get("instruction")
    if not isinstance(item, str) or not item.strip():
        raise ValueError('must be a JSON string or an object with a non-empty string "instruction"')
    return item


def load_seed_pool(path: Path, shown: str | None = None) -> tuple[str, ...]:
    """The example instructions of a seed file: JSON lines (`.jsonl`) or one instruction a line.

    Blank lines are skipped; a missing, empty or malformed file is an input error naming it.
    """
    shown = shown or str(path)
    jsonl = path.suffix.lower() == ".jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "it is not UTF-8 text"
        raise PhaseInputError(f"seed_file {shown!r} ({path}) cannot be read: {reason}; "
                              "give a file of example instructions, one a line") from None
    pool = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                pool.append(" ".join(_seed_line(line, jsonl).split()))
            except ValueError as error:
                raise PhaseInputError(f"seed_file {shown!r} line {number} {error}") from None
    if not pool:
        raise PhaseInputError(f"seed_file {shown!r} ({path}) has no instructions; put one "
                              "example instruction a line (JSON strings in a .jsonl file)")
    return tuple(pool)


def response_prompt(instruction: str) -> str:
    """The completion prompt whose continuation is the response to `instruction`."""
    return RESPONSE_TEMPLATE.format(instruction=instruction.strip())


def instruction_generation_prompt(
    seed: int, *, n_shots: int = 5, pool: Sequence[str] = SEED_INSTRUCTIONS
) -> str:
    """A numbered list of `n_shots` seed instructions (seeded choice) ending at the next number."""
    shots = random.Random(seed).sample(list(pool), k=min(n_shots, len(pool)))
    body = "".join(f"{i}. {text}\n" for i, text in enumerate(shots, start=1))
    return f"{INSTRUCTION_LIST_HEADER}{body}{len(shots) + 1}."


_ITEM = re.compile(r"^\s*(\d+)[.)]\s*(.*)$")


def parse_instruction_list(
    continuation: str, *, min_chars: int = 3, max_chars: int = 300
) -> list[str]:
    """Instructions from a numbered-list continuation; its first line continues the open item."""
    lines = continuation.split("\n")
    items = [lines[0]]
    for line in lines[1:]:
        match = _ITEM.match(line)
        if match is None:
            break  # the list ended; anything after is not an instruction
        items.append(match.group(2))
    seen: set[str] = set()
    result = []
    for item in (" ".join(i.split()) for i in items):
        if min_chars <= len(item) <= max_chars and item.lower() not in seen:
            seen.add(item.lower())
            result.append(item)
    return result


def instruction_critic_prompt(instruction: str) -> str:
    """A rubric prompt whose next token grades the instruction: A = good, B = bad."""
    return f"{INSTRUCTION_CRITIC_RUBRIC}Instruction: {instruction.strip()}\nGrade:"


def pair_critic_prompt(instruction: str, response: str) -> str:
    """A rubric prompt whose next token grades the pair: A = the response fulfils the instruction."""
    return (
        f"{PAIR_CRITIC_RUBRIC}Instruction: {instruction.strip()}\n"
        f"Response: {response.strip()}\nGrade:"
    )


def clean_response(text: str, stops: Sequence[str] = RESPONSE_STOPS) -> str:
    """Cut `text` at the earliest stop sequence and strip surrounding whitespace."""
    cut = len(text)
    for stop in stops:
        if stop and (pos := text.find(stop)) != -1:
            cut = min(cut, pos)
    return text[:cut].strip()


def chat_markers_in(text: str) -> list[str]:
    """The chat-template markers that occur in `text`."""
    return [marker for marker in CHAT_MARKERS if marker in text]


def delimiter_leakage(text: str) -> list[str]:
    """Prompt delimiters or chat markers found inside a (cleaned) response; empty means clean."""
    lowered = text.lower()
    found = [d for d in DELIMITERS if d.lower() in lowered]
    return found + chat_markers_in(text)
