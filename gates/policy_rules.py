"""The rule kinds of the `policy` gate: each finds its violations in one parsed Python file."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, field_validator

from phasegate.gates.globs import check_glob, matches_any
from phasegate.gates.options import GateOptions

Glob = Annotated[str, AfterValidator(check_glob)]
_DOTTED = re.compile(r"\A[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*\Z")
_NO_VALUE = object()  # an expression whose value cannot be known without running the code


@dataclass(frozen=True)
class Finding:
    """One place in a file where a rule is broken."""

    line: int
    message: str


def parse_literal(source: str) -> object:
    """Parse a rule's `value` (Python literal source such as `None` or `False`)."""
    try:
        return ast.literal_eval(source)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueError(
            f'value {source!r} is not a Python literal; write it as source, e.g. "None", "False", "0", "\'text\'"'
        ) from None


def _node_value(node: ast.expr | None) -> object:
    """The literal value of an expression, or _NO_VALUE when it is not a literal."""
    if node is None:
        return _NO_VALUE
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return _NO_VALUE


def _same(a: object, b: object) -> bool:
    """Literal equality that keeps `False`, `0` and `0.0` apart."""
    return type(a) is type(b) and a == b


def _check_dotted(text: str) -> str:
    """Validate a dotted Python name such as `utils.clean_model_loader`."""
    if not _DOTTED.match(text):
        raise ValueError(f"{text!r} is not a dotted Python name")
    return text


def _as_list(value: object) -> object:
    """Let a single glob stand for a one-item list."""
    return [value] if isinstance(value, str) else value


class _Rule(GateOptions):
    """Fields every rule has; subclasses add `kind` and `check`."""

    allow: list[Glob] = Field(
        default_factory=list,
        description="Globs (relative to the policy root) of files where this rule does not apply.",
    )
    message: str | None = Field(
        default=None, description="Text reported for each violation instead of the rule's default."
    )

    def applies_to(self, relpath: str) -> bool:
        """Whether this rule checks the file at `relpath` (relative to the policy root)."""
        return not matches_any(relpath, self.allow)

    def check(self, tree: ast.Module) -> Iterator[Finding]:  # pragma: no cover - interface
        """Yield each place in `tree` that breaks the rule."""
        raise NotImplementedError

    def _say(self, default: str) -> str:
        """The reported message: the user's text, else the default plus where the thing is allowed."""
        if self.message:
            return self.message
        return default + (f" (allowed only in {', '.join(self.allow)})" if self.allow else "")


class _ValueRule(_Rule):
    """A rule that optionally matches only one literal value."""

    # bool before int so a TOML `false` stays a bool rather than becoming 0.
    value: str | bool | int | float | None = Field(
        default=None,
        description='The value to flag: Python literal source ("None", "False", "\'text\'") or a TOML boolean/number (false, 0); omit to flag any value.',
    )

    @field_validator("value")
    @classmethod
    def _literal(cls, value: object) -> object:
        if isinstance(value, str):
            parse_literal(value)
        return value

    def _expected(self) -> object:
        """The flagged value as a Python object."""
        return parse_literal(self.value) if isinstance(self.value, str) else self.value

    def _value_matches(self, node: ast.expr | None) -> bool:
        """Whether the expression `node` is what this rule flags."""
        if self.value is None:
            return True
        found = _node_value(node)
        return found is not _NO_VALUE and _same(found, self._expected())

    def _shown_value(self) -> str:
        """The flagged value as it would appear in source."""
        return "…" if self.value is None else repr(self._expected())


def _pairs(target: ast.expr, value: ast.expr | None) -> Iterator[tuple[ast.expr, ast.expr | None]]:
    """Pair assignment targets with their values, unpacking `a.x, b = None, 1`."""
    if isinstance(target, ast.Tuple | ast.List):
        values = value.elts if isinstance(value, ast.Tuple | ast.List) else None
        if (
            values is not None
            and len(values) == len(target.elts)
            and not any(isinstance(v, ast.Starred) for v in (*values, *target.elts))
        ):
            for sub_target, sub_value in zip(target.elts, values, strict=True):
                yield from _pairs(sub_target, sub_value)
        else:
            for sub_target in target.elts:
                yield from _pairs(sub_target, None)
    else:
        yield target, value


def _assignments(node: ast.AST) -> Iterator[tuple[ast.expr, ast.expr | None]]:
    """Every (target, value) a statement assigns: plain, annotated and augmented forms."""
    if isinstance(node, ast.Assign):
        for target in node.targets:
            yield from _pairs(target, node.value)
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        yield node.target, node.value
    elif isinstance(node, ast.AugAssign):
        yield node.target, node.value


def _is_setattr(node: ast.AST) -> bool:
    """Whether `node` calls the builtin setattr (bare or as `builtins.setattr`)."""
    if not isinstance(node, ast.Call) or len(node.args) < 3:
        return False
    func = node.func
    if isinstance(func, ast.Name):
        return func.id == "setattr"
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "setattr"
        and isinstance(func.value, ast.Name)
        and func.value.id == "builtins"
    )


class NoAttributeAssign(_ValueRule):
    """No `<x>.<attribute> = <value>` (also annotated, augmented and `setattr(x, "attribute", value)`)."""

    kind: Literal["no_attribute_assign"] = Field(description="Rule kind.")
    attribute: str = Field(
        description='Attribute name, e.g. "chat_template".', pattern=r"^[A-Za-z_]\w*$"
    )

    def check(self, tree: ast.Module) -> Iterator[Finding]:
        """Yield each assignment of the attribute to the flagged value."""
        message = self._say(f"sets `.{self.attribute} = {self._shown_value()}`")
        for node in ast.walk(tree):
            for target, value in _assignments(node):
                if isinstance(target, ast.Attribute) and target.attr == self.attribute:
                    if self._value_matches(value):
                        yield Finding(target.lineno, message)
            if _is_setattr(node):
                name = _node_value(node.args[1])
                if _same(name, self.attribute) and self._value_matches(node.args[2]):
                    yield Finding(node.lineno, message)


class NoCallKeyword(_ValueRule):
    """No call passing `<keyword>=<value>` (also inside a literal `**{...}`)."""

    kind: Literal["no_call_keyword"] = Field(description="Rule kind.")
    keyword: str = Field(
        description='Keyword argument name, e.g. "add_special_tokens".', pattern=r"^[A-Za-z_]\w*$"
    )

    def check(self, tree: ast.Module) -> Iterator[Finding]:
        """Yield each call that passes the keyword with the flagged value."""
        message = self._say(f"passes `{self.keyword}={self._shown_value()}`")
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            for kw in node.keywords:
                if kw.arg == self.keyword and self._value_matches(kw.value):
                    yield Finding(kw.lineno, message)
                elif kw.arg is None and isinstance(kw.value, ast.Dict):
                    for key, value in zip(kw.value.keys, kw.value.values, strict=True):
                        if (
                            key is not None
                            and _same(_node_value(key), self.keyword)
                            and self._value_matches(value)
                        ):
                            yield Finding(key.lineno, message)


def _tail_name(expr: ast.expr) -> str | None:
    """The last name of an expression such as `transformers.AutoModel` (`AutoModel`)."""
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        return expr.attr
    return None


class NoCall(_Rule):
    """No call whose final name is `<function>` (optionally only on the named receivers)."""

    kind: Literal["no_call"] = Field(description="Rule kind.")
    function: str = Field(
        description='Called name, e.g. "from_pretrained" (matches `f(...)` and `x.f(...)`).',
        pattern=r"^[A-Za-z_]\w*$",
    )
    receivers: list[str] | None = Field(
        default=None,
        min_length=1,
        description='Only flag `<receiver>.<function>(...)` where the receiver\'s last name is one of these, e.g. ["AutoModelForCausalLM"]; omit to flag every call.',
    )

    def check(self, tree: ast.Module) -> Iterator[Finding]:
        """Yield each call of the function (on a listed receiver, when receivers are given)."""
        aliases = _import_aliases(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or _tail_name(node.func) != self.function:
                continue
            func = node.func
            receiver = _tail_name(func.value) if isinstance(func, ast.Attribute) else None
            receiver = aliases.get(receiver, receiver)
            if self.receivers is None or receiver in self.receivers:
                shown = f"{receiver}.{self.function}" if receiver else self.function
                yield Finding(node.lineno, self._say(f"calls `{shown}(...)` directly"))


def _import_aliases(tree: ast.Module) -> dict[str | None, str]:
    """Names imported under another name (`import X as M`), so `M.f()` counts as a call on X."""
    return {
        alias.asname: alias.name.rsplit(".", 1)[-1]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
        if alias.asname
    }


class MustImport(_Rule):
    """Files matching `files` must contain `from <module> import <name>` (the from-import form only)."""

    kind: Literal["must_import"] = Field(description="Rule kind.")
    files: Annotated[list[Glob], BeforeValidator(_as_list)] = Field(
        min_length=1,
        description='Glob or globs (relative to the policy root) of the files that must import, e.g. "evaluate_*.py".',
    )
    module: Annotated[str, AfterValidator(_check_dotted)] = Field(
        description='Absolute module of the from-import, e.g. "utils.clean_model_loader"; `import module` or a relative import does not count.'
    )
    name: str = Field(
        description='Imported name, e.g. "CleanModelLoader" (an `as` alias is fine).',
        pattern=r"^[A-Za-z_]\w*$",
    )
    min_files: int = Field(
        default=1,
        ge=0,
        description="Fail when fewer checked files match `files`, so a renamed script cannot pass unnoticed.",
    )

    def applies_to(self, relpath: str) -> bool:
        """Whether the file matches `files` and is not allowed to skip the import."""
        return matches_any(relpath, self.files) and super().applies_to(relpath)

    def check(self, tree: ast.Module) -> Iterator[Finding]:
        """Yield one finding when the file lacks the from-import anywhere in it."""
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == self.module:
                if any(alias.name == self.name for alias in node.names):
                    return
        yield Finding(1, self._say(f"does not contain `from {self.module} import {self.name}`"))


Rule = Annotated[
    NoAttributeAssign | NoCallKeyword | NoCall | MustImport, Field(discriminator="kind")
]
"""One policy rule, chosen by its `kind`."""
