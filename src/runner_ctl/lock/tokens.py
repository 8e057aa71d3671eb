"""API tokens: ``name:secret`` lines (``name:secret:admin`` for admins) in a private file."""

import hmac
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from runner_ctl.errors import ConfigError

__all__ = ["MIN_SECRET_LENGTH", "Token", "TokenTable", "load_tokens", "read_client_secret"]

MIN_SECRET_LENGTH = 16
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


@dataclass(frozen=True)
class Token:
    name: str  # the actor the audit trail records
    secret: str
    admin: bool


class TokenTable:
    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens

    def __len__(self) -> int:
        return len(self._tokens)

    def authenticate(self, secret: str) -> Token | None:
        """The token whose secret this is. Every entry is compared, in constant time each."""
        found = None
        offered = secret.encode()
        for token in self._tokens:
            if hmac.compare_digest(offered, token.secret.encode()):
                found = token
        return found


def _check_private(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError as error:
        raise ConfigError(
            f"token file {path}: {error.strerror}; create it with one name:secret line per client"
        ) from None
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"token file {path} is group/world writable (mode {stat.S_IMODE(mode):04o}); "
            f"refusing to start: chmod 600 {path}"
        )


def load_tokens(path: Path) -> TokenTable:
    """Parse the service's token file, refusing one that others could write."""
    _check_private(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"token file {path}: {error.strerror}") from None
    tokens: list[Token] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        where = f"token file {path} line {number}"
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "admin"):
            raise ConfigError(f"{where}: expected name:secret or name:secret:admin")
        name, secret = parts[0], parts[1]
        if not _NAME.match(name):
            raise ConfigError(f"{where}: name {name!r} is invalid; expected letters, digits, '.', '_', '@' or '-'")
        if len(secret) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"{where}: the secret of {name!r} is shorter than {MIN_SECRET_LENGTH} characters; "
                "generate one with: openssl rand -hex 32"
            )
        if any(t.name == name for t in tokens) or any(t.secret == secret for t in tokens):
            raise ConfigError(f"{where}: name or secret of {name!r} is used twice")
        tokens.append(Token(name, secret, len(parts) == 3))
    if not tokens:
        raise ConfigError(f"token file {path} holds no tokens; add a line name:secret")
    return TokenTable(tokens)


def read_client_secret(path: Path) -> str:
    """A client's secret from a file: the secret alone, or a ``name:secret[:admin]`` line."""
    try:
        text = path.read_text().strip()
    except OSError as error:
        raise ConfigError(f"--token-file {path}: {error.strerror}") from None
    line = next((ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")), "")
    parts = line.split(":")
    secret = parts[1] if len(parts) in (2, 3) else line
    if not secret:
        raise ConfigError(f"--token-file {path} is empty; put the token's secret in it")
    return secret
