"""The CLI reference page, written from the ``vecdr`` command tree itself.

Walks the click command tree that Typer builds from ``vecdr.cli.main.app``
(``typer.main.get_command``) and writes every command with its arguments and
options, each with the help text, default and constraints that ``--help`` shows.

The page is committed as ``docs/reference/cli.md``, so links to it work wherever
the Markdown is read; the site's build writes it afresh (``docs/hooks.py``), and
``tests/test_docs.py`` fails when the committed copy no longer matches the CLI.
After changing a command::

    python docs/gen_cli.py docs/reference/cli.md
    python docs/gen_cli.py            # or the page on stdout
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer.main

# Recent Typer releases carry their own copy of click, so the tree is walked through
# what its objects do (``list_commands``, ``get_help_record``, ``param_type_name``),
# never through click's classes.
Command = Any
Param = Any
Path_ = tuple[str, ...]


def root_command() -> Command:
    """The click command behind ``vecdr``: a group of commands and groups."""
    from vecdr.cli.main import app

    return typer.main.get_command(app)


def _context(command: Command, name: str, parent: Any = None) -> Any:
    return command.context_class(command, info_name=name, parent=parent)


def _subcommands(command: Command, ctx: Any) -> list[tuple[str, Command]]:
    """A group's visible commands, in the order the CLI lists them."""
    if not (hasattr(command, "list_commands") and hasattr(command, "get_command")):
        return []
    found = [(name, command.get_command(ctx, name)) for name in command.list_commands(ctx)]
    return [(name, sub) for name, sub in found if sub is not None and not getattr(sub, "hidden", False)]


def walk(root: Command | None = None) -> Iterator[tuple[Path_, Command, Any]]:
    """``(path, command, context)`` of ``vecdr`` and every command under it, depth first."""

    def visit(path: Path_, command: Command, parent: Any) -> Iterator[tuple[Path_, Command, Any]]:
        ctx = _context(command, path[-1], parent)
        yield path, command, ctx
        for name, sub in _subcommands(command, ctx):
            yield from visit((*path, name), sub, ctx)

    yield from visit(("vecdr",), root or root_command(), None)


def command_names(root: Command | None = None) -> list[str]:
    """Every command's full name (``vecdr pgvector enable-tracking``), ``vecdr`` itself excluded."""
    return [" ".join(path) for path, _, _ in walk(root)][1:]


def anchor(path: Path_) -> str:
    """The id Python-Markdown's toc extension gives the heading ``vecdr pgvector enable-tracking``."""
    return "-".join(path).lower()


def _text(text: str) -> str:
    """Help text as one table cell: one line, pipes escaped, Markdown specials escaped outside `code`."""
    parts = " ".join(text.split()).split("`")
    for i in range(0, len(parts), 2):  # outside backticks
        parts[i] = re.sub(r"([\\*_<>\[\]|])", r"\\\1", parts[i])
    for i in range(1, len(parts), 2):
        parts[i] = parts[i].replace("|", "\\|")
    return "`".join(parts)


def _code(text: str) -> str:
    text = text.replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _name(param: Param) -> str:
    return (param.name or "").upper().replace("_", "-")


def _value(param: Param, record: str) -> str:
    """What a parameter takes, as ``--help`` writes it (``<int range>``, ``INTEGER``, ``MODE``)."""
    value = record
    if param.param_type_name == "option":
        for opt in sorted([*param.opts, *param.secondary_opts], key=len, reverse=True):
            value = value.replace(opt, "")
        value = value.replace(",", "").replace("/", "").strip()
        return _code(value) if value else "flag"
    value = value.split(None, 1)[1] if " " in value.strip() else ""
    return _code(value) if value else ""


def _param_rows(params: list[Param], ctx: Any, kind: str) -> list[str]:
    rows = []
    for param in params:
        if param.param_type_name != kind or getattr(param, "hidden", False) or param.name == "help":
            continue
        record = param.get_help_record(ctx) if hasattr(param, "get_help_record") else None
        if kind == "option":
            names = ", ".join(_code(o) for o in [*param.opts, *param.secondary_opts])
        else:
            names = _code(_name(param))
        if record is None:  # a plain click argument has no help record
            value, meaning = "", getattr(param, "help", None) or ""
        else:
            value, meaning = _value(param, record[0]), record[1]
        rows.append(f"| {names} | {value} | {_text(meaning)} |")
    return rows


def usage(path: Path_, command: Command, ctx: Any) -> str:
    """``vecdr forget [OPTIONS] REPO [SNAPSHOTS]...``, built from the parameters."""
    pieces = [" ".join(path), "[OPTIONS]"]
    for param in command.get_params(ctx):
        if param.param_type_name != "argument":
            continue
        piece = _name(param) if param.required else f"[{_name(param)}]"
        pieces.append(piece + ("..." if param.nargs == -1 or getattr(param, "multiple", False) else ""))
    if _subcommands(command, ctx):
        pieces.append("COMMAND [ARGS]...")
    return " ".join(pieces)


def _help(text: str | None) -> str:
    """A docstring's paragraphs, unwrapped; click's ``\\b`` markers dropped."""
    paragraphs = [" ".join(p.split()) for p in (text or "").replace("\b", "").split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p)


def render_command(path: Path_, command: Command, ctx: Any) -> str:
    name = " ".join(path)
    lines = [f"{'#' * max(2, min(len(path), 4))} {name}", ""]
    if command.help:
        lines += [_help(command.help), ""]
    lines += ["```text", usage(path, command, ctx), "```", ""]
    params = command.get_params(ctx)
    arguments = _param_rows(params, ctx, "argument")
    options = _param_rows(params, ctx, "option")
    if arguments:
        lines += ["| argument | value | meaning |", "|---|---|---|", *arguments, ""]
    if options:
        lines += ["| option | value | meaning |", "|---|---|---|", *options, ""]
    listed = [
        f"| [{sub_name}](#{anchor((*path, sub_name))}) | {_text(sub.get_short_help_str(200))} |"
        for sub_name, sub in _subcommands(command, ctx)
    ]
    if listed:
        lines += ["| command | what it does |", "|---|---|", *listed, ""]
    return "\n".join(lines)


HEAD = """\
# CLI reference

<!-- Generated by docs/gen_cli.py from the vecdr command; do not edit by hand. -->

This page is generated from the `vecdr` command itself (`docs/gen_cli.py`), so it
lists exactly the commands, arguments and options of this version, with the help
text, default and limits that `vecdr COMMAND --help` prints. Every command
also takes `--help`. The conventions that every command shares (REPO and
`VECDR_REPOSITORY`, snapshot references, URIs, `--json`), the JSON documents and
the exit status are described in [The vecdr command](../cli.md).

The options of `vecdr` itself (storage options) go before the command, as in
`vecdr --endpoint-url http://127.0.0.1:9000 snapshots s3://bucket/repo`.
"""


def render(root: Command | None = None) -> str:
    return HEAD + "\n" + "\n".join(render_command(path, cmd, ctx) for path, cmd, ctx in walk(root))


def main(argv: list[str]) -> int:
    text = render()
    if argv:
        Path(argv[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
