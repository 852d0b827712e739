"""The demo corpus: deterministic, in the pipeline's prompt shapes, disjoint from the held-out test set."""

from __future__ import annotations

import itertools
import re

from phasegate.demo import corpus as demo_corpus
from phasegate.pipeline.data.dedup import normalize_text
from phasegate.pipeline.data.testset import TEMPLATES
from phasegate.pipeline.generation.prompts import (
    INSTRUCTION_CRITIC_RUBRIC,
    INSTRUCTION_LIST_HEADER,
    PAIR_CRITIC_RUBRIC,
)


def test_same_seed_same_corpus_and_digest():
    assert demo_corpus.documents(0) == demo_corpus.documents(0)
    assert demo_corpus.corpus_digest(0) == demo_corpus.corpus_digest(0) != demo_corpus.corpus_digest(1)


def test_no_possible_test_instruction_is_in_the_corpus():
    test = {normalize_text(t.format(*values)) for templates, slots in TEMPLATES.values()
            for t in templates for values in itertools.product(*slots)}
    # The rubrics' own examples (part of every critic prompt) aside, nothing the model learns to
    # write as an instruction may be a test instruction.
    docs = [d.removeprefix(INSTRUCTION_CRITIC_RUBRIC).removeprefix(PAIR_CRITIC_RUBRIC)
            for d in demo_corpus.documents()]
    text = normalize_text("\n".join(docs))
    assert not [t for t in test if f" {t} " in f" {text} "]


def test_every_kind_of_document_is_there_in_the_prompt_shapes():
    kinds = demo_corpus.documents_by_kind()
    assert all(d.startswith("Instruction: ") and "\nResponse: " in d for d in kinds["answers"])
    assert all(d.startswith(INSTRUCTION_LIST_HEADER + "1. ") for d in kinds["lists"])
    assert all(d.endswith(("Grade: A", "Grade: B")) for d in kinds["instruction_critic"] + kinds["pair_critic"])


def test_the_pair_critic_grades_by_its_written_rule():
    graded = re.compile(r"Response: (.*)\nGrade: ([AB])")
    for doc in demo_corpus.documents_by_kind()["pair_critic"]:
        for response, grade in graded.findall(doc.removeprefix(PAIR_CRITIC_RUBRIC)):
            evasive = response in demo_corpus.EVASIVE or not response
            assert grade == "B" if evasive else True


def test_some_answers_are_evasive_like_a_real_base_models_noise():
    answers = demo_corpus.documents_by_kind()["answers"]
    share = sum(a.split("\nResponse: ")[1] in demo_corpus.EVASIVE for a in answers) / len(answers)
    assert 0.05 < share < 0.3
