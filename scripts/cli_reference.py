"""Write docs/cli.md from the `--help` of every tinyboard command (CI checks it is current).

Usage: python scripts/cli_reference.py [--check]
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tinyboard.cli import main

OUT = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
HEADER = """# tinyboard command line reference

Generated from `--help` by `python scripts/cli_reference.py`; do not edit by hand.
Every `serve` option can also be set with the `TINYBOARD_*` variable shown next to it.
"""


def help_texts(
    command: click.Command, path: list[str], parent: click.Context | None = None
) -> list[tuple[str, str]]:
    ctx = click.Context(
        command,
        info_name=path[-1],
        parent=parent,
        terminal_width=100,
        **command.context_settings,
    )
    out = [(" ".join(path), command.get_help(ctx))]
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None
            out += help_texts(sub, [*path, name], ctx)
    return out


def render() -> str:
    parts = [HEADER]
    for title, text in help_texts(main, ["tinyboard"]):
        parts.append(f"\n## `{title}`\n\n```text\n{text}\n```\n")
    return "".join(parts)


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            sys.exit(f"{OUT} is out of date: run python scripts/cli_reference.py")
    else:
        OUT.write_text(text)
