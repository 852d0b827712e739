"""Completion-style prompts, the instruction-list parser, response cleaning, leakage."""

from __future__ import annotations

from phasegate.pipeline.generation.prompts import (
    CHAT_MARKERS,
    clean_response,
    delimiter_leakage,
    instruction_critic_prompt,
    instruction_generation_prompt,
    pair_critic_prompt,
    parse_instruction_list,
    response_prompt,
)


def test_response_prompt_is_completion_style() -> None:
    assert response_prompt("  Name a fruit. ") == "Instruction: Name a fruit.\nResponse:"


def test_instruction_generation_prompt_is_seeded_and_open() -> None:
    prompt = instruction_generation_prompt(3, n_shots=4)
    assert prompt == instruction_generation_prompt(3, n_shots=4)
    assert prompt != instruction_generation_prompt(4, n_shots=4)
    assert prompt.endswith("\n5.")
    assert [line[:2] for line in prompt.splitlines()[-5:]] == ["1.", "2.", "3.", "4.", "5."]
    assert not any(m in prompt for m in CHAT_MARKERS)


def test_parse_instruction_list() -> None:
    text = " Name two rivers in Africa.\n7. Explain  photosynthesis simply.\n8) Name two rivers in Africa.\nThe end."
    assert parse_instruction_list(text) == [
        "Name two rivers in Africa.",
        "Explain photosynthesis simply.",
    ]
    assert parse_instruction_list("  \n") == []
    assert parse_instruction_list("x" * 400) == []


def test_critic_prompts_end_where_the_grade_token_comes() -> None:
    assert instruction_critic_prompt("Name a fruit.").endswith("Instruction: Name a fruit.\nGrade:")
    pair = pair_critic_prompt("Name a fruit.", " Apple. ")
    assert pair.endswith("Instruction: Name a fruit.\nResponse: Apple.\nGrade:")
    assert "A = the response fulfils the instruction" in pair


def test_clean_response_cuts_at_the_earliest_stop() -> None:
    text = " Apple and pear.\n\nInstruction: more\nResponse: x"
    assert clean_response(text) == "Apple and pear."
    assert clean_response("Pear.### next", stops=("###",)) == "Pear."
    assert clean_response("  no stop here  ", stops=()) == "no stop here"


def test_delimiter_leakage() -> None:
    assert delimiter_leakage("Apples are red.") == []
    assert delimiter_leakage("Sure. instruction: do more") == ["Instruction:"]
    assert delimiter_leakage("a ### b Response: c") == ["Response:", "###"]
    assert delimiter_leakage("hi <|im_end|>") == ["<|im_end|>"]
