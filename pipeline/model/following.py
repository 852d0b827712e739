"""Rule-scored instruction-following cases: the sentinel set and the held-out baseline set."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from phasegate.pipeline.generation.generate import GenerationSettings, generate_texts
from phasegate.pipeline.generation.prompts import RESPONSE_STOPS, clean_response, response_prompt

if TYPE_CHECKING:
    from phasegate.pipeline.tokenizer import CleanTokenizer


@dataclass(frozen=True)
class RuleCase:
    """An instruction and the regex its answer must match (`min_matches` distinct matches)."""

    instruction: str
    pattern: str
    min_matches: int = 1
    ignore_case: bool = True

    def follows(self, completion: str) -> bool:
        """Whether `completion` follows the instruction by this case's rule."""
        flags = re.IGNORECASE if self.ignore_case else 0
        found = {m.group(0).lower() for m in re.finditer(self.pattern, completion, flags)}
        return len(found) >= self.min_matches


SENTINEL_CASES: tuple[RuleCase, ...] = (
    RuleCase("What is the capital of France? Answer with one word.", r"\bparis\b"),
    RuleCase("List three primary colors, separated by commas.", r"\b(red|blue|yellow)\b", 2),
    RuleCase("What is 7 plus 5? Answer with a number only.", r"\b12\b|\btwelve\b"),
    RuleCase("Write the word 'cat' in capital letters.", r"\bCAT\b", ignore_case=False),
    RuleCase("Translate 'thank you' into Spanish.", r"\bgracias\b"),
    RuleCase("Reply with only the word OK.", r"^\W*ok\W*$"),
    RuleCase("Spell the word 'star' backwards.", r"\brats\b"),
    RuleCase("Give the opposite of the word 'hot'.", r"\bcold\b"),
    RuleCase("Count from one to five using digits.", r"1\D{1,3}2\D{1,3}3\D{1,3}4\D{1,3}5"),
    RuleCase("Answer yes or no: is ice cold?", r"^\W*yes\b"),
)

HELDOUT_CASES: tuple[RuleCase, ...] = (
    RuleCase("What is the largest planet in our solar system?", r"\bjupiter\b"),
    RuleCase("What is the chemical symbol for gold?", r"\bAu\b", ignore_case=False),
    RuleCase("How many days are in a week? Answer with a number.", r"\b7\b|\bseven\b"),
    RuleCase("Write the number twenty using digits.", r"\b20\b"),
    RuleCase("What color do you get by mixing blue and yellow?", r"\bgreen\b"),
    RuleCase("Translate 'cat' into French.", r"\bchat\b"),
    RuleCase("What is the opposite of 'up'?", r"\bdown\b"),
    RuleCase("Name the season that comes after summer.", r"\b(autumn|fall)\b"),
    RuleCase("What is 3 times 4? Answer with a number only.", r"\b12\b|\btwelve\b"),
    RuleCase("Which farm animal says 'moo'?", r"\bcows?\b"),
    RuleCase("At what temperature in Celsius does water boil at sea level?", r"\b100\b"),
    RuleCase("Write the word 'dog' in capital letters.", r"\bDOG\b", ignore_case=False),
    RuleCase("Name two oceans.", r"\b(atlantic|pacific|indian|arctic|southern)\b", 2),
    RuleCase("What is the first letter of the English alphabet?", r"\bA\b", ignore_case=False),
    RuleCase("List the three states of matter.", r"\b(solid|liquid|gas)\b", 3),
    RuleCase("Answer yes or no: is the sun a star?", r"^\W*yes\b"),
)

FOLLOWING_SETTINGS = GenerationSettings(max_new_tokens=32, stop=RESPONSE_STOPS)


def score_completions(
    cases: Sequence[RuleCase], completions: Sequence[str]
) -> list[dict[str, Any]]:
    """Per-case evidence: instruction, rule, cleaned completion and whether it follows."""
    details = []
    for case, completion in zip(cases, completions, strict=True):
        text = clean_response(completion)
        details.append(
            {
                "instruction": case.instruction,
                "rule": case.pattern,
                "completion": text,
                "follows": case.follows(text),
            }
        )
    return details


def follow_rate(details: Sequence[dict[str, Any]]) -> float:
    """The fraction of scored cases whose completion follows its instruction."""
    return sum(d["follows"] for d in details) / len(details) if details else 0.0


def run_cases(
    model: Any,
    tok: CleanTokenizer,
    cases: Sequence[RuleCase],
    settings: GenerationSettings = FOLLOWING_SETTINGS,
) -> list[dict[str, Any]]:
    """Greedy completion-mode answers to each case, scored by its rule."""
    prompts = [response_prompt(case.instruction) for case in cases]
    results = generate_texts(model, tok, prompts, settings)
    return score_completions(cases, [r.text for r in results])
