"""docs/reference/cli.md: every command and option of ``runner-ctl``, with its exit codes.

Read from the click command tree typer builds, so the page shows what ``--help`` shows:
the same help texts, defaults and the exit codes of each command's epilog.
"""

import enum
import typing
from pathlib import Path
from typing import Any

import typer.main
from typer.core import TyperArgument, TyperOption

from runner_ctl.clikit import parse_exit_codes
from runner_ctl.refdocs._md import HEADER, cell, code, table

__all__ = ["cli_page"]


def _default(param: Any) -> str:
    shown = getattr(param, "show_default", None)
    if isinstance(shown, str):
        return cell(shown)
    value = param.default
    if param.required:
        return "required"
    if value is None or value is False or value == "" or (isinstance(value, tuple | list) and not value):
        return ""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, Path):
        value = str(value)
    return code(value)


_KINDS: dict[object, str] = {bool: "flag", int: "integer", float: "number", str: "text", Path: "path"}


def _kind(param: Any) -> str:
    """What the value is, from the parameter's annotation (typer keeps it) or click's type."""
    if param.metavar:
        return cell(param.metavar)
    descriptor = getattr(param, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    if annotation is None:  # typer before 0.20 keeps only click's type
        name = getattr(getattr(param, "type", None), "name", "text")
        return "flag" if getattr(param, "is_flag", False) else str(name)
    repeatable = typing.get_origin(annotation) is list
    if repeatable:
        (annotation,) = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        kind = " \\| ".join(str(choice) for choice in typing.get_args(annotation))
    elif isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        kind = " \\| ".join(str(member.value) for member in annotation)
    else:
        kind = _KINDS.get(annotation, getattr(annotation, "__name__", str(annotation)))
    return kind + (", repeatable" if repeatable or getattr(param, "multiple", False) else "")


def _first_paragraph(text: str) -> str:
    return text.strip().split("\n\n")[0]


def _section(path: list[str], command: Any, ctx: Any) -> list[str]:
    anchor = "-".join(path)
    parts = [f"## {' '.join(path)} {{#{anchor}}}\n\n"]
    if command.help:
        parts.append(command.help.strip().replace("\b\n", "") + "\n\n")
    pieces = command.collect_usage_pieces(ctx)
    parts.append(f"```text\n{' '.join([*path, *pieces])}\n```\n\n")
    arguments = [p for p in command.params if isinstance(p, TyperArgument)]
    options = [p for p in command.params if isinstance(p, TyperOption) and p.name != "help" and not p.hidden]
    if arguments:
        rows = [
            [code((p.metavar or p.name or "").upper()), cell(p.help or ""), "required" if p.required else "optional"]
            for p in arguments
        ]
        parts.append(table(["argument", "what it is", ""], rows) + "\n")
    if options:
        rows = []
        for p in options:
            names = ", ".join(code(name) for name in [*p.opts, *p.secondary_opts])
            rows.append([names, _kind(p), _default(p), cell(p.help or "")])
        parts.append(table(["option", "value", "default", "what it does"], rows) + "\n")
    subcommands = getattr(command, "commands", {})
    if subcommands:
        rows = [
            [f"[{code(' '.join([*path, name]))}](#{anchor}-{name})", cell(_first_paragraph(sub.help or ""))]
            for name, sub in subcommands.items()
        ]
        parts.append(table(["command", "what it does"], rows) + "\n")
    codes = parse_exit_codes(command.epilog)
    if codes:
        parts.append("Exit codes:\n\n" + table(["exit", "meaning"], [[code(c), cell(m)] for c, m in codes]) + "\n")
    return parts


def _walk(path: list[str], command: Any, parent: Any, parts: list[str]) -> None:
    ctx = command.context_class(command, info_name=path[-1], parent=parent)
    parts += _section(path, command, ctx)
    for name, sub in getattr(command, "commands", {}).items():
        _walk([*path, name], sub, ctx, parts)


def cli_page() -> str:
    from runner_ctl.cli import app  # imported here: the app imports every command group

    root = typer.main.get_command(app)
    parts = [
        HEADER,
        "# Command line\n\n",
        "Every `runner-ctl` command, its options and its exit codes, as `runner-ctl COMMAND --help` "
        "shows them. Every command prints an expected failure as one line on stderr "
        "(`runner-ctl: error: ...`), never a traceback.\n\n",
    ]
    _walk(["runner-ctl"], root, None, parts)
    return "".join(parts).rstrip("\n") + "\n"
