"""What every command shares: expected failures as one line on stderr and an exit code.

Apart from cli.py so that command modules kept in their own packages (latency/) use the
same mechanism without importing the app that imports them.

Every console here prints text as it is: no rich markup, no ``:emoji:`` codes, no
highlighting. Messages carry user input (environment names, reasons, token file lines,
runner labels), and ``name:secret:admin`` must not come out as an emoji nor ``[red]`` as a
style. Styling is applied explicitly, with ``style=`` or a ``Text``, never parsed from a string.
"""

import math
from collections.abc import Callable
from typing import NoReturn, TypeVar

import httpx
import typer
from rich.console import Console
from rich.text import Text

from runner_ctl.errors import RunnerCtlError, UsageError

__all__ = [
    "check_http_url",
    "check_number",
    "check_text",
    "exit_codes_epilog",
    "fail",
    "guard",
    "parse_exit_codes",
    "plain_console",
    "print_error",
    "progress_line",
    "stderr",
]

T = TypeVar("T")

_EXIT_CODES = "Exit codes: "
# What ``guard`` makes of Ctrl-C: named once, so that every command's list says it alike.
INTERRUPTED = "interrupted (Ctrl-C or SIGTERM)"


def exit_codes_epilog(*codes: tuple[str, str]) -> str:
    """A command's ``--help`` epilog listing its exit codes: ``("0", "done"), ("2", "bad flags")``.

    One format for every command, so that the reference pages of the docs site read the same
    list back (``parse_exit_codes``) that ``--help`` shows.
    """
    for code, meaning in codes:
        if not code or "; " in meaning or " " in code or meaning.endswith("."):
            raise ValueError(f"exit code {code!r}: one word, and a meaning without '; ' or a final '.'")
    return _EXIT_CODES + "; ".join(f"{code} {meaning}" for code, meaning in codes) + "."


def parse_exit_codes(epilog: str | None) -> list[tuple[str, str]]:
    """The ``(code, meaning)`` pairs of an epilog ``exit_codes_epilog`` made; [] for any other text."""
    if not epilog or not epilog.startswith(_EXIT_CODES) or not epilog.endswith("."):
        return []
    items = epilog[len(_EXIT_CODES) : -1].split("; ")
    return [(code, meaning) for code, _, meaning in (item.partition(" ") for item in items)]


def plain_console(*, stderr: bool = False, width: int | None = None) -> Console:
    """A console that prints strings literally (see the module docstring)."""
    return Console(stderr=stderr, width=width, highlight=False, markup=False, emoji=False)


stderr = plain_console(stderr=True)


def print_error(message: str) -> None:
    stderr.print(f"runner-ctl: error: {message}", soft_wrap=True)


def progress_line(prefix: str, message: str) -> None:
    """``prefix`` dimmed, then ``message`` exactly as given, on stderr."""
    stderr.print(Text.assemble((prefix, "dim"), " ", message), soft_wrap=True)


def fail(message: str, code: int) -> NoReturn:
    print_error(message)
    raise typer.Exit(code)


def guard(action: Callable[[], T]) -> T:
    """Run a library call; expected failures become one line on stderr and an exit code."""
    try:
        return action()
    except RunnerCtlError as error:
        fail(error.message, error.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)


def check_text(value: str, flag: str, *, example: str) -> str:
    """``value`` if it is non-empty, printable text; else UsageError (``example`` shows a good one)."""
    if not value:
        raise UsageError(f"{flag} is empty; give a value, e.g. {flag} {example}")
    if not value.isprintable():
        raise UsageError(f"{flag} {value!r} holds control characters (a newline?); e.g. {flag} {example}")
    return value


def check_number(value: float, flag: str, low: float, high: float, unit: str = "seconds") -> float:
    """``value`` if it is a finite number from ``low`` to ``high``; else UsageError."""
    if not (math.isfinite(value) and low <= value <= high):
        raise UsageError(f"{flag} {value!r} is out of range; expected {unit} from {low:g} to {high:g}")
    return value


def check_http_url(text: str, what: str, *, example: str) -> str:
    """``text`` if it is an http(s) URL with a host, no credentials, no query; else UsageError naming ``what``.

    User info and a query are refused without being echoed: ``https://user:token@host`` or
    ``?private_token=...`` would put a token into argv, process lists and every message that
    names the URL. These are base URLs: nothing legitimate goes there.
    """
    try:
        url = httpx.URL(text)
        valid = text.isprintable() and url.scheme in ("http", "https") and bool(url.host) and not url.fragment
        credentials = bool(url.userinfo or url.query)
    except (httpx.InvalidURL, ValueError, TypeError):
        valid, credentials = False, "@" in text or "?" in text
    if credentials:
        raise UsageError(
            f"{what} holds a user name, password or query (not shown); give the URL without them, e.g. {example} "
            "(tokens come from environment variables or token files)"
        )
    if not valid:
        raise UsageError(f"{what} {text!r} is not a valid URL; expected http(s)://HOST[:PORT][/PATH], e.g. {example}")
    return text
