"""Token files, the service's and a client's: every bad one refused in one line that never
shows a secret, and nothing but a regular file ever opened for reading."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner_ctl.errors import ConfigError
from runner_ctl.lock.tokens import load_tokens, read_client_secret

SECRET = "0123456789abcdef0123456789abcdef"  # noqa: S105 - a test secret
ODD_SECRET = "Zq+/=9xY!kLm%2Rt~vB7"  # noqa: S105 - not a valid name, so a swapped line fails on the name


def _file(tmp_path: Path, content: bytes, name: str = "tokens") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    path.chmod(0o600)
    return path


def _refused(load: object, path: Path, *fragments: str) -> str:
    assert callable(load)
    with pytest.raises(ConfigError) as refused:
        load(path)
    message = str(refused.value)
    assert "\n" not in message
    for secret in (SECRET, ODD_SECRET, SECRET[:16]):
        assert secret not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (f"{SECRET}:ci\n".encode(), ("line 1", "shorter than 16", "name first")),
        (f"{ODD_SECRET}:ci\n".encode(), ("line 1", "the name is invalid", "name first")),
        (f"{ODD_SECRET}:ci:admin\n".encode(), ("line 1", "the name is invalid")),
        (f"# tokens\n\nci:{SECRET}\x01\n".encode(), ("line 3", "control character")),
        (f"ci:{SECRET}\x0bops:{ODD_SECRET}\n".encode(), ("line 1", "whitespace")),
        (f"ci:{SECRET[:8]} {SECRET[8:]}\n".encode(), ("line 1", "whitespace")),
        (f"ci:{SECRET}\u00e9\n".encode(), ("line 1", "non-ASCII")),
        (b"ci:" + SECRET.encode() + b"\xff\n", ("is not UTF-8 text (byte 35)",)),
        (f"ci:{SECRET}\nci:{SECRET[::-1]}\n".encode(), ("line 2", "the name is also on line 1")),
        (f"ci:{SECRET}\nops:{SECRET}:admin\n".encode(), ("line 2", "the secret is also on line 1")),
        (f"ci:{SECRET}:root\n".encode(), ("line 1", "expected name:secret or name:secret:admin")),
        (b"# nothing but a comment\n", ("holds no tokens",)),
    ],
)
def test_the_service_refuses_a_bad_token_file_without_showing_a_secret(
    tmp_path: Path, content: bytes, fragments: tuple[str, ...]
) -> None:
    _refused(load_tokens, _file(tmp_path, content), *fragments)


def test_the_service_reads_a_good_token_file(tmp_path: Path) -> None:
    tokens = load_tokens(
        _file(tmp_path, f"# CRLF, as an editor may save it\r\nci:{SECRET}\r\nops:{ODD_SECRET}:admin\r\n".encode())
    )
    assert len(tokens) == 2
    ops = tokens.authenticate(ODD_SECRET)
    assert ops is not None and ops.name == "ops" and ops.admin


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (f"{SECRET[:8]} {SECRET[8:]}\n".encode(), ("line 1", "whitespace")),
        (f"ci:{SECRET}\x00\n".encode(), ("line 1", "control character")),
        (f"ci:{SECRET}:admin:extra\n".encode(), ("line 1", "expected the secret alone")),
        (b"\xfe" + SECRET.encode(), ("is not UTF-8 text (byte 0)",)),
        (b"\n# only comments\n", ("is empty",)),
    ],
)
def test_a_client_refuses_a_bad_token_file_without_showing_a_secret(
    tmp_path: Path, content: bytes, fragments: tuple[str, ...]
) -> None:
    _refused(read_client_secret, _file(tmp_path, content), "--token-file", *fragments)


@pytest.mark.parametrize("content", [f"{SECRET}\n", f"  {SECRET}  \n", f"ci:{SECRET}\n", f"ops:{SECRET}:admin\r\n"])
def test_a_client_reads_its_secret_without_the_line_break(tmp_path: Path, content: str) -> None:
    assert read_client_secret(_file(tmp_path, content.encode())) == SECRET


@pytest.mark.parametrize("kind", ["directory", "device", "socket"])
def test_a_path_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "not-a-file"
    if kind == "directory":
        path.mkdir()
    elif kind == "device":
        path = Path("/dev/zero")  # a read would never end
    else:
        import socket

        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(path))
        listener.close()
    for load in (load_tokens, read_client_secret):
        _refused(load, path, "is not a regular file")


def _runner_ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner_ctl", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_a_fifo_as_token_file_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    """Opening a FIFO for reading blocks until a writer comes: a hang, were it opened plainly.
    Each command runs in its own process, bounded by the subprocess timeout."""
    fifo = tmp_path / "tokens.fifo"
    os.mkfifo(fifo, 0o600)
    serve = _runner_ctl(
        "lock", "serve", "--db", str(tmp_path / "lock.db"), "--token-file", str(fifo), "--listen", "127.0.0.1:1"
    )
    status = _runner_ctl("lock", "status", "--token-file", str(fifo), "--lock-url", "http://127.0.0.1:1")
    for done in (serve, status):
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert "is not a regular file" in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "lock.db").exists()
