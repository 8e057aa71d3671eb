"""Markdown pieces the reference pages share: tables whose cells cannot break the table."""

from collections.abc import Iterable, Sequence

__all__ = ["HEADER", "cell", "code", "table"]

HEADER = (
    "<!-- Generated from the code by `python -m runner_ctl.refdocs`: do not edit. "
    "tests/test_refdocs.py fails when this page differs from what the generator writes now. -->\n\n"
)


def cell(text: object) -> str:
    """One table cell: a pipe would end the cell and a newline the row."""
    return " ".join(str(text).split()).replace("|", "\\|")


def code(text: object) -> str:
    """``text`` as a code span, with enough backticks around it for the backticks inside."""
    value = str(text)
    fence = "``" if "`" in value else "`"
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table; cells are taken as written (pass them through ``cell``)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
