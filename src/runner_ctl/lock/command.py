"""``runner-ctl lock``: serve the deploy lock service, see its state, break a stuck lock, move it."""

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from runner_ctl.clikit import INTERRUPTED, check_text, exit_codes_epilog, guard, plain_console
from runner_ctl.lock.access import JsonFlag, LockUrl, TokenFile, env_name, lock_client
from runner_ctl.lock.serve import DEFAULT_LISTEN, serve
from runner_ctl.lock.store import DEFAULT_HOST_DB
from runner_ctl.lock.transfer import export_text, import_export, write_export

__all__ = ["lock_app"]

lock_app = typer.Typer(
    help="The deploy lock service: serve it, see its state, break a stuck lock, move its database.",
    no_args_is_help=True,
)
DbPath = Annotated[
    Path,
    typer.Option(help="The lock service's SQLite database (default: where the deploy_lock layer keeps it on a host)."),
]


def _client_epilog(done: str) -> str:
    """The exit codes of a command that calls the lock service."""
    return exit_codes_epilog(
        ("0", done),
        ("2", "bad flags, a token the service rejects (401) or a call it refuses (403, 404, 409)"),
        ("6", "the lock service cannot be reached"),
        ("1", "any other failure"),
        ("130", INTERRUPTED),
    )


@lock_app.command(
    "serve",
    epilog=exit_codes_epilog(
        ("0", "stopped by SIGINT or SIGTERM after a clean shutdown"),
        ("2", "bad flags, an unusable --db or --token-file, or --listen cannot bind"),
        ("1", "any other failure"),
    ),
)
def lock_serve(
    db: Annotated[Path, typer.Option(help="SQLite database file (created if missing).")],
    token_file: Annotated[Path, typer.Option(help="name:secret[:admin] lines; must not be group/world writable.")],
    listen: Annotated[str, typer.Option(help="HOST:PORT to listen on.")] = DEFAULT_LISTEN,
    docs: Annotated[bool, typer.Option("--docs", help="Also serve the API pages /docs and /redoc.")] = False,
) -> None:
    """Run the deploy lock service (HTTP JSON API under /v1, /healthz, /metrics, /openapi.json)."""
    guard(lambda: serve(db=db, listen=listen, token_file=token_file, docs=docs))


@lock_app.command(
    "status",
    epilog=_client_epilog("the state was printed"),
)
def lock_status(
    env: Annotated[str | None, typer.Option(help="Only this environment.")] = None,
    as_json: JsonFlag = False,
    lock_url: LockUrl = None,
    token_file: TokenFile = None,
) -> None:
    """Holder, queue and last deployed commit per environment."""
    if env is not None:
        guard(lambda: env_name(env))

    def fetch() -> Any:
        with lock_client(lock_url, token_file) as client:
            return client.status(env)

    found = guard(fetch)
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


@lock_app.command(
    "release",
    epilog=_client_epilog("released, or nothing was held"),
)
def lock_release(
    env: Annotated[str, typer.Option(help="Environment whose lock to break.")],
    reason: Annotated[str, typer.Option(help="Why, for the audit trail.")],
    lock_url: LockUrl = None,
    token_file: TokenFile = None,
) -> None:
    """Break a stuck lock (admin token only; audited). The next queued deploy proceeds."""
    guard(lambda: (env_name(env), check_text(reason, "--reason", example="'holder crashed'")))

    def act() -> Any:
        with lock_client(lock_url, token_file) as client:
            return client.release(env, reason)

    released = guard(act)["released"]
    print(f"{env}: released request {released['id']}" if released else f"{env}: nothing was held")


@lock_app.command(
    "export",
    epilog=exit_codes_epilog(
        ("0", "exported"),
        ("2", "no readable database at --db, or --output cannot be written (or is a terminal)"),
        ("1", "any other failure"),
        ("130", INTERRUPTED),
    ),
)
def lock_export(
    db: DbPath = DEFAULT_HOST_DB,
    output: Annotated[
        str, typer.Option(help="File to write (mode 0600), or - for standard output (never a terminal).")
    ] = "-",
) -> None:
    """Write the whole lock database as JSON: queues, audit trail, last deployed commits, fencing counters.

    It holds the requests' secret hashes: keep it private. Stop the service first when moving it.
    """
    text = guard(lambda: export_text(db))
    guard(lambda: write_export(text, output))
    if output != "-":
        print(f"exported {db} to {output}", file=sys.stderr)


@lock_app.command(
    "import",
    epilog=exit_codes_epilog(
        ("0", "imported"),
        ("2", "FILE is not a valid export, or the database is not empty and --force was not given (nothing changed)"),
        ("1", "any other failure (nothing changed)"),
        ("130", INTERRUPTED),
    ),
)
def lock_import(
    file: Annotated[str, typer.Argument(help="An export of `runner-ctl lock export`, or - for standard input.")],
    db: DbPath = DEFAULT_HOST_DB,
    force: Annotated[bool, typer.Option("--force", help="Replace the state of a database that is not empty.")] = False,
) -> None:
    """Load an export into a lock database (stop its service first); refused into a non-empty one unless --force."""
    counts = guard(lambda: import_export(db, file, force=force))
    summary = ", ".join(f"{count} {table}" for table, count in counts.items())
    print(f"imported into {db}: {summary}", file=sys.stderr)
