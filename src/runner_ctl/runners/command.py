"""``runner-ctl runners list`` and ``runners prune``: the typer sub-app. Parses flags, calls the library, renders.

Their exit codes are listed once, in ``EPILOG`` (``--help`` and the reference docs show it).
"""

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from runner_ctl.clikit import INTERRUPTED, check_text, exit_codes_epilog, guard, plain_console
from runner_ctl.errors import ConfigError, UsageError
from runner_ctl.forge.rest import NotFoundError, token_from_env
from runner_ctl.forge.runners import RunnerInfo
from runner_ctl.hostdata import default_host_settings, load_group_data
from runner_ctl.paths import find_project_root, state_dir
from runner_ctl.runners.audit import AuditLog, AuditRecord
from runner_ctl.runners.forges import ForgeSession, Target, connect, resolve_target
from runner_ctl.runners.prune import Decision, decide, parse_duration
from runner_ctl.runners.state import OfflineSince

__all__ = ["FALLBACK_PREFIX", "audit_log_path", "default_prefix", "runners_app", "state_file_path"]

# The layer specs' own default, for a checkout whose specs do not name the key (yet).
FALLBACK_PREFIX = "rc-"
DEFAULT_OFFLINE_FOR = "1h"
_AUDIT_WHERE = "$RUNNER_CTL_STATE_DIR/runners/audit.jsonl (default: ~/.local/state/runner-ctl/runners/audit.jsonl)"

# Paragraphs, not hard-wrapped lines: rich re-wraps help text and keeps each newline. The
# backslash keeps "[names]" from being read as rich markup.
PRUNE_HELP = "\n\n".join(
    (
        "Delete offline, idle runners whose names start with the prefix; never anything else.",
        "Prints each runner with what was done and why. Each action (deleted, or kept with the reason) is also "
        f"appended as one JSON line to the audit log, {_AUDIT_WHERE}, mode 0600. When runner-ctl first saw each "
        "runner offline is kept beside it, in offline-since.json.",
        'With --json the last stdout line is {"deleted": \\[names], "kept": \\[{"name": ..., "reason": ...}]}; '
        "with --dry-run, deleted lists what would be deleted, and nothing is deleted.",
        "The token comes from GITHUB_TOKEN or GITLAB_TOKEN.",
    )
)

runners_app = typer.Typer(
    help="List the CI runners registered on GitHub or GitLab, and prune the offline ones runner-ctl registered.",
    no_args_is_help=True,
)


@runners_app.callback()
def _runners() -> None:
    """CI runners on the forge: list them, prune the offline ones this project registered."""


def audit_log_path() -> Path:
    return state_dir() / "runners" / "audit.jsonl"


def state_file_path() -> Path:
    return state_dir() / "runners" / "offline-since.json"


def default_prefix(forge: str) -> str:
    """The runner name prefix of ``forge`` in this checkout's group data, else the layer's default.

    Group data is ``inventories/group_data/{all,runner_hosts}.py`` of the checkout runner-ctl
    runs in (or was installed from); outside one, the layer spec's default.
    """
    key = f"{forge}_runner_name_prefix"
    try:
        data: dict[str, Any] = load_group_data(find_project_root() / "inventories" / "group_data")
    except UsageError:  # no checkout: nothing overrides the default
        data = {}
    value = data.get(key, default_host_settings().dump().get(key, FALLBACK_PREFIX))
    if not isinstance(value, str) or not value:
        raise ConfigError(f"group data {key} = {value!r} is not a name prefix; fix it or pass --prefix P")
    return value


# ---- shared flags ------------------------------------------------------------------------------

GitHubFlag = Annotated[
    str | None, typer.Option("--github", metavar="OWNER/REPO", help="The runners of this GitHub repository.")
]
GitHubOrgFlag = Annotated[
    str | None, typer.Option("--github-org", metavar="ORG", help="The runners of this GitHub organization.")
]
GitLabFlag = Annotated[
    str | None,
    typer.Option(
        "--gitlab",
        metavar="PROJECT_OR_GROUP",
        help="The runners of this GitLab project or group (id or path; 'instance' for instance runners).",
    ),
]
ApiUrlFlag = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        metavar="URL",
        help="API base URL, for GitHub Enterprise Server or self-managed GitLab. "
        "(default: https://api.github.com; GitLab: https://gitlab.com/api/v4)",
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON (the last line of stdout).")]
EPILOG = exit_codes_epilog(
    ("0", "done (also when there is nothing to list or prune)"),
    ("1", "the API failed (unreachable, rate limited for longer than it waits, an unexpected answer)"),
    (
        "2",
        "bad flags, a missing token, or an API answering 401, 403 or 404 (a bad token, one lacking the permission, "
        "a repository/organization/project that does not exist or cannot be seen)",
    ),
    ("130", INTERRUPTED),
)


# ---- list ----------------------------------------------------------------------------------------


@runners_app.command("list", epilog=EPILOG)
def list_command(
    github: GitHubFlag = None,
    github_org: GitHubOrgFlag = None,
    gitlab: GitLabFlag = None,
    api_url: ApiUrlFlag = None,
    json_output: JsonFlag = False,
) -> None:
    """The registered runners with their status, busy state and labels (GitLab: tags).

    The token comes from GITHUB_TOKEN or GITLAB_TOKEN.
    """
    raise typer.Exit(guard(lambda: _list(resolve_target(github, github_org, gitlab, api_url), json_output)))


def _shown(name: str) -> str:
    """A runner name for a terminal: quoted when it holds control characters (it could fake a line)."""
    return name if name.isprintable() else repr(name)


def _iso(moment: float | None) -> str | None:
    return None if moment is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def _list(target: Target, json_output: bool) -> int:
    with connect(target, token_from_env(target.token_env)) as session:
        runners: list[RunnerInfo] = session.list_runners()
    if json_output:
        document = {
            "forge": target.forge,
            "scope": target.scope,
            "api_url": target.api_url,
            "runners": [
                {
                    "id": runner.id,
                    "name": runner.name,
                    "status": runner.status,
                    "online": runner.online,
                    "busy": runner.busy,
                    "labels": list(runner.labels),
                    "contacted_at": _iso(runner.contacted_at),
                }
                for runner in runners
            ],
        }
        print(json.dumps(document))
        return 0
    console = plain_console(width=None if sys.stdout.isatty() else 160)
    if not runners:
        console.print(f"no runners registered on {target.describe()}")
        return 0
    _print_runners(console, target, runners)
    return 0


def _print_runners(console: Console, target: Target, runners: list[RunnerInfo]) -> None:
    contacts = any(runner.contacted_at is not None for runner in runners)
    table = Table(title=f"{len(runners)} runners on {target.describe()}", title_justify="left")
    for column in ("ID", "NAME", "STATUS", "BUSY", target.label_word.upper(), *(("LAST CONTACT",) if contacts else ())):
        table.add_column(column, justify="right" if column == "ID" else "left")
    for runner in runners:
        row = [
            str(runner.id),
            _shown(runner.name),
            runner.status,
            "busy" if runner.busy else "idle",
            ", ".join(runner.labels),
        ]
        if contacts:
            row.append(_iso(runner.contacted_at) or "never")
        table.add_row(*row)
    console.print(table)


# ---- prune ---------------------------------------------------------------------------------------


@runners_app.command("prune", help=PRUNE_HELP, epilog=EPILOG)
def prune_command(
    github: GitHubFlag = None,
    github_org: GitHubOrgFlag = None,
    gitlab: GitLabFlag = None,
    api_url: ApiUrlFlag = None,
    prefix: Annotated[
        str | None,
        typer.Option(
            "--prefix",
            metavar="P",
            help="Only runners whose names start with P. "
            "(default: github_runner_name_prefix or gitlab_runner_name_prefix of the group data, rc-)",
        ),
    ] = None,
    offline_for: Annotated[
        str,
        typer.Option(
            "--offline-for",
            metavar="DURATION",
            help="Only runners offline at least this long: 30s, 15m, 1h, 2d; 0 for any offline runner. "
            "GitHub gives no last-contact time: there it counts from when runner-ctl first saw the runner offline.",
        ),
    ] = DEFAULT_OFFLINE_FOR,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be deleted; delete nothing.")] = False,
    json_output: JsonFlag = False,
) -> None:
    raise typer.Exit(
        guard(
            lambda: _prune(
                resolve_target(github, github_org, gitlab, api_url),
                prefix=prefix,
                offline_for=parse_duration(offline_for),
                dry_run=dry_run,
                json_output=json_output,
            )
        )
    )


def _prune(target: Target, *, prefix: str | None, offline_for: float, dry_run: bool, json_output: bool) -> int:
    chosen = default_prefix(target.forge) if prefix is None else check_text(prefix, "--prefix", example="rc-")
    token = token_from_env(target.token_env)
    # Human lines go to stderr with --json, so that stdout is the one JSON line.
    out = plain_console(stderr=json_output, width=None if sys.stdout.isatty() else 160)
    deleted: list[str] = []
    kept: list[dict[str, str]] = []
    record = AuditRecord(target.forge, target.api_url, target.scope, dry_run)
    state = OfflineSince(state_file_path(), target.api_url, target.scope)
    with AuditLog(audit_log_path(), record) as audit, connect(target, token) as session:
        runners = session.list_runners()
        now = time.time()
        seen = state.observe(runners, now)
        state.save()  # the sightings count even if a deletion below fails
        decisions = decide(runners, prefix=chosen, offline_for=offline_for, now=now, first_seen_offline=seen)
        try:
            for decision in decisions:
                _act(decision, session=session, state=state, audit=audit, out=out, dry_run=dry_run)
                if decision.delete:
                    deleted.append(decision.runner.name)
                else:
                    kept.append({"name": decision.runner.name, "reason": decision.reason})
        finally:
            state.save()
    verb = "would delete" if dry_run else "deleted"
    out.print(
        f"{verb} {len(deleted)} of {len(decisions)} runners on {target.describe()} (prefix {chosen!r}); "
        f"kept {len(kept)}{'; dry run: nothing was deleted' if dry_run else ''}; audit log: {audit_log_path()}",
        soft_wrap=True,
    )
    if json_output:
        print(json.dumps({"deleted": deleted, "kept": kept}))
    return 0


def _act(
    decision: Decision, *, session: ForgeSession, state: OfflineSince, audit: AuditLog, out: Console, dry_run: bool
) -> None:
    runner, reason = decision.runner, decision.reason
    if not decision.delete:
        action = "kept"
    elif dry_run:
        action = "would-delete"
    else:
        try:
            session.delete_runner(runner.id)
        except NotFoundError:
            reason = f"{reason}; it was already gone (HTTP 404)"
        state.forget(runner.id)
        action = "deleted"
    audit.write(action, runner.id, runner.name, reason)
    out.print(f"{action.replace('-', ' ')} {_shown(runner.name)} (id {runner.id}): {reason}", soft_wrap=True)
