"""Each policy rule kind, positive and negative, on single files (AST, so strings and comments never match)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from phasegate.gates.policy import PolicyOptions, check_file

CHAT_TEMPLATE_NONE = {"kind": "no_attribute_assign", "attribute": "chat_template", "value": "None"}
NO_SPECIAL_TOKENS = {"kind": "no_call_keyword", "keyword": "add_special_tokens", "value": "False"}
MUST_IMPORT_LOADER = {
    "kind": "must_import",
    "files": "evaluate_*.py",
    "module": "utils.clean_model_loader",
    "name": "CleanModelLoader",
}
NO_DIRECT_LOAD = {
    "kind": "no_call",
    "function": "from_pretrained",
    "receivers": ["AutoModelForCausalLM", "AutoTokenizer"],
}


def lines_flagged(
    tmp_path: Path, source: str, rule: dict[str, Any], relpath: str = "script.py"
) -> list[int]:
    """Write `source` as `relpath` and return the lines the rule flags."""
    path = tmp_path / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
    options = PolicyOptions.model_validate({"rules": [rule]})
    return [v.line for v in check_file(tmp_path, relpath, options.rules)]


@pytest.mark.parametrize(
    "source",
    [
        "tok.chat_template = None\n",
        "self.tokenizer.chat_template = None\n",
        "tok.chat_template: str | None = None\n",
        "a.chat_template = b.chat_template = None\n",
        "tok.chat_template, n = None, 3\n",
        "setattr(tok, 'chat_template', None)\n",
        "import builtins\nbuiltins.setattr(tok, 'chat_template', None)\n",
    ],
)
def test_attribute_assign_forms_are_caught(tmp_path: Path, source: str) -> None:
    assert lines_flagged(tmp_path, source, CHAT_TEMPLATE_NONE)


@pytest.mark.parametrize(
    "source",
    [
        "# tok.chat_template = None\n",
        "NOTE = 'tok.chat_template = None'\n",
        '"""Never write tok.chat_template = None."""\n',
        "chat_template = None\n",  # a plain name, not an attribute
        "tok.chat_template = '{{ messages }}'\n",
        "if tok.chat_template == None:\n    pass\n",
        "setattr(tok, name, None)\n",  # not knowable statically
        "tok.chat_template, n = load()\n",  # value unknown, rule asks for None
    ],
)
def test_attribute_assign_lookalikes_pass(tmp_path: Path, source: str) -> None:
    assert lines_flagged(tmp_path, source, CHAT_TEMPLATE_NONE) == []


def test_attribute_assign_without_value_flags_every_assignment(tmp_path: Path) -> None:
    rule = {"kind": "no_attribute_assign", "attribute": "chat_template"}
    source = (
        "a.chat_template = None\nb.chat_template = 'x'\nc.chat_template += 'y'\nd.other = None\n"
    )
    assert lines_flagged(tmp_path, source, rule) == [1, 2, 3]


def test_augmented_assign_is_caught(tmp_path: Path) -> None:
    rule = {"kind": "no_attribute_assign", "attribute": "retries", "value": "1"}
    assert lines_flagged(tmp_path, "cfg.retries += 1\n", rule) == [1]


def test_literal_types_are_kept_apart(tmp_path: Path) -> None:
    # False == 0 in Python; a rule about False must not flag 0.
    rule = {"kind": "no_call_keyword", "keyword": "add_special_tokens", "value": "False"}
    assert lines_flagged(tmp_path, "tok(p, add_special_tokens=0)\n", rule) == []


@pytest.mark.parametrize(("value", "flagged"), [(False, [1]), (0, [2]), ("False", [1]), ("0", [2])])
def test_value_may_be_a_toml_scalar_or_python_source(
    tmp_path: Path, value: object, flagged: list[int]
) -> None:
    rule = {"kind": "no_call_keyword", "keyword": "k", "value": value}
    assert lines_flagged(tmp_path, "f(k=False)\nf(k=0)\n", rule) == flagged


def test_call_keyword_single_and_multi_line(tmp_path: Path) -> None:
    source = """
        a = tok(prompt, add_special_tokens=False)
        b = tok(
            prompt,
            return_tensors="pt",
            add_special_tokens = False,
        )
        c = tok(prompt, **{"add_special_tokens": False})
    """
    assert lines_flagged(tmp_path, source, NO_SPECIAL_TOKENS) == [1, 5, 7]


@pytest.mark.parametrize(
    "source",
    [
        "tok(prompt, add_special_tokens=True)\n",
        "# tok(prompt, add_special_tokens=False)\n",
        "cmd = 'tok(prompt, add_special_tokens=False)'\n",
        "def encode(p, add_special_tokens=False):\n    return p\n",  # a default, not a call
        "opts = dict(add_special_tokens_x=False)\n",
    ],
)
def test_call_keyword_lookalikes_pass(tmp_path: Path, source: str) -> None:
    assert lines_flagged(tmp_path, source, NO_SPECIAL_TOKENS) == []


def test_violation_reports_the_offending_source_line(tmp_path: Path) -> None:
    (tmp_path / "x.py").write_text("a = 1\nb = tok(\n    p,\n    add_special_tokens=False,\n)\n")
    options = PolicyOptions.model_validate({"rules": [NO_SPECIAL_TOKENS]})
    [violation] = check_file(tmp_path, "x.py", options.rules)
    assert (violation.file, violation.line, violation.rule) == ("x.py", 4, "no_call_keyword")
    assert violation.source == "add_special_tokens=False,"
    assert "add_special_tokens=False" in violation.message


@pytest.mark.parametrize(
    ("source", "flagged"),
    [
        ("from utils.clean_model_loader import CleanModelLoader\n", False),
        ("from utils.clean_model_loader import CleanModelLoader as Loader\n", False),
        (
            "try:\n    from utils.clean_model_loader import X, CleanModelLoader\nexcept ImportError:\n    raise\n",
            False,
        ),
        ("import utils.clean_model_loader\n", True),  # only the from-import form counts
        (
            "from .utils.clean_model_loader import CleanModelLoader\n",
            True,
        ),  # relative: a different module
        ("from utils.other import CleanModelLoader\n", True),
        ("# from utils.clean_model_loader import CleanModelLoader\n", True),
        ("", True),
    ],
)
def test_must_import(tmp_path: Path, source: str, flagged: bool) -> None:
    assert bool(lines_flagged(tmp_path, source, MUST_IMPORT_LOADER, "evaluate_x.py")) is flagged


def test_must_import_ignores_files_outside_its_glob(tmp_path: Path) -> None:
    assert lines_flagged(tmp_path, "print()\n", MUST_IMPORT_LOADER, "train.py") == []
    assert lines_flagged(tmp_path, "print()\n", MUST_IMPORT_LOADER, "sub/evaluate_x.py") == []


@pytest.mark.parametrize(
    ("source", "flagged"),
    [
        ("m = AutoModelForCausalLM.from_pretrained(name)\n", True),
        ("m = transformers.AutoModelForCausalLM.from_pretrained(\n    name,\n)\n", True),
        ("t = AutoTokenizer.from_pretrained(name)\n", True),
        ("m = PeftModel.from_pretrained(base, adapter)\n", False),  # receiver not listed
        ("m = from_pretrained(name)\n", False),  # no receiver while receivers are listed
        ("s = 'AutoModelForCausalLM.from_pretrained(name)'\n", False),
        ("f = AutoModelForCausalLM.from_pretrained\n", False),  # referenced, not called
        ("from transformers import AutoModelForCausalLM as M\nm = M.from_pretrained(n)\n", True),
    ],
)
def test_no_call_with_receivers(tmp_path: Path, source: str, flagged: bool) -> None:
    assert bool(lines_flagged(tmp_path, source, NO_DIRECT_LOAD)) is flagged


def test_no_call_without_receivers_flags_every_callee_named_so(tmp_path: Path) -> None:
    rule = {"kind": "no_call", "function": "from_pretrained"}
    source = "a = X.from_pretrained(n)\nb = from_pretrained(n)\nc = y.load(n)\n"
    assert lines_flagged(tmp_path, source, rule) == [1, 2]


def test_allow_list_exempts_exact_files_and_globs(tmp_path: Path) -> None:
    source = "tok.chat_template = None\n"
    exact = CHAT_TEMPLATE_NONE | {"allow": ["utils/clean_model_loader.py"]}
    assert lines_flagged(tmp_path, source, exact, "utils/clean_model_loader.py") == []
    assert lines_flagged(tmp_path, source, exact, "utils/other.py") == [1]
    folder = CHAT_TEMPLATE_NONE | {"allow": ["utils/**"]}
    assert lines_flagged(tmp_path, source, folder, "utils/deep/x.py") == []


def test_allowed_file_still_has_to_import(tmp_path: Path) -> None:
    rule = MUST_IMPORT_LOADER | {"allow": ["evaluate_legacy.py"]}
    assert lines_flagged(tmp_path, "", rule, "evaluate_legacy.py") == []
    assert lines_flagged(tmp_path, "", rule, "evaluate_new.py") == [1]


def test_custom_message_replaces_the_default(tmp_path: Path) -> None:
    (tmp_path / "x.py").write_text("tok.chat_template = None\n")
    rule = CHAT_TEMPLATE_NONE | {"message": "use CleanModelLoader"}
    [violation] = check_file(
        tmp_path, "x.py", PolicyOptions.model_validate({"rules": [rule]}).rules
    )
    assert violation.message == "use CleanModelLoader"


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (b"def broken(:\n    pass\n", 1),
        (b"x = 1\nif x\n    y = 2\n", 2),
        (b"x = 1\x00\n", 1),
        (b"x = '\xff'\n", 1),
        (b"x = " + b"-" * 200_000 + b"1\n", 1),  # the parser gives up (MemoryError)
    ],
)
def test_unparsable_file_is_a_violation_not_a_crash(
    tmp_path: Path, content: bytes, line: int
) -> None:
    (tmp_path / "bad.py").write_bytes(content)
    options = PolicyOptions.model_validate({"rules": [CHAT_TEMPLATE_NONE]})
    [violation] = check_file(tmp_path, "bad.py", options.rules)
    assert violation.rule == "syntax"
    assert violation.line == line
    assert violation.message.startswith("does not parse")
