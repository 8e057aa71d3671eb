"""The ``runner-ctl`` command line: parses, calls the library, renders. Nothing else."""

import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from runner_ctl import __version__
from runner_ctl.errors import RunnerCtlError
from runner_ctl.paths import find_project_root
from runner_ctl.rehearse import RehearsalReport, rehearse
from runner_ctl.testhost import boot_host, destroy_host, get_host, list_hosts

__all__ = ["app", "main"]

app = typer.Typer(
    name="runner-ctl",
    help="Fast, safe CI for a Bazel-heavy repository: rehearse host deploys, serialize deploys, measure CI latency.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
testhost_app = typer.Typer(
    help="Disposable local Debian 12 hosts (systemd-nspawn) for rehearsals and tests.",
    no_args_is_help=True,
)
deploy_app = typer.Typer(help="Serialized deploys per environment (issue #3).")
lock_app = typer.Typer(help="The deploy lock service (issue #3).")
latency_app = typer.Typer(help="CI queue time and wall-clock latency (issue #5).")
runners_app = typer.Typer(help="CI runner registration on the runner host.")
tools_app = typer.Typer(help="Pinned tools in multitool.lock.json (issue #4).")
app.add_typer(testhost_app, name="testhost")
app.add_typer(deploy_app, name="deploy")
app.add_typer(lock_app, name="lock")
app.add_typer(latency_app, name="latency")
app.add_typer(runners_app, name="runners")
app.add_typer(tools_app, name="tools")

stderr = Console(stderr=True, highlight=False)
T = TypeVar("T")


def _fail(message: str, code: int) -> NoReturn:
    stderr.print(f"runner-ctl: error: {message}", markup=False, soft_wrap=True)
    raise typer.Exit(code)


def _guard(action: Callable[[], T]) -> T:
    """Run a library call; expected failures become one line on stderr and an exit code."""
    try:
        return action()
    except RunnerCtlError as error:
        _fail(error.message, error.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)


def _not_yet(group: str, issue: int | None = None) -> None:
    tracked = f" (tracked in issue #{issue})" if issue else ""
    _fail(f"'runner-ctl {group}' is not built yet{tracked}", 2)


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        print(__version__)
        raise typer.Exit(0)


# ---- rehearse ----------------------------------------------------------------------------


def _render_report(report: RehearsalReport, console: Console) -> None:
    table = Table(title="runner-ctl rehearse", show_header=True, header_style="bold")
    table.add_column("step")
    table.add_column("operations", justify="right")
    table.add_column("changed", justify="right")
    table.add_column("seconds", justify="right")
    for label, run in (("first deploy", report.first_run), ("second deploy", report.second_run)):
        if run is None:
            table.add_row(label, "-", "-", "-")
        else:
            table.add_row(label, str(run.operations), str(run.changed), f"{run.seconds:.1f}")
    console.print(f"layers: {', '.join(report.layers)}", markup=False)
    console.print(table)
    if report.checks:
        console.print(
            f"host checks: {report.checks.passed} passed, {report.checks.failed} failed "
            f"({report.checks.seconds:.1f} s)",
            markup=False,
        )
    if report.kept and report.host:
        console.print(f"kept test host {report.host}: runner-ctl testhost ssh {report.host}", markup=False)
    if report.ok:
        console.print("[bold green]rehearsal passed[/]")
    else:
        console.print(f"[bold red]rehearsal failed at step '{report.failed_step}'[/]: ", end="")
        console.print(report.error or "", markup=False, soft_wrap=True)


@app.command("rehearse")
def rehearse_command(
    deploy: Annotated[
        Path | None,
        typer.Option(help="The deploy to rehearse. [default: deploys/runner_host.py of this checkout]"),
    ] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the test host running afterwards.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="End stdout with one JSON line: the report.")] = False,
) -> None:
    """Deploy to a fresh local Debian 12 host, run the host checks, deploy again (must change nothing)."""
    out = stderr if as_json else Console(highlight=False)

    def progress(message: str) -> None:
        stderr.print(f"[dim]==>[/] {message}", highlight=False)

    def run() -> RehearsalReport:
        project_root = find_project_root()
        return rehearse(
            deploy or project_root / "deploys" / "runner_host.py",
            project_root=project_root,
            keep=keep,
            progress=progress,
        )

    try:
        report = run()
    except KeyboardInterrupt:  # the rehearsal has already torn its host down
        _fail("interrupted; the test host was torn down", 130)
    except RunnerCtlError as error:
        if as_json:
            failed = RehearsalReport(failed_step="validate", error=error.message)
            print(json.dumps(failed.to_json()))
        _fail(error.message, error.exit_code)
    _render_report(report, out)
    if as_json:
        sys.stdout.flush()
        print(json.dumps(report.to_json()))
    raise typer.Exit(0 if report.ok else 1)


# ---- testhost ----------------------------------------------------------------------------


@testhost_app.command("up")
def testhost_up(
    name: Annotated[str | None, typer.Option(help="Host name. [default: the first free rhN]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"name","address","ssh_config","ssh_key"}.')] = False,
    volume_mb: Annotated[
        int, typer.Option(help="Attach an ext4 block volume of this many MiB (like a DigitalOcean volume).")
    ] = 0,
) -> None:
    """Boot a disposable Debian 12 host and wait until it answers SSH."""
    host = _guard(lambda: boot_host(name, volume_mb=volume_mb))
    if as_json:
        print(json.dumps(host.public()))
    else:
        print(f"{host.name} is up at {host.address}: runner-ctl testhost ssh {host.name}")


@testhost_app.command("list")
def testhost_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List test hosts and whether each is running."""
    hosts = list_hosts()
    if as_json:
        print(json.dumps([{**h.public(), "running": h.running()} for h in hosts]))
        return
    table = Table(show_header=True, header_style="bold")
    for column in ("name", "address", "state", "ssh_config"):
        table.add_column(column)
    for h in hosts:
        table.add_row(h.name, h.address, "running" if h.running() else "stopped", h.ssh_config)
    Console(highlight=False).print(table)


@testhost_app.command("ssh", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def testhost_ssh(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Test host name.")],
) -> None:
    """Open a shell on a test host (extra arguments run as a command)."""
    host = _guard(lambda: get_host(name))
    os.execvp("ssh", ["ssh", "-F", host.ssh_config, host.name, *ctx.args])  # noqa: S606


@testhost_app.command("down")
def testhost_down(
    name: Annotated[str | None, typer.Argument(help="Test host name.")] = None,
    all_hosts: Annotated[bool, typer.Option("--all", help="Tear down every test host.")] = False,
) -> None:
    """Stop a test host and remove it (the cached rootfs and apt repository stay)."""
    if (name is None) == (not all_hosts):
        _fail("name exactly one test host, or pass --all (e.g. 'runner-ctl testhost down rh1')", 2)
    names = [h.name for h in list_hosts()] if all_hosts else [name or ""]

    def down() -> None:
        for each in names:
            destroy_host(each)
            print(f"{each} removed")

    _guard(down)


# ---- groups that later issues fill ---------------------------------------------------------


@deploy_app.callback(invoke_without_command=True)
def _deploy() -> None:
    _not_yet("deploy", 3)


@lock_app.callback(invoke_without_command=True)
def _lock() -> None:
    _not_yet("lock", 3)


@latency_app.callback(invoke_without_command=True)
def _latency() -> None:
    _not_yet("latency", 5)


@runners_app.callback(invoke_without_command=True)
def _runners() -> None:
    _not_yet("runners")


@tools_app.callback(invoke_without_command=True)
def _tools() -> None:
    _not_yet("tools", 4)


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (a CI job cancelled, say) unwinds like Ctrl-C, so test hosts are torn down.
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    except RunnerCtlError as error:  # raised outside a guarded call
        stderr.print(f"runner-ctl: error: {error.message}", markup=False, soft_wrap=True)
        sys.exit(error.exit_code)
