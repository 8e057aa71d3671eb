"""What every command shares: expected failures as one line on stderr and an exit code.

Apart from cli.py so that command modules kept in their own packages (latency/) use the
same mechanism without importing the app that imports them.
"""

from collections.abc import Callable
from typing import NoReturn, TypeVar

import typer
from rich.console import Console

from runner_ctl.errors import RunnerCtlError

__all__ = ["fail", "guard", "print_error", "stderr"]

stderr = Console(stderr=True, highlight=False)
T = TypeVar("T")


def print_error(message: str) -> None:
    stderr.print(f"runner-ctl: error: {message}", markup=False, soft_wrap=True)


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
