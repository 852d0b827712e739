"""Rule-scored instruction following: the bare-instruction sentinel set and the held-out baseline set."""

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


@dataclass(frozen=True)
class SentinelCase:
    """A bare format instruction and the regex its whole answer must match (nothing else allowed)."""

    instruction: str
    rule: str
    ignore_case: bool = True

    def follows(self, answer: str) -> bool:
        """Whether `answer`, all of it, is what the instruction asked for."""
        flags = re.IGNORECASE if self.ignore_case else 0
        return re.fullmatch(self.rule, answer, flags) is not None


# The sentinel asks bare instructions, as a chat user would, and scores instruction following:
# format constraints that end with "and nothing else". A chat-templated or instruction-tuned model
# answers exactly that and ends its turn; a clean base model in completion mode treats the line as
# a document and runs on (another instruction, a list, prose), so it follows few of them. Expected
# for a clean base model: about 10-30% (the reference workflow); above `sentinel_max` (0.70) a
# chat template leaked or the model is not a base model. No trivia: a strong base model completes
# "the capital of France is" anyway, which says nothing about templates.
SENTINEL_CASES: tuple[SentinelCase, ...] = (
    SentinelCase("Reply with only the word OK.", r"\W*ok\W*"),
    SentinelCase("Write the word cat in capital letters and nothing else.", r"\W*CAT\W*", False),
    SentinelCase("List three colors separated by semicolons and nothing else.",
                 r"\s*[a-z]+(\s*;\s*[a-z]+){2}\s*\.?\s*"),
    SentinelCase("Describe the sea in exactly two words.", r"\W*[a-z'-]+[\s,]+[a-z'-]+\W*"),
    SentinelCase("Repeat the word blue three times, separated by spaces, and write nothing else.",
                 r"\W*blue blue blue\W*"),
    SentinelCase("Write the numbers 1 to 5 separated by commas, with no other text.",
                 r"\s*1\s*,\s*2\s*,\s*3\s*,\s*4\s*,\s*5\s*\.?\s*"),
    SentinelCase("Respond with the single letter Z and nothing else.", r"\W*z\W*"),
    SentinelCase("Put the word apple inside square brackets and write nothing else.",
                 r"\s*\[\s*apple\s*\]\s*\.?\s*"),
    SentinelCase("Answer with only yes or no: can birds fly?", r"\W*(yes|no)\W*"),
    SentinelCase("Reply with the number 42 and nothing else.", r"\W*42\W*"),
    SentinelCase("Write the word hello on one line and the word world on the next, nothing else.",
                 r"\W*hello\W*\n\W*world\W*"),
    SentinelCase("Say goodbye in lowercase letters, with no punctuation.", r"\s*goodbye\s*", False),
)
EXPECTED_CLEAN_BASE_RATE = (0.10, 0.30)

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
# A blank line ends a sentinel answer; so does the end of the model's turn (EOS or a chat marker).
SENTINEL_STOPS: tuple[str, ...] = ("\n\n",)
SENTINEL_SETTINGS = GenerationSettings(max_new_tokens=32, stop=SENTINEL_STOPS)


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


def sentinel_prompt(case: SentinelCase) -> str:
    """The bare instruction and a newline: no completion scaffold, no template."""
    # The newline leaves the model at the start of a line, where a reply would begin; without it
    # any model mostly goes on with the instruction's own sentence, and the rule scores nothing.
    return case.instruction + "\n"


def sentinel_answer(tok: CleanTokenizer, new_ids: Sequence[int]) -> str:
    """The text of the model's turn: up to EOS or its first chat marker, then up to a blank line."""
    ends = tok.eos_token_ids | tok.marker_token_ids
    turn = next((i for i, t in enumerate(new_ids) if t in ends), len(new_ids))
    return clean_response(tok.decode(list(new_ids)[:turn]), SENTINEL_STOPS)


def score_sentinel(
    prompts: Sequence[str], outputs: Sequence[str], answers: Sequence[str]
) -> list[dict[str, Any]]:
    """Per-case evidence: prompt, raw output, the scored answer, the rule and the score."""
    details = []
    for case, prompt, output, answer in zip(SENTINEL_CASES, prompts, outputs, answers, strict=True):
        follows = case.follows(answer)
        details.append(
            {
                "instruction": case.instruction,
                "prompt": prompt,
                "output": output,
                "answer": answer,
                "rule": f"whole answer matches /{case.rule}/" + ("i" if case.ignore_case else ""),
                "follows": follows,
                "score": 1.0 if follows else 0.0,
            }
        )
    return details


def run_sentinel(model: Any, tok: CleanTokenizer) -> list[dict[str, Any]]:
    """Greedy answers to the bare sentinel instructions, each scored by its format rule."""
    prompts = [sentinel_prompt(case) for case in SENTINEL_CASES]
    results = generate_texts(model, tok, prompts, SENTINEL_SETTINGS)
    answers = [sentinel_answer(tok, r.token_ids) for r in results]
    return score_sentinel(prompts, [r.raw_text for r in results], answers)
