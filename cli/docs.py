"""README references generated from the code (session file models, gate options, CLI), so they cannot drift.

`python -m phasegate.cli.docs --write README.md` rewrites the marked blocks; a test fails when they are stale.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from phasegate.session.spec import GateSpec, PhaseSpec, SessionInfo


def _schema_type(schema: dict[str, Any]) -> str:
    """A short TOML-minded type name from a JSON-schema fragment."""
    if "$ref" in schema:
        return "table"
    if "anyOf" in schema or "oneOf" in schema:
        options = [_schema_type(s) for s in schema.get("anyOf", schema.get("oneOf", [])) if s.get("type") != "null"]
        return " or ".join(dict.fromkeys(options))
    if "enum" in schema:
        return " \\| ".join(f'"{v}"' for v in schema["enum"])
    if "const" in schema:
        return f'"{schema["const"]}"'
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_schema_type(schema['items'])}" if schema.get("items") else "list"
    return {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean",
            "object": "table"}.get(kind, "any")


def model_table(model: type[BaseModel], heading: str) -> list[str]:
    """A markdown table of a model's fields: key, type, default, description."""
    properties = model.model_json_schema(by_alias=True).get("properties", {})
    lines = [f"#### {heading}", "", "| key | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        key = field.alias or name
        default = "required" if field.is_required() else f"`{field.get_default(call_default_factory=True)!r}`"
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{key}` | {_schema_type(properties.get(key, {}))} | {default} | {description} |")
    return lines + [""]


def session_reference() -> str:
    """The session-file reference: tables, phases, gates and every gate kind's options."""
    from phasegate.gates import GATE_OPTION_MODELS
    from phasegate.pipeline.model.spec import ModelSpec

    parts = model_table(SessionInfo, "`[session]`") + model_table(ModelSpec, "`[model]`")
    from phasegate.reviews.config import ReviewerSpec

    parts += model_table(ReviewerSpec, "`[reviewers.<name>]`")
    from phasegate.session.pod_spec import PodSpec

    parts += model_table(PodSpec, "`[pod]`")
    from phasegate.session.notify_spec import HookSpec, NotifySpec

    parts += model_table(NotifySpec, "`[[notify]]`") + model_table(HookSpec, "`[[hooks]]`")
    parts += model_table(PhaseSpec, "`[[phases]]`")
    parts += model_table(GateSpec, "`[[phases.gates]]` and `[[phases.pre_gates]]`")
    for kind, model in sorted(GATE_OPTION_MODELS.items()):
        parts += model_table(model, f"gate kind `{kind}`")
    return "\n".join(parts)


def cli_reference() -> str:
    """One section per command with its usage, help and options, from the click objects typer builds."""
    import click
    import typer

    from phasegate.cli.main import app

    group = typer.main.get_command(app)
    ctx = click.Context(group, info_name="phasegate")
    lines = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        sub = click.Context(command, info_name=name, parent=ctx)
        lines += [f"#### `{command.get_usage(sub).removeprefix('Usage: ')}`", "", command.help or "", ""]
        for param in command.params:
            if param.param_type_name == "option":
                lines.append(f"- `{', '.join(param.opts)}` — {param.help or ''}")
        lines.append("")
    return "\n".join(lines)


BLOCKS = {"session-reference": session_reference, "cli-reference": cli_reference}


def render_readme(text: str) -> str:
    """Replace every `<!-- BEGIN name -->…<!-- END name -->` block with freshly generated text."""
    for name, build in BLOCKS.items():
        pattern = re.compile(rf"(<!-- BEGIN {name} -->\n).*?(<!-- END {name} -->)", re.S)
        text = pattern.sub(lambda m, b=build: m.group(1) + b() + "\n" + m.group(2), text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", type=Path, help="the README to rewrite in place")
    args = parser.parse_args()
    if args.write:
        args.write.write_text(render_readme(args.write.read_text()))
    else:
        print(session_reference() + "\n" + cli_reference())


if __name__ == "__main__":
    main()
