"""``runner-ctl latency report``: the typer sub-app. Parses flags, calls the library, renders.

Its exit codes are listed once, in the command's epilog (``--help`` and the reference docs show it).
"""

import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from runner_ctl.clikit import (
    INTERRUPTED,
    check_http_url,
    check_number,
    check_text,
    exit_codes_epilog,
    guard,
    plain_console,
    stderr,
)
from runner_ctl.errors import ConfigError, UsageError
from runner_ctl.forge.github import GITHUB_API
from runner_ctl.forge.gitlab import GITLAB_API
from runner_ctl.forge.httpcache import ApiCounters
from runner_ctl.forge.rest import token_from_env
from runner_ctl.latency.chart import check_chart_path, write_chart
from runner_ctl.latency.github import fetch_github
from runner_ctl.latency.gitlab import fetch_gitlab
from runner_ctl.latency.model import Filters, Job, read_jsonl, write_jsonl
from runner_ctl.latency.render import markdown, print_table
from runner_ctl.latency.report import DEFAULT_MAX_SLOTS, DEFAULT_TARGET_P95, Report, ReportOptions, build_report, select
from runner_ctl.latency.source import Gaps, SourceOptions
from runner_ctl.latency.tfvars import MAX_HOSTS_LIMIT, decide, read_tfvars, write_tfvars
from runner_ctl.latency.window import Window, resolve_window
from runner_ctl.paths import cache_dir, open_regular

__all__ = ["EXIT_SCALE_OUT", "latency_app"]

EXIT_SCALE_OUT = 10
# source flag -> (fetcher, default --api-url, default --token-env)
FORGES: dict[str, tuple[Callable[[str, SourceOptions], list[Job]], str, str]] = {
    "github": (fetch_github, GITHUB_API, "GITHUB_TOKEN"),
    "gitlab": (fetch_gitlab, GITLAB_API, "GITLAB_TOKEN"),
}
OUTPUT_FORMATS = ("table", "markdown", "json")
MAX_SLOTS_LIMIT = 1024
MAX_TARGET_P95 = 7 * 86_400.0  # a queue target beyond a week says nothing about slots
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

latency_app = typer.Typer(
    help="CI queue time and wall-clock latency from GitHub or GitLab, and how many runner slots keep queues short.",
    no_args_is_help=True,
)


@latency_app.callback()
def _latency() -> None:
    """CI latency: measure queue time and wall-clock latency, and size the runner fleet from data."""


def _trace_window(jobs: list[Job]) -> Window:
    """An offline trace without --since/--until: from its first run's creation to its last job's end."""
    moments = [job.run_created_at if job.run_created_at is not None else job.created_at for job in jobs]
    ends = [job.completed_at for job in jobs if job.completed_at is not None]
    return Window(min(moments), max(moments + ends) + 1.0) if moments else resolve_window(None, None)


def _split_labels(values: list[str] | None) -> frozenset[str]:
    return frozenset(label.strip() for value in values or [] for label in value.split(",") if label.strip())


def _token(name: str) -> str:
    """The token in ``$name``, checked before it goes into a header; no message shows it."""
    if not _ENV_NAME.fullmatch(name):
        raise UsageError(f"--token-env {name!r} is not an environment variable name (e.g. GITHUB_TOKEN)")
    return token_from_env(name, or_else=" (or name another one with --token-env)")


def _emit(report: Report, output_format: str) -> None:
    if output_format == "json":
        print(json.dumps(report.data))
        return
    if output_format == "table":
        width = None if sys.stdout.isatty() else 160
        print_table(report.data, plain_console(width=width))
        return
    text = markdown(report.data)
    print(text)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with open_regular(Path(summary), "$GITHUB_STEP_SUMMARY", "append") as handle:
                handle.write(text.encode() + b"\n")
        except OSError as error:
            raise ConfigError(f"cannot append to $GITHUB_STEP_SUMMARY ({summary}): {error.strerror or error}") from None


@latency_app.command(
    "report",
    epilog=exit_codes_epilog(
        ("0", "a report was made (also when the window holds no jobs: the report says so)"),
        ("1", "the API failed (unreachable, rate-limited for longer than it waits, an unexpected answer)"),
        (
            "2",
            "bad flags, a bad token or a repository/project that does not exist or cannot be read, a bad JSONL line, "
            "matplotlib missing for --chart, a --write-tfvars file that is not a JSON object "
            "(refused before any API call, nothing written)",
        ),
        (str(EXIT_SCALE_OUT), "--fail-on-scale-out and the model recommends more slots"),
        ("130", INTERRUPTED),
    ),
)
def report_command(
    github: Annotated[
        str | None, typer.Option("--github", metavar="OWNER/REPO", help="Read GitHub Actions runs of this repository.")
    ] = None,
    gitlab: Annotated[
        str | None,
        typer.Option("--gitlab", metavar="PROJECT", help="Read GitLab CI pipelines of this project (id or path)."),
    ] = None,
    from_jsonl: Annotated[
        Path | None, typer.Option("--from-jsonl", metavar="FILE", help="Read an offline trace, one job per line.")
    ] = None,
    export_jsonl: Annotated[
        Path | None,
        typer.Option("--export-jsonl", metavar="FILE", help="Also write the selected jobs as a JSONL trace."),
    ] = None,
    api_url: Annotated[
        str | None,
        typer.Option(help=f"API base URL. (default: {GITHUB_API}; GitLab: {GITLAB_API})"),
    ] = None,
    token_env: Annotated[
        str | None,
        typer.Option(
            metavar="NAME", help="Environment variable holding the token. (default: GITHUB_TOKEN or GITLAB_TOKEN)"
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Window start: ISO date/time or a duration ago (7d, 12h). (default: 7d)")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Window end: ISO date/time or a duration ago. (default: now)")
    ] = None,
    labels: Annotated[
        list[str] | None, typer.Option("--labels", help="Only jobs asking for all these labels (comma-separated).")
    ] = None,
    workflow: Annotated[str | None, typer.Option(help="Only this workflow (GitLab: pipeline name).")] = None,
    branch: Annotated[str | None, typer.Option(help="Only runs of this branch (GitLab: ref).")] = None,
    output_format: Annotated[
        str | None,
        typer.Option(
            "--format", metavar="FORMAT", help="table, markdown or json. (default: table on a terminal, else markdown)"
        ),
    ] = None,
    chart: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Write a chart (.png or .svg); needs the latency extra.")
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir", metavar="DIR", help="API cache. (default: $RUNNER_CTL_CACHE_DIR or XDG cache/latency)"
        ),
    ] = None,
    slots: Annotated[
        int | None,
        typer.Option(
            "--current-slots",
            "--slots",
            help="Self-hosted slots today. (default: inferred from the trace; not inferable from runners made per job)",
        ),
    ] = None,
    max_slots: Annotated[int, typer.Option(help="Largest slot count the model tries.")] = DEFAULT_MAX_SLOTS,
    target_p95: Annotated[
        float, typer.Option(metavar="SECONDS", help="Queue p95 the recommendation must meet.")
    ] = DEFAULT_TARGET_P95,
    fail_on_scale_out: Annotated[
        bool, typer.Option("--fail-on-scale-out", help=f"Exit {EXIT_SCALE_OUT} when more slots are recommended.")
    ] = False,
    write_tfvars_file: Annotated[
        Path | None,
        typer.Option(
            "--write-tfvars",
            metavar="FILE",
            help='Write {"runner_count": N} (hosts of --slots-per-host slots) into this JSON variables file.',
        ),
    ] = None,
    slots_per_host: Annotated[
        int | None, typer.Option(metavar="K", help="Runner slots on each host (needed by --write-tfvars).")
    ] = None,
    max_hosts: Annotated[int | None, typer.Option(metavar="M", help="--write-tfvars never writes more hosts.")] = None,
    allow_scale_in: Annotated[
        bool, typer.Option("--allow-scale-in", help="--write-tfvars may write fewer hosts than the file has.")
    ] = False,
) -> None:
    """Queue time and wall-clock latency per label set, and the slot count that keeps queue p95 within target."""
    code = guard(
        lambda: _report(
            github=github,
            gitlab=gitlab,
            from_jsonl=from_jsonl,
            export_jsonl=export_jsonl,
            api_url=api_url,
            token_env=token_env,
            since=since,
            until=until,
            filters=Filters(_split_labels(labels), workflow, branch),
            output_format=output_format,
            chart=chart,
            cache=cache,
            options=ReportOptions(target_p95, slots, max_slots, (max_hosts or 0) * (slots_per_host or 0)),
            fail_on_scale_out=fail_on_scale_out,
            tfvars=_TfvarsFlags(write_tfvars_file, slots_per_host, max_hosts, allow_scale_in),
        )
    )
    raise typer.Exit(code)


@dataclass(frozen=True)
class _TfvarsFlags:
    path: Path | None
    slots_per_host: int | None
    max_hosts: int | None
    allow_scale_in: bool

    def check(self) -> dict[str, Any] | None:
        """The variables file's object when --write-tfvars is given; a bad flag or file is a UsageError."""
        if self.path is None:
            if self.slots_per_host is not None or self.max_hosts is not None or self.allow_scale_in:
                raise UsageError("--slots-per-host, --max-hosts and --allow-scale-in go with --write-tfvars FILE")
            return None
        if self.slots_per_host is None:
            raise UsageError("--write-tfvars needs --slots-per-host K: the runner slots on each host")
        if not 1 <= self.slots_per_host <= MAX_SLOTS_LIMIT:
            raise UsageError(f"--slots-per-host must be from 1 to {MAX_SLOTS_LIMIT}")
        if self.max_hosts is not None and not 1 <= self.max_hosts <= MAX_HOSTS_LIMIT:
            raise UsageError(f"--max-hosts must be from 1 to {MAX_HOSTS_LIMIT}")
        return read_tfvars(self.path)


def _check_flags(
    sources: list[object], output_format: str, chart: Path | None, options: ReportOptions, filters: Filters
) -> None:
    if len(sources) != 1:
        raise UsageError("give exactly one source: --github OWNER/REPO, --gitlab PROJECT or --from-jsonl FILE")
    if output_format not in OUTPUT_FORMATS:
        raise UsageError(f"--format {output_format!r}: use one of {', '.join(OUTPUT_FORMATS)}")
    if options.slots is not None and not 1 <= options.slots <= MAX_SLOTS_LIMIT:
        raise UsageError(f"--slots must be from 1 to {MAX_SLOTS_LIMIT}")
    if not 1 <= options.max_slots <= MAX_SLOTS_LIMIT:
        raise UsageError(f"--max-slots must be from 1 to {MAX_SLOTS_LIMIT}")
    check_number(options.target_p95, "--target-p95", 0, MAX_TARGET_P95)
    if options.target_p95 == 0:
        raise UsageError("--target-p95 must be a positive number of seconds")
    if filters.workflow is not None:
        check_text(filters.workflow, "--workflow", example="CI")
    if filters.branch is not None:
        check_text(filters.branch, "--branch", example="main")
    if chart is not None:
        check_chart_path(chart)  # before any API call: a missing matplotlib wastes none


def _report(
    *,
    github: str | None,
    gitlab: str | None,
    from_jsonl: Path | None,
    export_jsonl: Path | None,
    api_url: str | None,
    token_env: str | None,
    since: str | None,
    until: str | None,
    filters: Filters,
    output_format: str | None,
    chart: Path | None,
    cache: Path | None,
    options: ReportOptions,
    fail_on_scale_out: bool,
    tfvars: _TfvarsFlags,
) -> int:
    chosen_format = output_format or ("table" if sys.stdout.isatty() else "markdown")
    _check_flags([s for s in (github, gitlab, from_jsonl) if s], chosen_format, chart, options, filters)
    existing = tfvars.check()  # before any API call: a bad file wastes none
    counters = ApiCounters()
    gaps = Gaps()
    cache_root = cache if cache is not None else cache_dir() / "latency"
    if from_jsonl is not None:
        jobs = list(read_jsonl(from_jsonl))
        window = resolve_window(since, until) if since is not None or until is not None else _trace_window(jobs)
        source = f"jsonl:{from_jsonl}"
    else:
        forge, target = ("github", github) if github is not None else ("gitlab", gitlab or "")
        fetch, default_api, default_token_env = FORGES[forge]
        window = resolve_window(since, until)
        name = default_token_env if token_env is None else token_env
        source = f"{forge}:{target}"
        source_options = SourceOptions(
            api_url=default_api if api_url is None else check_http_url(api_url, "--api-url", example=default_api),
            token=_token(name),
            token_env=name,
            window=window,
            filters=filters,
            cache_root=cache_root,
            counters=counters,
            gaps=gaps,
        )
        jobs = fetch(target, source_options)
    if export_jsonl is not None:
        written = write_jsonl(export_jsonl, select(jobs, window, filters))
        stderr.print(f"wrote {written} jobs to {export_jsonl}", markup=False)
    report = build_report(
        source=source, window=window, jobs=jobs, filters=filters, counters=counters, options=options, gaps=gaps
    )
    if tfvars.path is not None and existing is not None and tfvars.slots_per_host is not None:
        recommendation = report.data["recommendation"]
        plan = decide(
            tfvars.path,
            existing,
            recommended_slots=recommendation["recommended_slots"],
            simulated_jobs=recommendation["simulated_jobs"],
            slots_per_host=tfvars.slots_per_host,
            max_hosts=tfvars.max_hosts,
            allow_scale_in=tfvars.allow_scale_in,
        )
        write_tfvars(plan, existing)
        report.data["tfvars"] = plan.to_json(tfvars.slots_per_host)
        verb = f"wrote runner_count {plan.runner_count}" if plan.changed else "left runner_count as it is"
        stderr.print(f"{verb} in {tfvars.path} ({plan.reason})", markup=False)
    _emit(report, chosen_format)
    if chart is not None:
        write_chart(chart, report.data, report.queues)
    return EXIT_SCALE_OUT if fail_on_scale_out and report.scale_out else 0
