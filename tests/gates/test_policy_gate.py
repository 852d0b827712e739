"""The `policy` gate over real git repositories holding migrated, non-migrated, broken and archived scripts."""

from __future__ import annotations

from pathlib import Path

import pytest

from phasegate.gates import GATE_KINDS, GateStatus, validate_gate_options
from phasegate.gates.policy import collect_files

LOADER = "utils/clean_model_loader.py"
RULES = [
    {
        "kind": "no_attribute_assign",
        "attribute": "chat_template",
        "value": "None",
        "allow": [LOADER],
    },
    {
        "kind": "no_call_keyword",
        "keyword": "add_special_tokens",
        "value": "False",
        "allow": [LOADER],
    },
    {
        "kind": "must_import",
        "files": ["evaluate_*.py", "generate_*.py"],
        "module": "utils.clean_model_loader",
        "name": "CleanModelLoader",
    },
    {
        "kind": "no_call",
        "function": "from_pretrained",
        "receivers": ["AutoModelForCausalLM", "AutoTokenizer"],
        "allow": [LOADER],
    },
]

SCRIPTS = {
    "utils/__init__.py": "",
    LOADER: """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        class CleanModelLoader:
            def load(self, name):
                tok = AutoTokenizer.from_pretrained(name)
                tok.chat_template = None
                return AutoModelForCausalLM.from_pretrained(name), tok

            def encode(self, tok, text):
                return tok(text, add_special_tokens=False)
    """,
    "evaluate_instruction_following.py": """
        from utils.clean_model_loader import CleanModelLoader

        # The grep-based gate failed here: tok.chat_template = None appears in this comment.
        HELP = "never pass add_special_tokens=False yourself"

        model, tok = CleanModelLoader().load("base")
    """,
    "generate_stage1_sft_data.py": """
        from utils.clean_model_loader import CleanModelLoader

        loader = CleanModelLoader()
    """,
    "archived/old_eval.py": """
        from transformers import AutoModelForCausalLM
        tok.chat_template = None
        model = AutoModelForCausalLM.from_pretrained("base")
    """,
}

LEGACY = """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained("base")
    setattr(tok, "chat_template", None)
    ids = tok(
        "Instruction: hi\\nResponse:",
        add_special_tokens=False,
    )
"""


@pytest.fixture
def session(tmp_path: Path, repo_with) -> Path:
    """A session folder whose `scripts/` is a committed git repo of migrated scripts."""
    repo_with(tmp_path / "scripts", SCRIPTS)
    return tmp_path


def options(**extra) -> dict:
    return {"root": "scripts", "exclude": ["archived/**"], "rules": RULES} | extra


def evaluate(make_context, opts: dict, session_dir: Path | None = None):
    return GATE_KINDS["policy"]().evaluate(make_context(opts, session_dir=session_dir))


def test_migrated_tree_passes(session: Path, make_context) -> None:
    result = evaluate(make_context, options())
    assert result.status is GateStatus.PASS, result.summary
    assert result.metrics == {"violations": 0, "files_checked": 4}
    assert result.evidence["violations"] == []


def test_archived_files_fail_unless_excluded(session: Path, make_context) -> None:
    result = evaluate(make_context, options(exclude=[]))
    assert result.status is GateStatus.FAIL
    assert {(v["file"], v["rule"]) for v in result.evidence["violations"]} == {
        ("archived/old_eval.py", "no_attribute_assign"),
        ("archived/old_eval.py", "no_call"),
    }


def test_non_migrated_script_fails_with_every_violation(session: Path, make_context, write) -> None:
    write(session / "scripts", {"evaluate_sft_model.py": LEGACY})
    result = evaluate(make_context, options())
    assert result.status is GateStatus.FAIL
    found = [(v["location"], v["rule"]) for v in result.evidence["violations"]]
    assert found == [
        ("evaluate_sft_model.py:1", "must_import"),
        ("evaluate_sft_model.py:3", "no_call"),
        ("evaluate_sft_model.py:4", "no_attribute_assign"),
        ("evaluate_sft_model.py:7", "no_call_keyword"),
    ]
    assert result.metrics == {"violations": 4, "files_checked": 5}
    assert result.summary.startswith(
        "4 policy violation(s) in 5 file(s); first: evaluate_sft_model.py:1"
    )
    setattr_row = result.evidence["violations"][2]
    assert setattr_row["source"] == 'setattr(tok, "chat_template", None)'


def test_syntax_error_is_reported_and_other_files_still_checked(
    session: Path, make_context, write
) -> None:
    write(
        session / "scripts",
        {
            "evaluate_broken.py": "from utils.clean_model_loader import (\n",
            "x.py": "t.chat_template = None\n",
        },
    )
    result = evaluate(make_context, options())
    rows = {v["file"]: v for v in result.evidence["violations"]}
    assert rows["evaluate_broken.py"]["rule"] == "syntax"
    assert rows["evaluate_broken.py"]["line"] == 1
    assert rows["x.py"]["rule"] == "no_attribute_assign"


def test_renamed_script_is_caught_by_min_files(tmp_path: Path, make_context, repo_with) -> None:
    repo_with(tmp_path / "scripts", {"eval_renamed.py": "print('no loader')\n"})
    rule = RULES[2] | {"files": "evaluate_*.py"}
    result = evaluate(make_context, {"root": "scripts", "rules": [rule]})
    assert result.status is GateStatus.FAIL
    [row] = result.evidence["violations"]
    assert row["file"] == "evaluate_*.py" and "expected at least 1" in row["message"]


def test_git_and_virtualenv_folders_are_never_walked(session: Path, write) -> None:
    write(
        session / "scripts",
        {
            ".venv/lib/site.py": "x = 1\n",
            "pkg/__pycache__/m.py": "x = 1\n",
            "notes.txt": "t.chat_template = None\n",
        },
    )
    files = collect_files(session / "scripts", ["**/*.py"], [])
    assert ".venv/lib/site.py" not in files and "pkg/__pycache__/m.py" not in files
    assert not any(f.startswith(".git/") for f in files)
    assert "notes.txt" not in files
    assert "evaluate_instruction_following.py" in files  # `**/` also matches the root itself


def test_evidence_is_capped_but_the_total_is_kept(tmp_path: Path, make_context, write) -> None:
    write(tmp_path / "code", {"x.py": "".join(f"t{i}.chat_template = None\n" for i in range(7))})
    result = evaluate(make_context, {"root": "code", "rules": RULES[:1], "max_reported": 3})
    assert result.metrics["violations"] == 7
    assert len(result.evidence["violations"]) == 3
    assert result.evidence["violations_total"] == 7 and result.evidence["truncated"] is True


def test_root_placeholder_resolves_into_the_run(tmp_path: Path, make_context, write) -> None:
    write(tmp_path / "runs/r1/artifacts/code", {"ok.py": "x = 1\n"})
    result = evaluate(make_context, {"root": "{artifacts}/code", "rules": RULES[:1]})
    assert result.status is GateStatus.PASS


def test_missing_root_and_empty_selection_fail(tmp_path: Path, make_context, write) -> None:
    assert evaluate(make_context, {"root": "nowhere", "rules": RULES[:1]}).status is GateStatus.FAIL
    write(tmp_path / "docs", {"a.md": "# notes\n"})
    result = evaluate(make_context, {"root": "docs", "rules": RULES[:1]})
    assert result.status is GateStatus.FAIL and "no file" in result.summary


def test_recheck_is_recorded_in_the_options(session: Path) -> None:
    from phasegate.gates.policy import PolicyOptions

    assert PolicyOptions.model_validate(options(recheck="every_phase")).recheck == "every_phase"
    assert PolicyOptions.model_validate(options()).recheck == "once"
    with pytest.raises(ValueError, match="recheck"):
        validate_gate_options("policy", options(recheck="sometimes"))


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"rules": []}, "rules"),
        ({"rules": [{"kind": "no_grep", "pattern": "x"}]}, "no_grep"),
        ({"rules": [{"kind": "no_call", "function": "f", "receiver": ["X"]}]}, "receiver"),
        (
            {"rules": [{"kind": "no_call_keyword", "keyword": "k", "value": "not a literal"}]},
            "not a Python literal",
        ),
        ({"rules": [{"kind": "must_import", "files": [], "module": "m", "name": "N"}]}, "files"),
        (
            {
                "rules": [
                    {"kind": "must_import", "files": "a.py", "module": "utils/loader", "name": "N"}
                ]
            },
            "dotted",
        ),
        ({"rules": RULES, "include": ["/abs/*.py"]}, "relative"),
        ({"rules": RULES, "root": "{nope}/x"}, "unknown placeholder"),
        ({"rules": RULES, "grep": True}, "grep"),
    ],
)
def test_bad_options_are_clear_errors_before_a_run(bad: dict, says: str, make_context) -> None:
    with pytest.raises(ValueError, match="gate kind 'policy'") as caught:
        validate_gate_options("policy", bad)
    assert says in str(caught.value)
    # A gate evaluated with bad options fails rather than raising inside the controller.
    assert evaluate(make_context, bad).status is GateStatus.FAIL
