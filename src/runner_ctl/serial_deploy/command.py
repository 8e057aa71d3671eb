"""``runner-ctl deploy``: one deploy per environment at a time, and ``deploy history``."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from typer.core import TyperGroup

from runner_ctl.clikit import (
    INTERRUPTED,
    check_number,
    check_text,
    exit_codes_epilog,
    fail,
    guard,
    plain_console,
    progress_line,
    stderr,
)
from runner_ctl.lock.access import JsonFlag, LockUrl, TokenFile, env_name, lock_client
from runner_ctl.serial_deploy.flow import MAX_WAIT_TIMEOUT, DeployOptions, DeployResult, run_deploy

__all__ = ["deploy_app"]


class _DeployGroup(TyperGroup):
    """`deploy [OPTIONS] -- COMMAND...` runs a deploy; `deploy history` is a subcommand.

    Everything after `--` is the deploy command, kept out of click's parsing so that its
    first word is never taken for a subcommand name.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer vendors click: its Context is private
        if "--" in args and not (args and args[0] in self.commands):
            split = args.index("--")
            ctx.meta["runner_ctl.command"] = args[split + 1 :]
            args = args[:split]
        return super().parse_args(ctx, args)


deploy_app = typer.Typer(
    cls=_DeployGroup,
    help="Serialized deploys per environment: runner-ctl deploy --env ENV --commit SHA -- COMMAND [ARGS...]",
)
DEPLOY_EPILOG = exit_codes_epilog(
    ("0", "succeeded, skipped_stale or superseded"),
    ("N", "COMMAND's own exit code when it failed"),
    ("2", "usage or configuration error"),
    ("3", "refused (a diverged commit without --allow-rollback)"),
    ("4", "timeout (--wait-timeout passed while queued)"),
    ("5", "lease_lost or expired"),
    ("6", "the lock service cannot be reached"),
    ("130", "withdrawn or cancelled by a signal (COMMAND gets SIGINT/SIGTERM, then SIGKILL after --grace-seconds)"),
)


@deploy_app.callback(invoke_without_command=True, epilog=DEPLOY_EPILOG)
def deploy_command(
    ctx: typer.Context,
    env: Annotated[str | None, typer.Option(help="Environment to deploy to (e.g. production).")] = None,
    commit: Annotated[str | None, typer.Option(help="Commit to deploy (must resolve in --repo-dir).")] = None,
    repo_dir: Annotated[Path, typer.Option(help="Git checkout for the stale guard.")] = Path(),
    queue_policy: Annotated[
        str, typer.Option(help="latest: skip a commit a newer queued one supersedes; all: deploy each.")
    ] = "latest",
    lease_ttl: Annotated[float, typer.Option(help="Lease seconds; renewed every TTL/3.")] = 30.0,
    wait_timeout: Annotated[float | None, typer.Option(help="Give up waiting after this many seconds.")] = None,
    allow_rollback: Annotated[
        bool, typer.Option("--allow-rollback", help="Deploy a commit that diverged from the deployed one.")
    ] = False,
    reason: Annotated[str, typer.Option(help="Why, for the audit trail.")] = "",
    grace_seconds: Annotated[
        float, typer.Option(help="After a signal, seconds COMMAND gets to stop before SIGKILL ends its process group.")
    ] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="End stdout with one JSON line: the result.")] = False,
    via_ssh: Annotated[
        str | None, typer.Option(help="Reach the lock service on this SSH host through a tunnel.")
    ] = None,
    lock_url: LockUrl = None,
    token_file: TokenFile = None,
) -> None:
    """Deploy COMMIT to ENV: wait for the environment's lock, skip stale commits, run COMMAND, record."""
    if ctx.invoked_subcommand is not None:
        return
    command = list(ctx.meta.get("runner_ctl.command", [])) + list(ctx.args)
    if env is None or commit is None:
        fail("--env and --commit are required: runner-ctl deploy --env ENV --commit SHA -- COMMAND [ARGS...]", 2)
    guard(lambda: (env_name(env), check_text(commit, "--commit", example="$GITHUB_SHA")))
    if wait_timeout is not None:
        guard(lambda: check_number(wait_timeout, "--wait-timeout", 0, MAX_WAIT_TIMEOUT))

    def progress(message: str) -> None:
        progress_line("runner-ctl deploy:", message)

    def go() -> DeployResult:
        options = DeployOptions(
            env=env, commit=commit, command=command, repo_dir=repo_dir.absolute(), queue_policy=queue_policy,
            lease_ttl=lease_ttl, wait_timeout=wait_timeout, allow_rollback=allow_rollback, reason=reason,
            grace_seconds=grace_seconds,
        )  # fmt: skip
        with lock_client(lock_url, token_file, via_ssh) as client:
            return run_deploy(options, client, progress)

    result = guard(go)
    stderr.print(f"runner-ctl deploy: {result.env} {result.commit[:12]}: {result.status}")
    if as_json:
        print(json.dumps(result.to_json()))
    raise typer.Exit(result.exit_code)


@deploy_app.command(
    "history",
    epilog=exit_codes_epilog(
        ("0", "the records were printed"),
        ("2", "bad flags, or a token the service rejects"),
        ("6", "the lock service cannot be reached"),
        ("1", "any other failure"),
        ("130", INTERRUPTED),
    ),
)
def deploy_history(
    env: Annotated[str, typer.Option(help="Environment.")],
    limit: Annotated[int, typer.Option(help="Most recent N records (1-1000).")] = 50,
    as_json: JsonFlag = False,
    lock_url: LockUrl = None,
    token_file: TokenFile = None,
) -> None:
    """The audit trail of an environment: who deployed what, when, and how it ended."""
    if not 1 <= limit <= 1000:
        fail(f"--limit {limit} is out of range; expected 1 to 1000", 2)
    guard(lambda: env_name(env))

    def fetch() -> Any:
        with lock_client(lock_url, token_file) as client:
            return client.history(env, limit)

    records = guard(fetch)
    if as_json:
        print(json.dumps(records))
        return
    table = Table(show_header=True, header_style="bold")
    for column in ("time (UTC)", "request", "actor", "event", "commit", "detail"):
        table.add_column(column)
    for r in records:
        when = datetime.fromtimestamp(r["at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(when, str(r["request_id"] or ""), r["actor"], r["event"], (r["commit"] or "")[:12], r["detail"])
    plain_console().print(table)
