"""docs/cli.md is generated from the ``mig-spawner`` argparse parser and must stay in sync.

Regenerate with:  .venv/bin/python tests/docs/test_cli_reference.py

Rendered from the parser's actions (not ``format_help()``), so the page does not change
with the Python version's help formatting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
HEADER = """# Command-line reference

The `mig-spawner` command ships with the package (`pip install jupyterhub-mig-spawner`).
Exit status: 0 when it did its job (for `explain`: a decision was made, admitted or
refused), 2 for unusable input or arguments (one `mig-spawner: error: ...` line on stderr naming
the file, line and column where it can, then that line of the file with a caret under the
fault), 1 for an internal error. Set `MIG_SPAWNER_DEBUG=1` for a traceback.

<!-- Generated from mig_spawner/cli/main.py by tests/docs/test_cli_reference.py;
     edit the parser's help there, not this file. -->
"""


def _flags(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    names = ", ".join(action.option_strings)
    if action.nargs == 0:
        return f"`{names}`"
    metavar = action.metavar or action.dest.upper()
    if action.nargs == "?":
        return f"`{names} [{metavar}]`"
    return f"`{names} {metavar}`"


def _cell(text: str) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _groups(parser: argparse.ArgumentParser) -> dict[int, str]:
    """Which actions are mutually exclusive (and required): action id -> note."""
    notes = {}
    for group in parser._mutually_exclusive_groups:
        names = " / ".join(a.option_strings[0] for a in group._group_actions)
        note = f"one of {names}" + (" (required)" if group.required else "")
        for action in group._group_actions:
            notes[id(action)] = note
    return notes


def render() -> str:
    from mig_spawner.cli.main import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    parts = [HEADER]
    for name, child in sub.choices.items():
        parts.append(f"\n## `mig-spawner {name}`\n\n{_cell(child.description)}\n")
        notes = _groups(child)
        rows = []
        for action in child._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            req = "required" if action.required else notes.get(id(action), "")
            text = _cell(action.help)
            has_default = action.default not in (None, False, argparse.SUPPRESS)
            if has_default and action.nargs != 0 and "default" not in text:
                text += f" (default: `{action.default}`)"
            rows.append(f"| {_flags(action)} | {text} | {req} |")
        if rows:
            parts.append("\n| option | meaning | |\n| --- | --- | --- |\n" + "\n".join(rows) + "\n")
        if child.epilog:
            parts.append(f"\n{_cell(child.epilog)}\n")
    return "".join(parts)


def test_every_command_and_option_has_help():
    from mig_spawner.cli.main import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert {"catalog", "explain", "status"} <= set(sub.choices)
    for name, child in sub.choices.items():
        assert child.description, name
        for action in child._actions:
            assert action.help and len(action.help) > 8, (name, action.dest)


def test_reference_page_is_in_sync_with_the_parser():
    assert DOC.read_text() == render(), (
        "docs/cli.md is stale: run .venv/bin/python tests/docs/test_cli_reference.py"
    )


if __name__ == "__main__":
    DOC.write_text(render())
    print(f"wrote {DOC}", file=sys.stderr)
