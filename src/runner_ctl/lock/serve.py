"""``runner-ctl lock serve``: check every input, bind, then run the service under uvicorn."""

import errno
import gc
import socket
import sqlite3
import sys
from pathlib import Path

import uvicorn

from runner_ctl.errors import ConfigError
from runner_ctl.hostport import split_host_port
from runner_ctl.lock.service import create_app
from runner_ctl.lock.store import LockStore
from runner_ctl.lock.tokens import load_tokens

__all__ = ["DEFAULT_LISTEN", "DEFAULT_PORT", "parse_listen", "serve"]

DEFAULT_PORT = 7465
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"


def parse_listen(listen: str) -> tuple[str, int]:
    """HOST:PORT, HOST an IP address ([...] around IPv6) or an ASCII host name."""
    invalid = ConfigError(
        f"--listen {listen!a} is invalid; expected HOST:PORT, HOST an IP address ([::1] for IPv6) or a host "
        f"name, PORT from 1 to 65535 (e.g. {DEFAULT_LISTEN})"
    )
    try:
        return split_host_port(listen)
    except ValueError:
        raise invalid from None


def open_store(db: Path) -> LockStore:
    try:
        return LockStore(db)
    except (sqlite3.Error, UnicodeError, ValueError) as error:  # ValueError: a NUL in the path
        raise ConfigError(f"cannot open the lock database {db} ({error}); choose a writable --db path") from None


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets created with it, and
    # without TCP_NODELAY every small response waits ~40 ms on Nagle plus delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"--listen {host}:{port}: the port is in use; stop the other service or pick another port"
            ) from None
        raise ConfigError(f"--listen {host}:{port}: cannot bind ({error.strerror})") from None
    sock.listen(1024)
    return sock


def serve(*, db: Path, listen: str, token_file: Path, docs: bool = False) -> None:
    """Validate everything before binding; nothing is written unless all inputs are good.

    ``docs`` also serves the interactive API pages /docs and /redoc."""
    tokens = load_tokens(token_file)
    host, port = parse_listen(listen)
    sock = bind(host, port)
    store = open_store(db)
    config = uvicorn.Config(
        create_app(store, tokens, docs=docs),
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    # Everything allocated so far lives as long as the process: keep the collector off it,
    # so collections stay short while 200 waiters hold connections.
    gc.freeze()
    print(f"runner-ctl lock service listening on http://{host}:{port} (database {db})", file=sys.stderr, flush=True)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        store.close()
