"""The `[reviewers.<name>]` table of the session file, validated with pydantic."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from phasegate.floor.errors import InvalidInput

PresetName = Literal["codex", "claude", "gemini", "llm"]

# The one credential variable each preset's CLI reads; every other secret stays out of the
# child's environment (see runner.child_env).
DEFAULT_KEY_ENV: dict[str, str] = {
    # `codex exec` authenticates from CODEX_API_KEY (or a login in $CODEX_HOME/auth.json, found
    # through HOME); the official SDKs pass their key this way. Source: openai/codex
    # sdk/typescript, and https://codex.danielvaughan.com/2026/06/03/codex-cli-environment-
    # variables-runtime-configuration-headless-ci-container-deployment/ (secondary).
    "codex": "CODEX_API_KEY",
    # `--bare` accepts only ANTHROPIC_API_KEY or an apiKeyHelper (anthropics/claude-code
    # CHANGELOG.md, 2.1.81: "requires ANTHROPIC_API_KEY ... OAuth and keychain auth disabled").
    "claude": "ANTHROPIC_API_KEY",
    # google-gemini/gemini-cli docs/get-started/authentication.mdx.
    "gemini": "GEMINI_API_KEY",
    # llm's default OpenAI models read OPENAI_API_KEY; other plugins need key_env set.
    "llm": "OPENAI_API_KEY",
}

# Flags that hand a reviewer write access or switch off its sandbox/approvals. A reviewer may
# only advise, so these are refused wherever argv is assembled (spec, extra_args, final argv).
FORBIDDEN_FLAGS: frozenset[str] = frozenset(
    {
        "--yolo",
        "--dangerously-bypass-approvals-and-sandbox",
        "--dangerously-skip-permissions",
        "--allow-dangerously-skip-permissions",
        "--full-auto",
        "--not-so-yolo",
        # codex-cli 0.171 `exec --help`: "Route approval requests through automatic review
        # using the workspace-write sandbox" and "Additional directories that should be
        # writable alongside the primary workspace".
        "--approve-for-me",
        "--add-dir",
    }
)
# Values that are dangerous wherever they appear, including inside `-c key=value` overrides.
FORBIDDEN_SUBSTRINGS: tuple[str, ...] = (
    "danger-full-access",
    "workspace-write",
    "bypassPermissions",
)
_APPROVAL_MODE = "--approval-mode"
# gemini-cli 0.61 `--help`: auto_edit auto-approves edit tools, yolo every tool.
_FORBIDDEN_APPROVAL_MODES = ("yolo", "auto_edit")
# What a refused flag would really do, where the general sentence would mislead.
_REFUSAL_REASONS: dict[str, str] = {
    "--full-auto": "would let the reviewer write to its workspace without asking (older codex "
    "enabled workspace writes with it; current codex has no such flag and rejects it)",
}
_GENERAL_REASON = "would let the reviewer act without a sandbox or approvals"
# Each preset's short alias of a forbidden flag (gemini-cli 0.61 `--help`: `-y, --yolo`).
_PRESET_FORBIDDEN_SHORT: dict[str, frozenset[str]] = {"gemini": frozenset({"-y"})}
# Reasoning effort levels each CLI takes. claude: Claude Code 2.1.197 `--help` ("--effort
# <level> ... (low, medium, high, xhigh, max)"). codex: `-c model_reasoning_effort=...`; its
# `--help` lists no levels, these are the ones its config reference names.
EFFORT_LEVELS: dict[str, tuple[str, ...]] = {
    "codex": ("minimal", "low", "medium", "high", "xhigh"),
    "claude": ("low", "medium", "high", "xhigh", "max"),
}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class UnsafeReviewerArgs(InvalidInput):
    """A reviewer argv asks for write access or disables the CLI's sandbox or approvals."""


def find_forbidden(argv: Iterable[str]) -> str | None:
    """Return the first argv element that would unsandbox a reviewer, or None."""
    items = list(argv)
    for index, arg in enumerate(items):
        flag = arg.split("=", 1)[0]
        if flag in FORBIDDEN_FLAGS:
            return arg
        if any(bad in arg for bad in FORBIDDEN_SUBSTRINGS):
            return arg
        if arg in {f"{_APPROVAL_MODE}={mode}" for mode in _FORBIDDEN_APPROVAL_MODES}:
            return arg
        following = items[index + 1] if index + 1 < len(items) else None
        if arg == _APPROVAL_MODE and following in _FORBIDDEN_APPROVAL_MODES:
            return f"{arg} {following}"
    return None


def refusal_reason(bad: str) -> str:
    """What the refused argv element would really let the reviewer do."""
    return _REFUSAL_REASONS.get(bad.split("=", 1)[0], _GENERAL_REASON)


def ensure_safe(argv: Iterable[str], where: str) -> None:
    """Raise UnsafeReviewerArgs naming the offending flag if argv would unsandbox a reviewer."""
    bad = find_forbidden(argv)
    if bad is not None:
        raise UnsafeReviewerArgs(
            f"{where}: '{bad}' {refusal_reason(bad)}; "
            "reviewers may only read the evidence bundle and answer, so remove it"
        )


class ReviewerSpec(BaseModel):
    """One external reviewer: a preset CLI or any command, with its limits and prices."""

    # `schema` is the session-file key; `use_schema` keeps BaseModel.schema unshadowed.
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True
    )

    preset: PresetName | None = Field(
        default=None,
        description="Built-in reviewer CLI: codex, claude, gemini or llm. Exactly one of "
        "`preset` and `command` must be set.",
    )
    command: list[str] | None = Field(
        default=None,
        description="Any reviewer as an argv list (no shell). It gets the prompt on stdin; an "
        "element equal to `{prompt_file}` or `{schema_file}` is replaced by that file's path.",
    )
    model: str | None = Field(
        default=None,
        description="Model name passed to the preset CLI as `--model` (its own default if unset).",
    )
    effort: str | None = Field(
        default=None,
        description="Reasoning effort: codex (`-c model_reasoning_effort=...`) minimal, low, "
        "medium, high or xhigh; claude (`--effort`) low, medium, high, xhigh or max. Other "
        "presets have no such option (use `extra_args`).",
    )
    use_schema: bool = Field(
        default=True,
        alias="schema",
        description="llm only: `false` drops `--schema` for models without schema support "
        "(the answer is then checked only by phasegate's decision contract).",
    )
    timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="Seconds one attempt may run before its whole process group is killed.",
    )
    retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Extra attempts after a transient failure (spawn error, killed by a "
        "signal, rate limit, an API the CLI cannot reach). A returned answer is never retried.",
    )
    cost_per_call_usd: float | None = Field(
        default=None,
        ge=0,
        description="Cost charged per attempt when the CLI reports neither cost nor tokens.",
    )
    price_per_mtok_input: float | None = Field(
        default=None,
        ge=0,
        description="USD per million input tokens, for CLIs that report tokens but not dollars.",
    )
    price_per_mtok_output: float | None = Field(
        default=None,
        ge=0,
        description="USD per million output tokens, for CLIs that report tokens but not dollars.",
    )
    key_env: str | None = Field(
        default=None,
        description="The one API-key environment variable passed to the reviewer (default per "
        "preset: codex CODEX_API_KEY, claude ANTHROPIC_API_KEY, gemini GEMINI_API_KEY, llm "
        "OPENAI_API_KEY; none for a command).",
    )
    extra_args: list[str] = Field(
        default_factory=list,
        description="Extra arguments appended to the preset's argv; flags that disable the "
        "sandbox or approvals are refused.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ReviewerSpec:
        """Exactly one of preset and command, and a command names a program."""
        if (self.preset is None) == (self.command is None):
            raise ValueError("set exactly one of 'preset' and 'command'")
        if self.command is not None and not self.command:
            raise ValueError("'command' must name a program")
        return self

    @model_validator(mode="after")
    def _preset_options_fit(self) -> ReviewerSpec:
        """`effort` and `schema` only where the preset's CLI takes them; no short unsafe alias."""
        if self.effort is not None:
            levels = EFFORT_LEVELS.get(self.preset or "")
            if levels is None:
                raise ValueError(
                    f"'effort' is supported for the codex and claude presets only, not "
                    f"'{self.kind}'; remove it or pass the CLI's own flag in 'extra_args'"
                )
            if self.effort not in levels:
                raise ValueError(
                    f"'effort' = '{self.effort}' is not a {self.preset} level; use one of "
                    + ", ".join(levels)
                )
        if not self.use_schema and self.preset != "llm":
            raise ValueError(
                f"'schema = false' is supported for the llm preset only, not '{self.kind}'; "
                "remove it"
            )
        short = _PRESET_FORBIDDEN_SHORT.get(self.preset or "", frozenset())
        bad = next((arg for arg in self.extra_args if arg in short), None)
        if bad is not None:
            raise ValueError(f"'{bad}' {_GENERAL_REASON} for {self.preset}; remove it")
        return self

    @field_validator("command", "extra_args")
    @classmethod
    def _no_unsandboxing(cls, value: list[str] | None) -> list[str] | None:
        """Refuse flags that would unsandbox the reviewer."""
        bad = find_forbidden(value or [])
        if bad is not None:
            raise ValueError(f"'{bad}' {refusal_reason(bad)}; remove it")
        return value

    @field_validator("key_env")
    @classmethod
    def _valid_env_name(cls, value: str | None) -> str | None:
        """Refuse a key_env that is not a variable name."""
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(f"'{value}' is not an environment variable name")
        return value

    def resolved_key_env(self) -> str | None:
        """The API-key variable to pass through: the configured one, else the preset default."""
        if self.key_env is not None:
            return self.key_env
        return DEFAULT_KEY_ENV.get(self.preset) if self.preset else None

    @property
    def kind(self) -> str:
        """The output format to parse: the preset's name, or `command`."""
        return self.preset or "command"
