"""The sentinel: bare format instructions, whole-answer rules, and every case kept as evidence."""

from __future__ import annotations

import json
from pathlib import Path

from phasegate.pipeline.__main__ import main
from phasegate.pipeline.generation.prompts import DELIMITERS
from phasegate.pipeline.model.contamination import audit_prompts, check_sentinel
from phasegate.pipeline.model.following import (
    SENTINEL_CASES,
    run_sentinel,
    score_sentinel,
    sentinel_answer,
    sentinel_prompt,
)
from phasegate.pipeline.model.loader import LoadedModel

# What clean base models write after such a line in completion mode: more of the document.
BASE_STYLE = [
    "Reply with only the word NO.",
    "CAT\nWrite the word dog in capital letters and nothing else.",
    "1. red\n2. green\n3. blue",
    "The sea is a large body of salt water that covers most of the Earth.",
    "blue blue blue blue blue blue",
    "Write the numbers 6 to 10 separated by commas, with no other text.",
    "A. Respond with the single letter Y.",
    "Put the word pear inside square brackets.",
    "Yes, most birds can fly, but penguins cannot.",
    "Reply with the number 43 and nothing else.",
    "hello world",
    "Say hello in lowercase letters, with no punctuation.",
]
CASE_KEYS = {"instruction", "prompt", "output", "answer", "rule", "follows", "score"}


def test_sentinel_prompts_are_bare_instructions() -> None:
    for case in SENTINEL_CASES:
        prompt = sentinel_prompt(case)
        assert prompt == case.instruction + "\n"
        assert not any(d.lower() in prompt.lower() for d in DELIMITERS)  # no completion scaffold
    assert [sentinel_prompt(c) for c in SENTINEL_CASES] == audit_prompts()[-len(SENTINEL_CASES) :]


def test_a_base_model_running_on_follows_none() -> None:
    assert len(BASE_STYLE) == len(SENTINEL_CASES) >= 10
    details = score_sentinel([""] * len(BASE_STYLE), BASE_STYLE, BASE_STYLE)
    assert [d["follows"] for d in details] == [False] * len(SENTINEL_CASES)
    assert check_sentinel(details, sentinel_max=0.7).passed


def test_the_answer_ends_with_the_turn_or_a_blank_line(loaded: LoadedModel) -> None:
    tok = loaded.tokenizer
    hf = tok.hf_tokenizer
    im_end = hf.convert_tokens_to_ids("<|im_end|>")
    after_turn = tok.encode("\nuser\nnext question")
    assert sentinel_answer(tok, tok.encode(" OK") + [im_end] + after_turn) == "OK"
    assert sentinel_answer(tok, tok.encode("OK") + [hf.eos_token_id] + after_turn) == "OK"
    assert sentinel_answer(tok, tok.encode("OK\n\nReply with only the word NO.")) == "OK"
    run_on = sentinel_answer(tok, tok.encode("OK\nReply with only the word NO."))
    assert not SENTINEL_CASES[0].follows(run_on) and SENTINEL_CASES[0].follows("OK")


def test_run_sentinel_sends_the_bare_prompts_and_keeps_every_case(loaded: LoadedModel) -> None:
    model, tok = loaded.model, loaded.tokenizer
    sent: list[str] = []

    def record(_module, _args, kwargs):
        if not sent:  # the first forward of generate() holds the whole prompts
            rows = zip(kwargs["input_ids"], kwargs["attention_mask"], strict=True)
            sent.extend(tok.decode(row[mask.bool()].tolist()) for row, mask in rows)

    handle = model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        details = run_sentinel(model, tok)
    finally:
        handle.remove()
    prompts = [sentinel_prompt(c) for c in SENTINEL_CASES]
    assert sorted(sent) == sorted(prompts)
    assert [d["prompt"] for d in details] == prompts
    assert all(set(d) == CASE_KEYS for d in details)
    assert all(d["score"] == float(d["follows"]) and d["rule"].startswith("whole answer") for d in details)


def test_load_check_keeps_every_case_in_its_artifact(tmp_path: Path, tiny_model_dir: Path) -> None:
    artifacts = tmp_path / "run" / "artifacts" / "load_check"
    context = tmp_path / "load_check.json"
    context.write_text(json.dumps({
        "phase_id": "load_check", "kind": "load_check", "run_dir": str(tmp_path / "run"),
        "session_dir": str(tmp_path), "artifacts_dir": str(artifacts),
        "model": {"path": str(tiny_model_dir)}, "params": {},
    }))
    assert main(["load_check", "--context", str(context)]) == 0
    report = json.loads((artifacts / "load_check.json").read_text())
    provenance = json.loads((artifacts / "provenance.json").read_text())
    for checks in (report["provenance"]["checks"], provenance["checks"]):
        sentinel = next(c for c in checks if c["name"] == "sentinel")
        evidence = sentinel["evidence"]
        assert evidence["expected_clean_base_range"] == [0.10, 0.30]
        assert evidence["sentinel_max"] == 0.70 and evidence["follow_rate"] <= 0.70
        cases = evidence["cases"]
        assert [c["instruction"] for c in cases] == [c.instruction for c in SENTINEL_CASES]
        assert all(set(c) == CASE_KEYS for c in cases)
    assert provenance["bos_added"] is True and provenance["bos_token"] == "<s>"
