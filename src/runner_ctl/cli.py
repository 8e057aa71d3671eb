"""The ``runner-ctl`` command line: parses, calls the library, renders. Nothing else."""

import contextlib
import dataclasses
import json
import os
import signal
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from runner_ctl import __version__
from runner_ctl.clikit import (
    check_http_url,
    check_number,
    check_text,
    plain_console,
    print_error,
    progress_line,
    stderr,
)
from runner_ctl.clikit import fail as _fail
from runner_ctl.clikit import guard as _guard
from runner_ctl.deploy import DeployOptions, DeployResult, run_deploy
from runner_ctl.errors import ConfigError, RunnerCtlError, UsageError
from runner_ctl.latency.command import latency_app
from runner_ctl.lock.client import LockClient
from runner_ctl.lock.serve import DEFAULT_LISTEN, DEFAULT_PORT, serve
from runner_ctl.lock.states import validate_env
from runner_ctl.lock.tokens import read_client_secret
from runner_ctl.lock.tunnel import ssh_tunnel
from runner_ctl.paths import find_project_root
from runner_ctl.rehearse import RehearsalReport, rehearse
from runner_ctl.testhost import boot_host, destroy_host, get_host, host_names, list_hosts
from runner_ctl.toolbump import OPENTOFU, bump

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
lock_app = typer.Typer(
    help="The deploy lock service: serve it, see its state, break a stuck lock.", no_args_is_help=True
)
runners_app = typer.Typer(help="CI runner registration on the runner host.")
tools_app = typer.Typer(help="Pinned tools in multitool.lock.json (bin/tofu reads it).")
app.add_typer(testhost_app, name="testhost")
app.add_typer(deploy_app, name="deploy")
app.add_typer(lock_app, name="lock")
app.add_typer(latency_app, name="latency")
app.add_typer(runners_app, name="runners")
app.add_typer(tools_app, name="tools")


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
        console.print("rehearsal passed", style="bold green")
    else:
        console.print(
            Text.assemble((f"rehearsal failed at step '{report.failed_step}'", "bold red"), ": ", report.error or ""),
            soft_wrap=True,
        )


@app.command("rehearse")
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
) -> None:
    """Deploy to a fresh local Debian 12 host, run the host checks, deploy again (must change nothing)."""
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
    hosts = _guard(list_hosts)
    if as_json:
        print(json.dumps([{**h.public(), "running": h.running()} for h in hosts]))
        return
    table = Table(show_header=True, header_style="bold")
    for column in ("name", "address", "state", "ssh_config"):
        table.add_column(column)
    for h in hosts:
        table.add_row(h.name, h.address, "running" if h.running() else "stopped", h.ssh_config)
    plain_console().print(table)


@testhost_app.command("ssh", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def testhost_ssh(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Test host name.")],
) -> None:
    """Open a shell on a test host (extra arguments run as a command)."""
    host = _guard(lambda: get_host(name))
    try:
        os.execvp("ssh", ["ssh", "-F", host.ssh_config, host.name, *ctx.args])  # noqa: S606
    except OSError as error:
        _fail(f"cannot run ssh ({error.strerror or error}); install it: apt-get install openssh-client", 2)


@testhost_app.command("down")
def testhost_down(
    name: Annotated[str | None, typer.Argument(help="Test host name.")] = None,
    all_hosts: Annotated[bool, typer.Option("--all", help="Tear down every test host.")] = False,
) -> None:
    """Stop a test host and remove it (the cached rootfs and apt repository stay)."""
    if (name is None) == (not all_hosts):
        _fail("name exactly one test host, or pass --all (e.g. 'runner-ctl testhost down rh1')", 2)
    names = host_names() if all_hosts else [name or ""]

    def down() -> None:
        for each in names:
            destroy_host(each)
            print(f"{each} removed")

    _guard(down)


# ---- groups that later issues fill ---------------------------------------------------------


MAX_WAIT_SECONDS = 7 * 86_400.0  # a deploy queued for longer than a week is abandoned, not waited for
DEPLOY_EPILOG = (
    "Exit codes: 0 succeeded, skipped_stale or superseded; the command's own code when it failed; "
    "2 usage or configuration error; 3 refused; 4 timeout; 5 lease_lost; 6 service unreachable; "
    "130 withdrawn or cancelled by a signal (COMMAND gets SIGINT/SIGTERM, then SIGKILL after --grace-seconds)."
)


def _lock_access(lock_url: str | None, token_file: Path | None, via_ssh: str | None = None) -> tuple[str, str]:
    """The lock service's URL and the client's secret, every flag checked before any is used."""
    if lock_url is not None:
        url = check_http_url(lock_url, "--lock-url", example=f"http://{DEFAULT_LISTEN}")
    else:
        # An empty variable counts as unset: CI systems export unset variables as empty.
        url = os.environ.get("RUNNER_CTL_LOCK_URL") or f"http://{DEFAULT_LISTEN}"
        check_http_url(url, "RUNNER_CTL_LOCK_URL", example=f"http://{DEFAULT_LISTEN}")
    if via_ssh is not None:
        check_text(via_ssh, "--via-ssh", example="runner-1.example.com")
        if via_ssh.startswith("-") or any(char.isspace() for char in via_ssh):
            raise UsageError(
                f"--via-ssh {via_ssh!r} is not an SSH host; expected [USER@]HOST, e.g. runner-1.example.com"
            )
    secret = read_client_secret(token_file) if token_file else os.environ.get("RUNNER_CTL_LOCK_TOKEN", "")
    if not secret:
        raise ConfigError("no deploy lock token: set RUNNER_CTL_LOCK_TOKEN or pass --token-file PATH")
    return url, secret


def _retry_seconds() -> float:
    text = os.environ.get("RUNNER_CTL_LOCK_RETRY_SECONDS", "30")
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise ConfigError(f"RUNNER_CTL_LOCK_RETRY_SECONDS={text!r} is invalid; expected seconds from 0 to 3600")
    return value


@contextlib.contextmanager
def _client(lock_url: str | None, token_file: Path | None, via_ssh: str | None = None) -> Iterator[LockClient]:
    url, secret = _lock_access(lock_url, token_file, via_ssh)
    with contextlib.ExitStack() as stack:
        if via_ssh:
            remote = httpx.URL(url)
            port = stack.enter_context(ssh_tunnel(via_ssh, remote.host, remote.port or DEFAULT_PORT))
            url = f"http://127.0.0.1:{port}"
        client = LockClient(url, secret, retry_seconds=_retry_seconds())
        stack.callback(client.close)
        yield client


def _env_name(env: str) -> str:
    """``--env`` checked on this side: its name goes into the request's URL path."""
    check_text(env, "--env", example="production")
    try:
        return validate_env(env)
    except ValueError as error:
        raise UsageError(f"--env: {error}") from None


LockUrl = Annotated[str | None, typer.Option(help="Lock service URL. [env: RUNNER_CTL_LOCK_URL]")]
TokenFile = Annotated[Path | None, typer.Option(help="File holding the token. [default: $RUNNER_CTL_LOCK_TOKEN]")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]


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
        _fail("--env and --commit are required: runner-ctl deploy --env ENV --commit SHA -- COMMAND [ARGS...]", 2)
    _guard(lambda: (_env_name(env), check_text(commit, "--commit", example="$GITHUB_SHA")))
    if wait_timeout is not None:
        _guard(lambda: check_number(wait_timeout, "--wait-timeout", 0, MAX_WAIT_SECONDS))

    def progress(message: str) -> None:
        progress_line("runner-ctl deploy:", message)

    def go() -> DeployResult:
        options = DeployOptions(
            env=env, commit=commit, command=command, repo_dir=repo_dir.absolute(), queue_policy=queue_policy,
            lease_ttl=lease_ttl, wait_timeout=wait_timeout, allow_rollback=allow_rollback, reason=reason,
            grace_seconds=grace_seconds,
        )  # fmt: skip
        with _client(lock_url, token_file, via_ssh) as client:
            return run_deploy(options, client, progress)

    result = _guard(go)
    stderr.print(f"runner-ctl deploy: {result.env} {result.commit[:12]}: {result.status}")
    if as_json:
        print(json.dumps(result.to_json()))
    raise typer.Exit(result.exit_code)


@deploy_app.command("history")
def deploy_history(
    env: Annotated[str, typer.Option(help="Environment.")],
    limit: Annotated[int, typer.Option(help="Most recent N records (1-1000).")] = 50,
    as_json: JsonFlag = False,
    lock_url: LockUrl = None,
    token_file: TokenFile = None,
) -> None:
    """The audit trail of an environment: who deployed what, when, and how it ended."""
    if not 1 <= limit <= 1000:
        _fail(f"--limit {limit} is out of range; expected 1 to 1000", 2)
    _guard(lambda: _env_name(env))

    def fetch() -> Any:
        with _client(lock_url, token_file) as client:
            return client.history(env, limit)

    records = _guard(fetch)
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


@lock_app.command("serve")
def lock_serve(
    db: Annotated[Path, typer.Option(help="SQLite database file (created if missing).")],
    token_file: Annotated[Path, typer.Option(help="name:secret[:admin] lines; must not be group/world writable.")],
    listen: Annotated[str, typer.Option(help="HOST:PORT to listen on.")] = DEFAULT_LISTEN,
    docs: Annotated[bool, typer.Option("--docs", help="Also serve the API pages /docs and /redoc.")] = False,
) -> None:
    """Run the deploy lock service (HTTP JSON API under /v1, /healthz, /metrics, /openapi.json)."""
    _guard(lambda: serve(db=db, listen=listen, token_file=token_file, docs=docs))


@lock_app.command("status")
def lock_status(
    env: Annotated[str | None, typer.Option(help="Only this environment.")] = None,
    as_json: JsonFlag = False,
    lock_url: LockUrl = None,
    token_file: TokenFile = None,
) -> None:
    """Holder, queue and last deployed commit per environment."""
    if env is not None:
        _guard(lambda: _env_name(env))

    def fetch() -> Any:
        with _client(lock_url, token_file) as client:
            return client.status(env)

    found = _guard(fetch)
    envs = [found] if env else found
    if as_json:
        print(json.dumps(found))
        return
    table = Table(show_header=True, header_style="bold")
    for column in ("env", "last deployed", "holder", "lease expires (UTC)", "queued"):
        table.add_column(column)
    for e in envs:
        holder = e["holder"]
        expires = (
            datetime.fromtimestamp(holder["lease_expires_at"], UTC).strftime("%H:%M:%S")
            if holder and holder["lease_expires_at"]
            else ""
        )
        who = f"{holder['commit'][:12]} by {holder['actor']}" if holder else ""
        table.add_row(e["env"], (e["last_commit"] or "")[:12], who, expires, str(len(e["queue"])))
    plain_console().print(table)


@lock_app.command("release")
def lock_release(
    env: Annotated[str, typer.Option(help="Environment whose lock to break.")],
    reason: Annotated[str, typer.Option(help="Why, for the audit trail.")],
    lock_url: LockUrl = None,
    token_file: TokenFile = None,
) -> None:
    """Break a stuck lock (admin token only; audited). The next queued deploy proceeds."""
    _guard(lambda: (_env_name(env), check_text(reason, "--reason", example="'holder crashed'")))

    def act() -> Any:
        with _client(lock_url, token_file) as client:
            return client.release(env, reason)

    released = _guard(act)["released"]
    print(f"{env}: released request {released['id']}" if released else f"{env}: nothing was held")


@runners_app.callback(invoke_without_command=True)
def _runners() -> None:
    _not_yet("runners")


@tools_app.command("bump")
def tools_bump(
    tool: Annotated[str, typer.Argument(help="The tool to re-pin (supported: tofu).")],
    version: Annotated[str, typer.Argument(help="The release to pin, e.g. 1.12.6.")],
    lockfile: Annotated[
        Path | None, typer.Option(help="The lockfile to rewrite (default: multitool.lock.json in the checkout).")
    ] = None,
    release_url: Annotated[
        str | None, typer.Option(help="A mirror of the release downloads (the signature is still checked).")
    ] = None,
    gpg_key_url: Annotated[
        str | None, typer.Option(help="Where to fetch the signing key (its fingerprint is pinned in runner-ctl).")
    ] = None,
) -> None:
    """Re-pin TOOL at VERSION in multitool.lock.json from the release's signed SHA256SUMS.

    The signature is verified with cosign when it is installed, else gpg; with neither, the
    pins are written with a warning. Linux and macOS on x86_64 and arm64 are pinned.
    """
    if tool != OPENTOFU.tool:
        _fail(f"runner-ctl tools bump knows only {OPENTOFU.tool!r}, not {tool!r}", 2)
    source = OPENTOFU
    if release_url is not None:
        source = dataclasses.replace(
            source,
            download_base=_guard(lambda: check_http_url(release_url, "--release-url", example=OPENTOFU.download_base)),
        )
    if gpg_key_url is not None:
        source = dataclasses.replace(
            source,
            gpg_key_url=_guard(lambda: check_http_url(gpg_key_url, "--gpg-key-url", example=OPENTOFU.gpg_key_url)),
        )
    target = lockfile or _guard(find_project_root) / "multitool.lock.json"
    result = _guard(lambda: bump(target, version, source=source))
    if result.verified_by == "none":
        stderr.print(
            "runner-ctl: warning: neither cosign nor gpg is installed, so the SHA256SUMS signature was NOT verified"
        )
    print(
        f"{tool} {result.version}: {len(result.binaries)} binaries pinned in {target} (signature: {result.verified_by})"
    )


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
