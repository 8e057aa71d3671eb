"""``runner-ctl rehearse``: the production deploy on a disposable host, its checks, a no-op second run."""

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from runner_ctl.clikit import exit_codes_epilog, fail, plain_console, progress_line, stderr
from runner_ctl.errors import RunnerCtlError
from runner_ctl.paths import find_project_root
from runner_ctl.rehearse import RehearsalReport, rehearse

__all__ = ["REHEARSE_EPILOG", "rehearse_command"]


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
    for summary in report.standins:
        console.print(f"stand-in: {summary}", markup=False)
    console.print(table)
    for label, checks in (("host checks", report.checks), ("fleet checks", report.fleet_checks)):
        if checks:
            console.print(
                f"{label}: {checks.passed} passed, {checks.failed} failed ({checks.seconds:.1f} s)",
                markup=False,
            )
    if report.kept:
        for name in report.hosts:
            console.print(f"kept test host {name}: runner-ctl testhost ssh {name}", markup=False)
    if report.ok:
        console.print("rehearsal passed", style="bold green")
    else:
        console.print(
            Text.assemble((f"rehearsal failed at step '{report.failed_step}'", "bold red"), ": ", report.error or ""),
            soft_wrap=True,
        )


REHEARSE_EPILOG = exit_codes_epilog(
    ("0", "every step passed"),
    ("1", "a step failed: the report names it (boot, stand-ins, first deploy, host checks, second deploy, teardown)"),
    ("2", "bad flags or group data, or the machine lacks root or a system tool: before any host boots"),
    ("130", "interrupted: the hosts are torn down (kept with --keep)"),
)


def rehearse_command(
    deploy: Annotated[
        Path | None,
        typer.Option(help="The deploy to rehearse. [default: deploys/runner_host.py of this checkout]"),
    ] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the test host running afterwards.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="End stdout with one JSON line: the report.")] = False,
    real_secrets: Annotated[
        bool,
        typer.Option(
            "--real-secrets",
            help="Resolve the group data's secret references for real. [default: generated stand-ins]",
        ),
    ] = False,
    hosts: Annotated[
        int,
        typer.Option(
            "--hosts",
            help="Rehearse a fleet of this many hosts on one private network (like runner_count), "
            "with the fleet checks (tests/fleet) too.",
        ),
    ] = 1,
) -> None:
    """Deploy to fresh local Debian 12 hosts, run the host checks, deploy again (must change nothing)."""
    out = stderr if as_json else plain_console()

    def progress(message: str) -> None:
        progress_line("==>", message)

    def run() -> RehearsalReport:
        project_root = find_project_root()
        return rehearse(
            deploy,
            project_root=project_root,
            keep=keep,
            real_secrets=real_secrets,
            hosts=hosts,
            progress=progress,
        )

    try:
        report = run()
    except KeyboardInterrupt:  # the rehearsal has already torn its hosts down (unless kept)
        hosts_were = "test host was" if hosts == 1 else "test hosts were"
        fail(f"interrupted; the {hosts_were} {'kept' if keep else 'torn down'}", 130)
    except RunnerCtlError as error:
        if as_json:
            failed = RehearsalReport(failed_step="validate", error=error.message)
            print(json.dumps(failed.to_json()))
        fail(error.message, error.exit_code)
    _render_report(report, out)
    if as_json:
        sys.stdout.flush()
        print(json.dumps(report.to_json()))
    raise typer.Exit(0 if report.ok else 1)
