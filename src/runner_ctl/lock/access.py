"""How a command reaches the lock service: its URL, the client's secret, an SSH tunnel, ``--env``.

Shared by the ``deploy`` and ``lock`` command groups; every flag is checked before any is used.
On a host of the fleet, with no flag and no variable, the files the deploy lock layer writes
are the defaults: ``/etc/runner-ctl/lock.json`` (the URL and the lock host's name) and the CI
token file. A service that cannot be reached then is reported with the lock host's name.
"""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import httpx
import typer

from runner_ctl.clikit import check_http_url, check_text
from runner_ctl.errors import ConfigError, UsageError
from runner_ctl.lock.client import LockClient, ServiceUnreachableError
from runner_ctl.lock.fleet import CLIENT_TOKEN_FILE, LOCK_CONFIG_FILE, LockConfig, read_lock_config
from runner_ctl.lock.serve import DEFAULT_LISTEN, DEFAULT_PORT
from runner_ctl.lock.states import validate_env
from runner_ctl.lock.tokens import read_client_secret
from runner_ctl.lock.tunnel import ssh_tunnel

__all__ = ["JsonFlag", "LockUrl", "TokenFile", "env_name", "lock_client"]


def _lock_access(
    lock_url: str | None, token_file: Path | None, via_ssh: str | None = None
) -> tuple[str, str, LockConfig | None]:
    """The lock service's URL, the client's secret and the host's lock.json (when used), every flag checked first."""
    # Only with no way given to reach the service: the flags and variables always win.
    config = None
    # An empty variable counts as unset: CI systems export unset variables as empty.
    if lock_url is not None:
        url = check_http_url(lock_url, "--lock-url", example=f"http://{DEFAULT_LISTEN}")
    elif os.environ.get("RUNNER_CTL_LOCK_URL"):
        url = check_http_url(
            os.environ["RUNNER_CTL_LOCK_URL"], "RUNNER_CTL_LOCK_URL", example=f"http://{DEFAULT_LISTEN}"
        )
    elif via_ssh is None and (config := read_lock_config(LOCK_CONFIG_FILE)) is not None:
        url = check_http_url(config.url, f"the url in {LOCK_CONFIG_FILE}", example=f"http://{DEFAULT_LISTEN}")
    else:
        url = f"http://{DEFAULT_LISTEN}"
    if via_ssh is not None:
        check_text(via_ssh, "--via-ssh", example="runner-1.example.com")
        if via_ssh.startswith("-") or any(char.isspace() for char in via_ssh):
            raise UsageError(
                f"--via-ssh {via_ssh!r} is not an SSH host; expected [USER@]HOST, e.g. runner-1.example.com"
            )
    if token_file:
        secret = read_client_secret(token_file)
    elif os.environ.get("RUNNER_CTL_LOCK_TOKEN"):
        secret = os.environ["RUNNER_CTL_LOCK_TOKEN"]
    elif CLIENT_TOKEN_FILE.exists():
        secret = read_client_secret(CLIENT_TOKEN_FILE)
    else:
        secret = ""
    if not secret:
        raise ConfigError("no deploy lock token: set RUNNER_CTL_LOCK_TOKEN or pass --token-file PATH")
    return url, secret, config


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
def lock_client(lock_url: str | None, token_file: Path | None, via_ssh: str | None = None) -> Iterator[LockClient]:
    url, secret, config = _lock_access(lock_url, token_file, via_ssh)
    with contextlib.ExitStack() as stack:
        if via_ssh:
            remote = httpx.URL(url)
            port = stack.enter_context(ssh_tunnel(via_ssh, remote.host, remote.port or DEFAULT_PORT))
            url = f"http://127.0.0.1:{port}"
        client = LockClient(url, secret, retry_seconds=_retry_seconds())
        stack.callback(client.close)
        try:
            yield client
        except ServiceUnreachableError as error:
            if config is None:
                raise
            raise ServiceUnreachableError(_unreachable(config, error)) from None


def _unreachable(config: LockConfig, error: ServiceUnreachableError) -> str:
    """The client's message, with the lock host named and the way to look at it (the flags were not used)."""
    reason = error.message.partition(" is unreachable ")[2].partition("; check")[0] or "no answer"
    return (
        f"the deploy lock service on lock host {config.lock_host} is unreachable at {config.url} {reason}; "
        f"check runner-ctl-lockd on {config.lock_host} (and runner-ctl-lock-forward on this host if it is another)"
    )


def env_name(env: str) -> str:
    """``--env`` checked on this side: its name goes into the request's URL path."""
    check_text(env, "--env", example="production")
    try:
        return validate_env(env)
    except ValueError as error:
        raise UsageError(f"--env: {error}") from None


LockUrl = Annotated[str | None, typer.Option(help="Lock service URL. [env: RUNNER_CTL_LOCK_URL]")]
TokenFile = Annotated[Path | None, typer.Option(help="File holding the token. [default: $RUNNER_CTL_LOCK_TOKEN]")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]
