"""Argv builders for the reviewer presets: non-interactive, read-only, JSON out, schema-bound."""

# Every flag below was checked against the CLI's own source or documentation, cited next to
# each builder; flags that could not be verified are left out with a note saying so. The
# prompt always travels on stdin (or, for a generic command, in a file): never in argv, never
# through a shell.

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from phasegate.reviews.config import ReviewerSpec, ensure_safe
from phasegate.reviews.decision import decision_schema

PROMPT_FILE = "prompt.md"
SCHEMA_FILE = "decision.schema.json"
PROMPT_PLACEHOLDER = "{prompt_file}"
SCHEMA_PLACEHOLDER = "{schema_file}"


@dataclass(frozen=True)
class Invocation:
    """One attempt's argv, its stdin, and the per-attempt output file to read (if any)."""

    argv: tuple[str, ...]
    stdin: bytes
    output_file: Path | None = None


@dataclass(frozen=True)
class BuildContext:
    """What a builder may use: the spec, the scratch bundle and this attempt's number."""

    spec: ReviewerSpec
    scratch: Path
    attempt: int
    change_keys: Collection[str]

    def model_args(self, flag: str) -> list[str]:
        """`[flag, model]` when a model is configured, else nothing."""
        return [flag, self.spec.model] if self.spec.model else []

    def effort_args(self) -> list[str]:
        """The preset CLI's reasoning-effort argument when `effort` is set, else nothing."""
        effort = self.spec.effort
        if effort is None:
            return []
        if self.spec.preset == "codex":
            return ["-c", f'model_reasoning_effort="{effort}"']
        return ["--effort", effort]

    def schema_path(self, *, strict: bool) -> Path:
        """Write this attempt's decision schema into the scratch bundle and return its path."""
        path = self.scratch / (
            f"decision.strict.{self.attempt}.schema.json" if strict else SCHEMA_FILE
        )
        path.write_text(json.dumps(decision_schema(self.change_keys, strict=strict)))
        return path

    def fresh_output_file(self, stem: str) -> Path:
        """A path unique to this attempt, removed first so a stale file is never read."""
        path = self.scratch / f"{stem}.{self.attempt}.{uuid.uuid4().hex}.txt"
        path.unlink(missing_ok=True)
        return path


# Claude Code. Verified: `-p`, `--output-format json` (one object: type, subtype, is_error,
# result, total_cost_usd, usage, session_id) and `--json-schema` (validated answer in
# `structured_output`): https://code.claude.com/docs/en/headless.md. `--bare` (skips hooks,
# plugins, MCP servers, skills, auto-memory and CLAUDE.md discovery; needs ANTHROPIC_API_KEY),
# `--disallowedTools`, `--permission-mode`: anthropics/claude-code CHANGELOG.md (2.1.81 and
# earlier). `dontAsk` denies every tool not pre-approved instead of prompting, and bare-name
# deny rules remove the tool: https://code.claude.com/docs/en/agent-sdk/permissions.
# Claude Code 2.1.197 `--help`: `--tools ""` ("Use \"\" to disable all tools"; the deny-list
# alone misses tools added in 2.1.x, so it stays only as a second fence),
# `--no-session-persistence` (no transcript under ~/.claude/projects; print mode only) and
# `--effort <level>` (low, medium, high, xhigh, max). `--output-format stream-json` (which print
# mode accepts only with `--verbose`) streams `system/api_retry` events while the API cannot be
# reached, so an offline attempt ends in seconds (reviews/watch.py); its last event is the same
# result object `json` prints.
def _claude(ctx: BuildContext) -> tuple[list[str], Path | None]:
    """`claude -p --bare`: stream-json events ending in the result object, schema-bound, no tools at all."""
    schema = json.dumps(decision_schema(ctx.change_keys))
    argv = [
        "claude",
        "-p",
        "--bare",
        "--output-format",
        "stream-json",
        "--verbose",
        "--disallowedTools",
        "Bash,Edit,Write,NotebookEdit,WebFetch,WebSearch,Agent",
        "--permission-mode",
        "dontAsk",
        "--tools",
        "",
        "--no-session-persistence",
        "--json-schema",
        schema,
        *ctx.model_args("--model"),
        *ctx.effort_args(),
        *ctx.spec.extra_args,
    ]
    return argv, None


# OpenAI Codex CLI. Verified in openai/codex codex-rs/exec/src/cli.rs: `--json` (JSONL
# events), `-` reads the prompt from stdin, `--output-schema FILE`, `--output-last-message FILE`,
# `--skip-git-repo-check`, `--ephemeral`, `--color never`, `--ignore-user-config` (do not load
# $CODEX_HOME/config.toml; auth still works; added by openai/codex PR #18646, April 2026, so
# older CLIs reject it and the review fails closed), `--ignore-rules`; and in
# codex-rs/utils/cli/src/shared_options.rs: `--sandbox read-only`, `--model`. Event shapes:
# codex-rs/exec/src/exec_events.rs. `--output-schema` is enforced in OpenAI strict mode
# (openai/codex users report 400 invalid_json_schema otherwise), hence the strict variant.
# Checked against codex-cli 0.171.0 `exec --help`: every flag above exists; `-c key=value`
# parses value as TOML, which carries `model_reasoning_effort`.
def _codex(ctx: BuildContext) -> tuple[list[str], Path | None]:
    """`codex exec --json -`: JSONL events, read-only sandbox, user config and rules ignored."""
    last_message = ctx.fresh_output_file("codex-last-message")
    argv = [
        "codex",
        "exec",
        "--json",
        "--sandbox",
        "read-only",
        "--skip-git-repo-check",
        "--ephemeral",
        "--ignore-user-config",
        "--ignore-rules",
        "--color",
        "never",
        "--output-schema",
        str(ctx.schema_path(strict=True)),
        "--output-last-message",
        str(last_message),
        *ctx.model_args("--model"),
        *ctx.effort_args(),
        *ctx.spec.extra_args,
        "-",
    ]
    return argv, last_message


# `-p` text is appended to stdin by gemini; the request itself stays on stdin.
GEMINI_INSTRUCTION = (
    "Follow the review request given above on standard input and answer with the single "
    "JSON object it asks for."
)


# Gemini CLI. Verified in google-gemini/gemini-cli packages/cli/src/config/config.ts:
# `-p/--prompt` ("Appended to input on stdin"), `--output-format json`, `--approval-mode plan`
# ("read-only mode"; an untrusted folder such as the scratch dir is forced back to `default`,
# where headless runs deny anything that would ask), `--model`; JSON fields (response, stats,
# error) in docs/cli/headless.md and packages/core/src/output/types.ts. Gemini has no
# schema-enforcement flag. gemini-cli 0.61.0 `--help`: `--skip-trust` ("Trust the current
# workspace for this session"; from 0.41 an untrusted folder such as the scratch dir exits 55,
# and without trust plan mode is overridden to `default`), `-e/--extensions` (none loaded
# when given `none`).
def _gemini(ctx: BuildContext) -> tuple[list[str], Path | None]:
    """`gemini -p --output-format json`: headless, trusted for this run only, plan mode."""
    argv = [
        "gemini",
        "-p",
        GEMINI_INSTRUCTION,
        "--output-format",
        "json",
        "--approval-mode",
        "plan",
        "--skip-trust",
        "-e",
        "none",
        *ctx.model_args("--model"),
        *ctx.spec.extra_args,
    ]
    return argv, None


# Simon Willison's llm. Verified in simonw/llm llm/cli.py: `prompt` reads stdin when it is not
# a TTY, `--model`, `--schema` ("JSON schema, filepath or ID"), `--no-log`, `--no-stream`,
# `--usage` ("Token usage: N input, M output" on stderr); docs/changelog.md dates `--schema`
# and `-u/--usage`. Tools only run when `-T` is given, so none do. Not used: `llm prompt
# --json` (added in 0.32, 2026-08; plain text works with every version). `schema = false`
# drops `--schema`, which models without schema support refuse ("does not support schemas").
def _llm(ctx: BuildContext) -> tuple[list[str], Path | None]:
    """`llm prompt`: prompt on stdin, plain text out, schema-bound unless off, nothing logged."""
    schema = ["--schema", str(ctx.schema_path(strict=False))] if ctx.spec.use_schema else []
    argv = [
        "llm",
        "prompt",
        "--no-log",
        "--no-stream",
        "--usage",
        *schema,
        *ctx.model_args("--model"),
        *ctx.spec.extra_args,
    ]
    return argv, None


def _command(ctx: BuildContext) -> tuple[list[str], Path | None]:
    """A user command: its argv with `{prompt_file}`/`{schema_file}` replaced by paths."""
    replacements = {
        PROMPT_PLACEHOLDER: str(ctx.scratch / PROMPT_FILE),
        SCHEMA_PLACEHOLDER: str(ctx.schema_path(strict=False)),
    }
    command = [*(ctx.spec.command or []), *ctx.spec.extra_args]
    return [replacements.get(arg, arg) for arg in command], None


BUILDERS: dict[str, Callable[[BuildContext], tuple[list[str], Path | None]]] = {
    "claude": _claude,
    "codex": _codex,
    "gemini": _gemini,
    "llm": _llm,
    "command": _command,
}


def build_invocation(
    spec: ReviewerSpec,
    prompt: str,
    scratch: Path,
    attempt: int,
    change_keys: Collection[str] = (),
) -> Invocation:
    """The argv, stdin and output file for one attempt of `spec` in the scratch bundle."""
    ctx = BuildContext(spec=spec, scratch=Path(scratch), attempt=attempt, change_keys=change_keys)
    argv, output_file = BUILDERS[spec.kind](ctx)
    ensure_safe(argv, f"reviewer '{spec.kind}' argv")
    return Invocation(argv=tuple(argv), stdin=prompt.encode("utf-8"), output_file=output_file)
