"""ReviewerSpec validation and the argv each preset builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from phasegate.reviews import ReviewerSpec, UnsafeReviewerArgs, build_invocation, find_forbidden
from phasegate.reviews.config import ensure_safe
from phasegate.reviews.presets import GEMINI_INSTRUCTION

FORBIDDEN = [
    "--yolo",
    "--dangerously-bypass-approvals-and-sandbox",
    "danger-full-access",
    "--dangerously-skip-permissions",
    "--approval-mode yolo",
]
PROMPT = "# Review request\nsecret-free prompt\n"


def _argv(spec: ReviewerSpec, tmp_path: Path, attempt: int = 1) -> tuple[str, ...]:
    return build_invocation(spec, PROMPT, tmp_path, attempt, ("temperature",)).argv


def test_exactly_one_of_preset_and_command() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        ReviewerSpec()
    with pytest.raises(ValidationError, match="exactly one"):
        ReviewerSpec(preset="codex", command=["x"])
    with pytest.raises(ValidationError, match="must name a program"):
        ReviewerSpec(command=[])


def test_unknown_fields_and_presets_are_refused() -> None:
    with pytest.raises(ValidationError):
        ReviewerSpec(preset="codex", workdir="/tmp")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        ReviewerSpec(preset="copilot")  # type: ignore[arg-type]


def test_every_field_is_documented() -> None:
    assert all(f.description for f in ReviewerSpec.model_fields.values())


def test_defaults_and_key_env_per_preset() -> None:
    spec = ReviewerSpec(preset="claude")
    assert spec.timeout_s == 600 and spec.retries == 2
    assert spec.resolved_key_env() == "ANTHROPIC_API_KEY"
    assert ReviewerSpec(preset="codex").resolved_key_env() == "CODEX_API_KEY"
    assert ReviewerSpec(preset="gemini").resolved_key_env() == "GEMINI_API_KEY"
    assert ReviewerSpec(preset="llm", key_env="MY_KEY").resolved_key_env() == "MY_KEY"
    assert ReviewerSpec(command=["x"]).resolved_key_env() is None
    with pytest.raises(ValidationError, match="not an environment variable name"):
        ReviewerSpec(preset="llm", key_env="A B")


@pytest.mark.parametrize(
    "extra",
    [
        ["--yolo"],
        ["-y", "--yolo"],
        ["--dangerously-bypass-approvals-and-sandbox"],
        ["--sandbox", "danger-full-access"],
        ["--sandbox=danger-full-access"],
        ["-c", 'sandbox_mode="danger-full-access"'],
        ["--dangerously-skip-permissions"],
        ["--permission-mode", "bypassPermissions"],
        ["--approval-mode", "yolo"],
        ["--approval-mode=yolo"],
        ["--approve-for-me"],
        ["--sandbox", "workspace-write"],
        ["--add-dir", "/"],
        ["--approval-mode", "auto_edit"],
    ],
)
def test_unsandboxing_extra_args_are_refused_with_a_clear_error(extra: list[str]) -> None:
    with pytest.raises(ValidationError, match="without a sandbox or approvals"):
        ReviewerSpec(preset="codex", extra_args=extra)
    with pytest.raises(ValidationError, match="without a sandbox or approvals"):
        ReviewerSpec(command=["my-reviewer", *extra])


def test_full_auto_refusal_says_it_enabled_workspace_writes_and_is_gone() -> None:
    with pytest.raises(ValidationError, match="write to its workspace") as refused:
        ReviewerSpec(preset="codex", extra_args=["--full-auto"])
    assert "current codex has no such flag" in str(refused.value)
    assert "without a sandbox" not in str(refused.value)
    with pytest.raises(UnsafeReviewerArgs, match="enabled workspace writes"):
        ensure_safe(["codex", "exec", "--full-auto"], "reviewer 'codex' argv")


def test_gemini_short_yolo_is_refused_for_the_gemini_preset_only() -> None:
    with pytest.raises(ValidationError, match="'-y'"):
        ReviewerSpec(preset="gemini", extra_args=["-y"])
    assert ReviewerSpec(preset="llm", extra_args=["-y"]).extra_args == ["-y"]


def test_harmless_args_pass_and_ensure_safe_names_the_flag() -> None:
    assert find_forbidden(["--approval-mode", "plan", "--sandbox", "read-only"]) is None
    with pytest.raises(UnsafeReviewerArgs, match="'--yolo'"):
        ensure_safe(["gemini", "--yolo"], "reviewer 'gemini' argv")


@pytest.mark.parametrize("preset", ["claude", "codex", "gemini", "llm"])
def test_no_preset_argv_carries_a_forbidden_flag(preset: str, tmp_path: Path) -> None:
    argv = _argv(ReviewerSpec(preset=preset, model="m1"), tmp_path)
    joined = " ".join(argv)
    for flag in FORBIDDEN:
        assert flag not in joined
    assert find_forbidden(argv) is None
    assert argv[0] == preset and "m1" in argv


@pytest.mark.parametrize("preset", ["claude", "codex", "gemini", "llm"])
def test_prompt_goes_on_stdin_never_in_argv(preset: str, tmp_path: Path) -> None:
    invocation = build_invocation(ReviewerSpec(preset=preset), PROMPT, tmp_path, 1)
    assert invocation.stdin == PROMPT.encode()
    assert not any("secret-free prompt" in arg for arg in invocation.argv)


def test_claude_argv_is_headless_bare_json_schema_bound_and_toolless(tmp_path: Path) -> None:
    argv = _argv(ReviewerSpec(preset="claude"), tmp_path)
    assert argv[:3] == ("claude", "-p", "--bare")
    # stream-json (print mode needs --verbose with it): retries show while they happen, so offline ends early.
    assert argv[argv.index("--output-format") + 1] == "stream-json" and "--verbose" in argv
    assert argv[argv.index("--permission-mode") + 1] == "dontAsk"
    denied = argv[argv.index("--disallowedTools") + 1].split(",")
    assert {"Bash", "Edit", "Write", "WebFetch"} <= set(denied)
    assert argv[argv.index("--tools") + 1] == ""
    assert "--no-session-persistence" in argv and "--effort" not in argv
    schema = json.loads(argv[argv.index("--json-schema") + 1])
    assert schema["required"] == ["decision", "reasons", "changes", "gate_id", "nonce"]


def test_effort_becomes_each_clis_own_argument(tmp_path: Path) -> None:
    codex = _argv(ReviewerSpec(preset="codex", effort="high"), tmp_path)
    assert codex[codex.index("-c") + 1] == 'model_reasoning_effort="high"'
    assert codex[-1] == "-"
    claude = _argv(ReviewerSpec(preset="claude", effort="max"), tmp_path)
    assert claude[claude.index("--effort") + 1] == "max"
    assert "-c" not in _argv(ReviewerSpec(preset="codex"), tmp_path)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"preset": "gemini", "effort": "high"}, "codex and claude presets only"),
        ({"command": ["x"], "effort": "high"}, "not 'command'"),
        ({"preset": "codex", "effort": 'high" sandbox_mode="x'}, "use one of minimal, low"),
        ({"preset": "claude", "effort": "minimal"}, "not a claude level"),
        ({"preset": "codex", "schema": False}, "llm preset only"),
    ],
)
def test_effort_and_schema_are_refused_where_the_cli_has_no_such_option(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        ReviewerSpec.model_validate(fields)


def test_codex_argv_is_read_only_isolated_with_strict_schema_and_fresh_output(
    tmp_path: Path,
) -> None:
    spec = ReviewerSpec(preset="codex")
    first = build_invocation(spec, PROMPT, tmp_path, 1, ("temperature",))
    argv = first.argv
    assert argv[:3] == ("codex", "exec", "--json") and argv[-1] == "-"
    assert argv[argv.index("--sandbox") + 1] == "read-only"
    for flag in ("--skip-git-repo-check", "--ephemeral", "--ignore-user-config", "--ignore-rules"):
        assert flag in argv
    schema = json.loads(Path(argv[argv.index("--output-schema") + 1]).read_text())
    assert schema["additionalProperties"] is False
    assert schema["properties"]["changes"]["required"] == ["temperature"]
    assert schema["properties"]["changes"]["additionalProperties"] is False
    second = build_invocation(spec, PROMPT, tmp_path, 2, ("temperature",))
    assert first.output_file is not None and second.output_file is not None
    assert first.output_file != second.output_file
    assert str(first.output_file) == argv[argv.index("--output-last-message") + 1]
    assert not first.output_file.exists()


def test_gemini_argv_is_headless_json_plan_mode(tmp_path: Path) -> None:
    argv = _argv(ReviewerSpec(preset="gemini"), tmp_path)
    assert argv[:3] == ("gemini", "-p", GEMINI_INSTRUCTION)
    assert argv[argv.index("--output-format") + 1] == "json"
    assert argv[argv.index("--approval-mode") + 1] == "plan"
    assert "--skip-trust" in argv
    assert argv[argv.index("-e") + 1] == "none"


def test_llm_argv_uses_schema_file_no_log_and_usage(tmp_path: Path) -> None:
    argv = _argv(ReviewerSpec(preset="llm", model="gpt-4o-mini"), tmp_path)
    assert argv[:2] == ("llm", "prompt")
    assert {"--no-log", "--usage", "--no-stream"} <= set(argv)
    assert json.loads(Path(argv[argv.index("--schema") + 1]).read_text())["type"] == "object"


def test_llm_schema_false_drops_the_schema_flag(tmp_path: Path) -> None:
    spec = ReviewerSpec.model_validate({"preset": "llm", "model": "markov", "schema": False})
    argv = _argv(spec, tmp_path)
    assert "--schema" not in argv and argv[argv.index("--model") + 1] == "markov"
    assert {"--no-log", "--usage", "--no-stream"} <= set(argv)


def test_command_placeholders_become_bundle_paths(tmp_path: Path) -> None:
    spec = ReviewerSpec(command=["my-reviewer", "--prompt", "{prompt_file}", "{schema_file}"])
    argv = _argv(spec, tmp_path)
    assert argv[2] == str(tmp_path / "prompt.md")
    assert Path(argv[3]).parent == tmp_path and Path(argv[3]).exists()
