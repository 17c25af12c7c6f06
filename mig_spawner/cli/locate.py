"""Pointing at the line and column of a bad value in a YAML file.

The validators (core, the emulator's cluster files) raise
:class:`~mig_spawner.core.errors.InputError` with the ``path`` to the bad key; whoever read
the file turns that path into ``file:line:column`` and shows the line with a caret. YAML
syntax errors carry their own mark.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from ..core.errors import InputError, PathItem, snippet


def yaml_position(
    text: str, path: Sequence[PathItem], *, partial: bool = True
) -> tuple[int, int] | None:
    """1-based (line, column) of the value at ``path`` in the YAML ``text``, or (``partial``)
    of the deepest part of ``path`` the document has; None if it is not YAML (or, without
    ``partial``, has no such value)."""
    try:
        node: Any = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    mark = node.start_mark
    for key in path:
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if str(k.value) == str(key)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            found = node.value[key] if 0 <= key < len(node.value) else None
        else:
            found = None
        if found is None:
            if not partial:
                return None
            break
        node, mark = found, found.start_mark
    return mark.line + 1, mark.column + 1


def python_position(source: str, path: Sequence[PathItem]) -> tuple[int, int] | None:
    """1-based (line, column) in a ``jupyterhub_config.py`` of ``path``'s setting, e.g.
    ``("MIGSpawner", "tiers", "a", "order")``: the last ``c.MIGSpawner.tiers = ...`` and,
    inside a dict literal, the deepest key of the path it spells out; None if not there."""
    import ast

    if len(path) < 2:
        return None
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    target = f"c.{path[0]}.{path[1]}"
    value: ast.AST | None = None
    for stmt in ast.walk(tree):
        if isinstance(stmt, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            sets = any(ast.unparse(t) == target for t in targets) and stmt.value is not None
            if sets and (value is None or stmt.lineno >= value.lineno):
                value = stmt.value
    if value is None:
        return None
    node = value
    for key in path[2:]:
        if not isinstance(node, ast.Dict):
            break
        found = None
        for k, v in zip(node.keys, node.values, strict=True):
            if isinstance(k, ast.Constant) and str(k.value) == str(key):
                found = v
        if found is None:
            break
        node = found
    return node.lineno, node.col_offset + 1


def yaml_syntax_error(file: str, text: str, exc: yaml.YAMLError) -> InputError:
    """A YAML parse error as an InputError at ``file:line:column``, with its line shown."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    message = f"not valid YAML: {problem}"
    same = context_mark is not None and mark is not None and context_mark.line == mark.line
    if context and context_mark is not None and not same:
        message += f" ({context} at line {context_mark.line + 1}, column {context_mark.column + 1})"
    if mark is None:
        return InputError(message, expected="a YAML document", source=file)
    line, column = mark.line + 1, mark.column + 1
    return InputError(message, expected="a YAML document").at(
        f"{file}:{line}:{column}", snippet(text, line, column)
    )


def locate_in_yaml(
    error: InputError, file: str, text: str, prefix: Sequence[PathItem] = ()
) -> InputError:
    """``error`` (a validator's, with a ``path`` relative to ``prefix``) at the line and
    column of its value in ``file``; at the file alone when its path is not there."""
    position = yaml_position(text, (*prefix, *error.path)) if error.path else None
    if position is None:
        return error.at(file)
    line, column = position
    return error.at(f"{file}:{line}:{column}", snippet(text, line, column))
