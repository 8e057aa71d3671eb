"""Secret references: how group data names a secret without holding it.

Resolved on the operator's machine, never on the host, and never logged:

+ ``env:NAME``: the environment variable NAME
+ ``file:PATH``: the contents of PATH (``~`` expanded), stripped
+ ``cmd:COMMAND``: the stdout of COMMAND run without a shell (e.g. ``cmd:pass show ci/lock``)
+ ``generated:NAME``: a random secret created on first use and kept in
  ``$RUNNER_CTL_CONFIG_DIR/secrets/NAME`` (default ``~/.config/runner-ctl``), mode 0600
"""

import os
import secrets
import shlex
import subprocess
from pathlib import Path

from runner_ctl.errors import ConfigError

__all__ = ["config_dir", "is_reference", "resolve_secret"]

KINDS = ("env", "file", "cmd", "generated")


def config_dir() -> Path:
    override = os.environ.get("RUNNER_CTL_CONFIG_DIR")
    if override:
        return Path(override).expanduser().absolute()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return ((Path(xdg).expanduser() if xdg else Path.home() / ".config") / "runner-ctl").absolute()


def is_reference(value: str) -> bool:
    kind, sep, rest = value.partition(":")
    return bool(sep) and kind in KINDS and bool(rest.strip())


def resolve_secret(reference: str, *, what: str) -> str:
    """The secret a reference names; a one-line ConfigError (without the secret) otherwise."""
    kind, _, rest = reference.partition(":")
    if not is_reference(reference):
        # Never echo the value: a plain secret pasted here must not end up in a log.
        raise ConfigError(
            f"{what}: the value is not a secret reference; expected env:NAME, file:PATH, cmd:COMMAND or generated:NAME"
        )
    if kind == "env":
        value = os.environ.get(rest, "")
        if not value:
            raise ConfigError(f"{what}: environment variable {rest} is not set")
    elif kind == "file":
        try:
            value = Path(rest).expanduser().read_text().strip()
        except OSError as error:
            raise ConfigError(f"{what}: cannot read {rest} ({error.strerror})") from None
    elif kind == "cmd":
        try:
            done = subprocess.run(shlex.split(rest), capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise ConfigError(f"{what}: command {shlex.split(rest)[0]!r} failed ({error})") from None
        if done.returncode != 0:
            raise ConfigError(f"{what}: command {shlex.split(rest)[0]!r} exited {done.returncode}")
        value = done.stdout.strip()
    else:
        value = _generated(rest)
    if not value:
        raise ConfigError(f"{what}: {kind}:{rest if kind != 'cmd' else '...'} gave an empty secret")
    return value


def _generated(name: str) -> str:
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"generated:{name}: expected a name of letters, digits, '-' or '_'")
    path = config_dir() / "secrets" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # O_EXCL: two concurrent deploys never end up with different secrets.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
    return path.read_text().strip()
