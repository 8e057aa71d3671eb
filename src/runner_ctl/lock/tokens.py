"""API tokens: ``name:secret`` lines (``name:secret:admin`` for admins) in a private file."""

import hmac
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from runner_ctl.errors import ConfigError

__all__ = [
    "MIN_SECRET_LENGTH",
    "Token",
    "TokenTable",
    "check_client_secret",
    "load_tokens",
    "read_client_secret",
    "secret_problem",
]

MIN_SECRET_LENGTH = 16
# Far more than any token file needs; a bound so a wrong path (a log, an image) is not slurped.
MAX_FILE_BYTES = 1024 * 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_PRINTABLE = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space


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


def secret_problem(secret: str) -> str | None:
    """What makes ``secret`` unusable as a token (it goes into an HTTP header), or None.

    Says which kind of character is wrong, never which character or where: the message
    must not help anyone reconstruct a secret that was almost right.
    """
    if _PRINTABLE.fullmatch(secret):
        return None
    if not secret:
        return "is empty"
    if any(ch.isspace() for ch in secret):
        return "contains whitespace or a line break"
    if not secret.isascii():
        return "contains a non-ASCII character"
    return "contains a control character"


def check_client_secret(secret: str) -> str:
    """``secret`` if it can be sent as a bearer token, else a ConfigError that never shows it."""
    problem = secret_problem(secret)
    if problem is not None:
        raise ConfigError(
            f"the deploy lock token {problem}; a token is printable ASCII without whitespace: check "
            "RUNNER_CTL_LOCK_TOKEN (a trailing newline?) or the file given to --token-file"
        )
    return secret


def _shown(path: Path) -> str:
    text = str(path)
    return text if text.isprintable() else repr(text)


def _read_regular(path: Path, what: str, hint: str) -> tuple[str, os.stat_result]:
    """The text of a regular file, and its status. Anything else is refused before a read:
    opening a FIFO for reading would block until a writer came."""
    where = f"{what} {_shown(path)}"
    not_regular = ConfigError(f"{where} is not a regular file; {hint}")
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise not_regular  # a socket, say, which open() would refuse with a puzzling error
        # O_NONBLOCK: should the path turn into a FIFO after the stat, opening it still returns.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise ConfigError(f"{where}: {error.strerror}; {hint}") from None
    except ValueError:  # a NUL in the path
        raise ConfigError(f"{where}: the path is invalid; {hint}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise not_regular
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"{where}: {error.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{where} is larger than {MAX_FILE_BYTES // 1024} KiB; {hint}")
    try:
        return data.decode("utf-8"), info
    except UnicodeDecodeError as error:
        raise ConfigError(f"{where} is not UTF-8 text (byte {error.start}); {hint}") from None


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of the lines that are not blank or comments. Only "\n" ends a line:
    any other control character is part of a line, and so refused by its checks."""
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield number, line


def load_tokens(path: Path) -> TokenTable:
    """Parse the service's token file, refusing one that others could write.

    Errors name the line, never a field of it: with name and secret swapped, the "name"
    is the secret.
    """
    text, info = _read_regular(path, "token file", "create it with one name:secret line per client")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"token file {_shown(path)} is group/world writable (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"refusing to start: chmod 600 {_shown(path)}"
        )
    tokens: list[Token] = []
    first_line: dict[tuple[str, str], int] = {}
    for number, line in _lines(text):
        where = f"token file {_shown(path)} line {number}"
        expected = "expected name:secret or name:secret:admin"
        problem = secret_problem(line)
        if problem is not None:
            raise ConfigError(f"{where} {problem}; {expected}")
        parts = line.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "admin"):
            raise ConfigError(f"{where}: {expected}")
        name, secret = parts[0], parts[1]
        if not _NAME.match(name):
            raise ConfigError(
                f"{where}: the name is invalid; expected 1-64 letters, digits, '.', '_', '@' or '-' "
                "before the first ':' (name first, then the secret)"
            )
        if len(secret) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"{where}: the secret is shorter than {MIN_SECRET_LENGTH} characters (name first, then the "
                "secret); generate one with: openssl rand -hex 32"
            )
        for field, value in (("name", name), ("secret", secret)):
            if (field, value) in first_line:
                raise ConfigError(f"{where}: the {field} is also on line {first_line[field, value]}; use each once")
            first_line[field, value] = number
        tokens.append(Token(name, secret, len(parts) == 3))
    if not tokens:
        raise ConfigError(f"token file {_shown(path)} holds no tokens; add a line name:secret")
    return TokenTable(tokens)


def read_client_secret(path: Path) -> str:
    """A client's secret from a file: the secret alone, or a ``name:secret[:admin]`` line.
    The file's line break is not part of it; any other whitespace is refused."""
    hint = "put the token's secret in it"
    text, _ = _read_regular(path, "--token-file", hint)
    for number, line in _lines(text):
        where = f"--token-file {_shown(path)} line {number}"
        parts = line.split(":")
        if len(parts) == 1:
            secret = line
        elif len(parts) == 2 or (len(parts) == 3 and parts[2] == "admin"):
            secret = parts[1]
        else:
            raise ConfigError(f"{where}: expected the secret alone, or name:secret or name:secret:admin")
        problem = secret_problem(secret)
        if problem is not None:
            raise ConfigError(f"{where}: the secret {problem}; a token is printable ASCII without whitespace")
        return secret
    raise ConfigError(f"--token-file {_shown(path)} is empty; {hint}")
