"""The ``runner-ctl`` command line: assembles the command groups and handles what escapes them.

Each group lives beside the library code it drives (``latency/command.py``, ``lock/command.py``,
``runners/command.py``, ``serial_deploy/command.py``, ``testhost/command.py``, ``rehearse_command.py``,
``tools_command.py``).
"""

import signal
import sys
from types import FrameType
from typing import Annotated

import typer

from runner_ctl import __version__
from runner_ctl.clikit import print_error
from runner_ctl.errors import RunnerCtlError
from runner_ctl.latency.command import latency_app
from runner_ctl.lock.command import lock_app
from runner_ctl.rehearse_command import REHEARSE_EPILOG, rehearse_command
from runner_ctl.runners.command import runners_app
from runner_ctl.serial_deploy.command import deploy_app
from runner_ctl.testhost.command import testhost_app
from runner_ctl.tools_command import tools_app

__all__ = ["app", "main"]

app = typer.Typer(
    name="runner-ctl",
    help="Fast, safe CI for a Bazel-heavy repository: rehearse host deploys, serialize deploys, measure CI latency.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("rehearse", epilog=REHEARSE_EPILOG)(rehearse_command)
app.add_typer(testhost_app, name="testhost")
app.add_typer(deploy_app, name="deploy")
app.add_typer(lock_app, name="lock")
app.add_typer(latency_app, name="latency")
app.add_typer(runners_app, name="runners")
app.add_typer(tools_app, name="tools")


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        print(__version__)
        raise typer.Exit(0)


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (a CI job cancelled, say) unwinds like Ctrl-C, so test hosts are torn down.
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    except RunnerCtlError as error:  # raised outside a guarded call
        print_error(error.message)
        sys.exit(error.exit_code)
