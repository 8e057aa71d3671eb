"""Secret references: how group data names a secret without holding it.

Resolved on the operator's machine, never on the host, and never logged:

+ ``env:NAME``: the environment variable NAME
+ ``file:PATH``: the contents of PATH (``~`` expanded), stripped
+ ``cmd:COMMAND``: the stdout of COMMAND run without a shell (e.g. ``cmd:pass show ci/lock``)
+ ``generated:NAME``: a random secret created on first use and kept in
  ``$RUNNER_CTL_CONFIG_DIR/secrets/NAME`` (default ``~/.config/runner-ctl``), mode 0600

A rehearsal needs no production secret: given a stand-in directory, every reference
resolves to a random stand-in kept there (``rehearsal-<what>``), whatever its kind.
"""

import hashlib
import os
import re
import secrets
import shlex
from collections.abc import Iterable
from pathlib import Path

from runner_ctl._proc import run_unchecked
from runner_ctl.errors import ConfigError, ToolMissingError, ToolTimeoutError

__all__ = [
    "MIN_LOCK_SECRET_LENGTH",
    "check_lock_secret",
    "config_dir",
    "is_reference",
    "resolve_lock_secrets",
    "resolve_secret",
]

KINDS = ("env", "file", "cmd", "generated")
# The lock service's own minimum (runner_ctl.lock.tokens.MIN_SECRET_LENGTH), checked here
# too so that a short secret stops the deploy before the host has a token file it refuses.
MIN_LOCK_SECRET_LENGTH = 16
# Printable ASCII without space or ':' (the token file's field separator).
_LOCK_SECRET = re.compile(r"[\x21-\x39\x3b-\x7e]+")


def config_dir() -> Path:
    override = os.environ.get("RUNNER_CTL_CONFIG_DIR")
    if override:
        return Path(override).expanduser().absolute()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return ((Path(xdg).expanduser() if xdg else Path.home() / ".config") / "runner-ctl").absolute()


def is_reference(value: str) -> bool:
    kind, sep, rest = value.partition(":")
    return bool(sep) and kind in KINDS and bool(rest.strip())


def resolve_secret(reference: str, *, what: str, standins: Path | None = None) -> str:
    """The secret a reference names; a one-line ConfigError (without the secret) otherwise.

    With ``standins`` (a directory), the reference is checked but not followed: the secret
    is a stand-in generated in that directory, stable for the same ``what``.
    """
    kind, _, rest = reference.partition(":")
    if not is_reference(reference):
        # Never echo the value: a plain secret pasted here must not end up in a log.
        raise ConfigError(
            f"{what}: the value is not a secret reference; expected env:NAME, file:PATH, cmd:COMMAND or generated:NAME"
        )
    if standins is not None:
        return _generated(_standin_name(what), directory=standins)
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
            argv = shlex.split(rest)
        except ValueError as error:
            # The command line itself may hold a secret: name the problem, not the text.
            raise ConfigError(
                f"{what}: cmd: reference cannot be split into words ({error}); check its quotes"
            ) from None
        if not argv:
            raise ConfigError(f"{what}: cmd: reference names no command")
        try:
            done = run_unchecked(argv, what=f"{what}: command {argv[0]!r}", timeout=60)
        except (ToolMissingError, ToolTimeoutError) as error:
            raise ConfigError(error.message) from None
        if done.returncode != 0:
            raise ConfigError(f"{what}: command {argv[0]!r} exited {done.returncode}")
        value = done.stdout.strip()
    else:
        value = _generated(rest)
    if not value:
        raise ConfigError(f"{what}: {kind}:{rest if kind != 'cmd' else '...'} gave an empty secret")
    return value


def check_lock_secret(secret: str, *, what: str) -> None:
    """A one-line ConfigError naming ``what`` (never the secret) unless the lock service accepts it."""
    if len(secret) < MIN_LOCK_SECRET_LENGTH:
        raise ConfigError(
            f"{what}: the secret is shorter than {MIN_LOCK_SECRET_LENGTH} characters; "
            "use a longer one (e.g. openssl rand -hex 32)"
        )
    if not _LOCK_SECRET.fullmatch(secret):
        raise ConfigError(
            f"{what}: the secret holds whitespace, ':', a control or a non-ASCII character; "
            "expected printable ASCII only (e.g. openssl rand -hex 32)"
        )


def resolve_lock_secrets(tokens: Iterable[tuple[str, str]], *, standins: Path | None = None) -> dict[str, str]:
    """Each lock token's secret by name, from (name, reference) pairs, checked as the service checks it."""
    resolved: dict[str, str] = {}
    for name, reference in tokens:
        what = f"deploy_lock_tokens {name}"
        secret = resolve_secret(reference, what=what, standins=standins)
        check_lock_secret(secret, what=what)
        twin = next((other for other, known in resolved.items() if known == secret), None)
        if twin is not None:
            raise ConfigError(f"{what}: the secret is the same as token {twin}'s; every token needs its own")
        resolved[name] = secret
    return resolved


def _standin_name(what: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", what).strip("-")[:60]
    # The digest keeps two names that slug alike (a.b, a@b) apart.
    digest = hashlib.sha256(what.encode()).hexdigest()[:8]
    return f"rehearsal-{slug}-{digest}"


def _generated(name: str, *, directory: Path | None = None) -> str:
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"generated:{name}: expected a name of letters, digits, '-' or '_'")
    path = (directory if directory is not None else config_dir() / "secrets") / name
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
