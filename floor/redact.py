"""Secret masking (environment values and well-known token formats) and private file writes.

It sits on the floor so that every layer that stores or shows text, the journal included, masks
with the same rules.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from phasegate.floor.durable import atomic_write_text

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)
# Shorter values ("1", "true", "dev") would mask ordinary words everywhere.
MIN_SECRET_LEN = 6

# Ordered most specific first so `sk-ant-` is labelled before the generic `sk-`.
TOKEN_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "pem-private-key",
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
            re.DOTALL,
        ),
    ),
    ("anthropic-key", re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}")),
    ("openai-key", re.compile(r"sk-[A-Za-z0-9][A-Za-z0-9_\-]{15,}")),
    ("hf-token", re.compile(r"hf_[A-Za-z0-9]{20,}")),
    ("github-token", re.compile(r"(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})")),
    ("aws-access-key", re.compile(r"(?:AKIA|ASIA)[0-9A-Z]{16}")),
    ("google-api-key", re.compile(r"AIza[0-9A-Za-z_\-]{35}")),
)


def secret_env_values(env: Mapping[str, Any]) -> dict[str, str]:
    """The secret-looking entries of `env` (name -> value) long enough to mask safely.

    Nested tables (a session file's `[phases.with]`, say) are searched too: `{db = {password = "…"}}`.
    """
    found: dict[str, str] = {}
    stack: list[Any] = [env]
    while stack:
        table = stack.pop()
        items = table.items() if isinstance(table, Mapping) else enumerate(table)
        for name, value in items:
            if isinstance(value, Mapping | list | tuple):
                stack.append(value)
            elif (isinstance(name, str) and SECRET_NAME.search(name) and isinstance(value, str)
                  and len(value) >= MIN_SECRET_LEN):
                found.setdefault(name, value)
    return found


def secret_arguments(argv: Iterable[str]) -> dict[str, str]:
    """The values of secret-looking options in an argv (`--token X`, `--api-key=X`), by option name."""
    found: dict[str, str] = {}
    args = list(argv)
    for i, arg in enumerate(args):
        if not arg.startswith("-"):
            continue
        name, equals, value = arg.partition("=")
        if not equals:
            value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("-") else ""
        if SECRET_NAME.search(name) and len(value) >= MIN_SECRET_LEN:
            found.setdefault(name.lstrip("-"), value)
    return found


class Redactor:
    """Masks secret values from environment snapshots plus well-known token formats.

    `env` is the process environment (default: os.environ); `extra` are further tables whose
    secret-looking values are masked the same way (a session file's `[phases.env]` and `[phases.with]`,
    nested tables included); `argvs` are command lines whose secret-looking options are (`--token X`).
    """

    def __init__(self, env: Mapping[str, str] | None = None, *, extra: Iterable[Mapping[str, Any]] = (),
                 argvs: Iterable[Iterable[str]] = ()) -> None:
        tables = [os.environ if env is None else env, *extra, *map(secret_arguments, argvs)]
        # value -> name; the first table to name a value labels it (two phases may share a name).
        secrets: dict[str, str] = {}
        for table in tables:
            for name, value in secret_env_values(table).items():
                secrets.setdefault(value, name)
        # Longest first, so a value containing another secret is masked whole.
        ordered = sorted(((name, value) for value, name in secrets.items()), key=lambda item: len(item[1]),
                         reverse=True)
        self._names = {value: name for name, value in reversed(ordered)}
        self._env_pattern = (
            re.compile("|".join(re.escape(value) for _, value in ordered)) if ordered else None
        )

    def redact(self, text: str) -> str:
        """Return `text` with every known secret value and token format masked."""
        if self._env_pattern is not None:
            text = self._env_pattern.sub(lambda m: f"[REDACTED:{self._names[m.group(0)]}]", text)
        for label, pattern in TOKEN_PATTERNS:
            text = pattern.sub(f"[REDACTED:{label}]", text)
        return text

    def redact_obj(self, value: Any) -> Any:
        """Redact every string (keys included) inside nested dicts, lists and tuples."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {self.redact(str(k)): self.redact_obj(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_obj(item) for item in value]
        return value


def redact(text: str, env: Mapping[str, str] | None = None) -> str:
    """Mask secrets in `text` using the secret variables of `env` (default: os.environ)."""
    return Redactor(env).redact(text)


def write_private(path: Path, text: str) -> None:
    """Write `text` atomically (temp file, fsync, rename, directory fsync) with mode 0600."""
    atomic_write_text(Path(path), text, mode=0o600)
