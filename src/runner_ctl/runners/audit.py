"""The audit log of ``runners prune``: one JSON line per runner per run, append-only, mode 0600.

Each line says what was done to one runner (``deleted``, ``would-delete`` in a dry run, or
``kept``) and why, with the forge, API URL, scope, runner id and name and the time. A line is
written as soon as its action is done, so a run that fails half-way still records the
deletions it made. The file is only ever appended to (O_APPEND), never rewritten.
"""

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from runner_ctl.errors import ConfigError

__all__ = ["AuditLog", "AuditRecord"]


@dataclass(frozen=True)
class AuditRecord:
    forge: str
    api_url: str
    scope: str
    dry_run: bool


class AuditLog:
    """``path`` opened for appending; a context manager."""

    def __init__(self, path: Path, record: AuditRecord) -> None:
        self.path = path
        self.record = record
        self._out: IO[bytes] | None = None

    def __enter__(self) -> "AuditLog":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NOCTTY, 0o600)
        except OSError as error:
            raise ConfigError(self._unwritable(error)) from None
        try:
            os.fchmod(fd, 0o600)  # a log made earlier with a looser mode (or umask) is tightened
        except OSError as error:
            os.close(fd)
            raise ConfigError(self._unwritable(error)) from None
        self._out = os.fdopen(fd, "ab", buffering=0)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def write(self, action: str, runner_id: int, name: str, reason: str, now: float | None = None) -> None:
        assert self._out is not None, "AuditLog is used outside its with block"
        moment = time.time() if now is None else now
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment)),
            "command": "runners prune",
            "forge": self.record.forge,
            "api_url": self.record.api_url,
            "scope": self.record.scope,
            "dry_run": self.record.dry_run,
            "action": action,
            "runner_id": runner_id,
            "name": name,
            "reason": reason,
        }
        try:
            # One write per line: with O_APPEND, lines of concurrent runs never interleave.
            self._out.write(json.dumps(line, sort_keys=True).encode() + b"\n")
        except OSError as error:
            raise ConfigError(self._unwritable(error)) from None

    def _unwritable(self, error: OSError) -> str:
        return (
            f"cannot append to the audit log {self.path}: {error.strerror or error}; "
            "set RUNNER_CTL_STATE_DIR to a writable directory"
        )
