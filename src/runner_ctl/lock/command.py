"""``runner-ctl lock``: serve the deploy lock service, see its state, break a stuck lock."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from runner_ctl.clikit import check_text, guard, plain_console
from runner_ctl.lock.access import JsonFlag, LockUrl, TokenFile, env_name, lock_client
from runner_ctl.lock.serve import DEFAULT_LISTEN, serve

__all__ = ["lock_app"]

lock_app = typer.Typer(
    help="The deploy lock service: serve it, see its state, break a stuck lock.", no_args_is_help=True
)


@lock_app.command("serve")
def lock_serve(
    db: Annotated[Path, typer.Option(help="SQLite database file (created if missing).")],
    token_file: Annotated[Path, typer.Option(help="name:secret[:admin] lines; must not be group/world writable.")],
    listen: Annotated[str, typer.Option(help="HOST:PORT to listen on.")] = DEFAULT_LISTEN,
    docs: Annotated[bool, typer.Option("--docs", help="Also serve the API pages /docs and /redoc.")] = False,
) -> None:
    """Run the deploy lock service (HTTP JSON API under /v1, /healthz, /metrics, /openapi.json)."""
    guard(lambda: serve(db=db, listen=listen, token_file=token_file, docs=docs))


@lock_app.command("status")
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


@lock_app.command("release")
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
