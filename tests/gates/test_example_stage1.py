"""The Stage 1 migration policy over the sample tree in examples/stage1/scripts (the reference's pre-session gate)."""

from __future__ import annotations

import shutil
from pathlib import Path

from phasegate.gates import GATE_KINDS, GateStatus, validate_gate_options

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "stage1"
LOADER = "utils/clean_model_loader.py"

# The session file's `[[phases.pre_gates]]` table, as a dict (copy it into examples/stage1.toml).
STAGE1_MIGRATION_POLICY = {
    "root": "scripts",
    "include": ["**/*.py"],
    "exclude": ["archived/**"],
    "recheck": "every_phase",
    "rules": [
        {
            "kind": "no_attribute_assign",
            "attribute": "chat_template",
            "value": "None",
            "allow": [LOADER],
            "message": "disables the chat template by hand; load through CleanModelLoader",
        },
        {
            "kind": "no_call_keyword",
            "keyword": "add_special_tokens",
            "value": "False",
            "allow": [LOADER],
            "message": "tokenizes by hand; use CleanModelLoader.tokenize",
        },
        {
            "kind": "must_import",
            "files": ["evaluate_*.py", "generate_*.py"],
            "module": "utils.clean_model_loader",
            "name": "CleanModelLoader",
            "min_files": 2,
        },
        {
            "kind": "no_call",
            "function": "from_pretrained",
            "receivers": ["AutoModelForCausalLM", "AutoModel", "AutoTokenizer"],
            "allow": [LOADER],
            "message": "loads the base model directly; use CleanModelLoader",
        },
    ],
}


def evaluate(make_context, session_dir: Path, options: dict | None = None):
    return GATE_KINDS["policy"]().evaluate(
        make_context(options or STAGE1_MIGRATION_POLICY, session_dir=session_dir)
    )


def test_rule_set_validates() -> None:
    validate_gate_options("policy", STAGE1_MIGRATION_POLICY)


def test_sample_tree_passes(make_context) -> None:
    result = evaluate(make_context, EXAMPLE)
    assert result.status is GateStatus.PASS, result.evidence
    assert result.metrics == {"violations": 0, "files_checked": 4}


def test_archived_script_is_what_the_exclusion_hides(make_context) -> None:
    result = evaluate(make_context, EXAMPLE, STAGE1_MIGRATION_POLICY | {"exclude": []})
    assert {v["file"] for v in result.evidence["violations"]} == {"archived/old_eval.py"}
    assert (
        result.metrics["violations"] == 4
    )  # two direct loads, the template, the tokenizer keyword


def test_copied_tree_with_a_non_migrated_script_fails(
    tmp_path: Path, make_context, repo_with
) -> None:
    shutil.copytree(
        EXAMPLE / "scripts", tmp_path / "scripts", ignore=shutil.ignore_patterns("__pycache__")
    )
    legacy = (EXAMPLE / "scripts/archived/old_eval.py").read_text()
    (tmp_path / "scripts/evaluate_final.py").write_text(legacy)
    repo = repo_with(tmp_path / "scripts")
    repo.index.add([str(p) for p in (tmp_path / "scripts").rglob("*.py")])
    repo.index.commit("sample scripts plus one non-migrated evaluator")
    result = evaluate(make_context, tmp_path)
    assert result.status is GateStatus.FAIL
    assert {(v["file"], v["rule"]) for v in result.evidence["violations"]} == {
        ("evaluate_final.py", "must_import"),
        ("evaluate_final.py", "no_attribute_assign"),
        ("evaluate_final.py", "no_call_keyword"),
        ("evaluate_final.py", "no_call"),
    }
