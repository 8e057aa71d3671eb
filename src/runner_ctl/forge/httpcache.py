"""The on-disk cache that makes a second report nearly free.

Two kinds of entries, each one small JSON file written atomically (several fetch threads
write at once, and a killed run must not leave a half-written entry):

- ``objects/``: answers that can never change, such as the jobs of a completed run
  attempt, keyed by the caller; served without any request (``api.cache_hits``).
- ``etags/``: list pages by URL with their ETag and the (trimmed) body, so the next
  request is conditional and a 304 — which does not count against the rate limit — is
  answered from disk (``api.not_modified``).

A corrupt or unreadable entry is a miss, never an error.
"""

import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner_ctl.errors import ConfigError

__all__ = ["ApiCounters", "HttpCache"]


@dataclass
class ApiCounters:
    """What a report paid: requests that count against the rate limit, and what it saved."""

    calls: int = 0
    cache_hits: int = 0
    not_modified: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, *, calls: int = 0, cache_hits: int = 0, not_modified: int = 0) -> None:
        with self._lock:
            self.calls += calls
            self.cache_hits += cache_hits
            self.not_modified += not_modified

    def to_json(self) -> dict[str, int]:
        return {"calls": self.calls, "cache_hits": self.cache_hits, "not_modified": self.not_modified}


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class HttpCache:
    """A cache under ``root``; ``root=None`` caches nothing."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        if root is None:
            return
        try:
            (root / "objects").mkdir(parents=True, exist_ok=True)
            (root / "etags").mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(
                f"cannot use the cache directory {root}: {error.strerror or error}; pass --cache-dir DIR"
            ) from None

    def _object_path(self, key: str) -> Path | None:
        if self.root is None:
            return None
        return self.root / "objects" / f"{_SAFE.sub('_', key)}.json"

    def _etag_path(self, url: str) -> Path | None:
        if self.root is None:
            return None
        return self.root / "etags" / f"{hashlib.sha256(url.encode()).hexdigest()}.json"

    @staticmethod
    def _read(path: Path | None) -> Any:
        if path is None:
            return None
        try:
            return json.loads(path.read_bytes())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _write(path: Path | None, value: Any) -> None:
        if path is None:
            return
        data = json.dumps(value, separators=(",", ":")).encode()
        # A full or read-only disk costs the next report some requests, nothing else.
        try:
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        except OSError:
            return
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            Path(temporary).replace(path)
        except OSError:
            with contextlib.suppress(OSError):
                Path(temporary).unlink()

    def get_object(self, key: str) -> Any:
        return self._read(self._object_path(key))

    def put_object(self, key: str, value: Any) -> None:
        self._write(self._object_path(key), value)

    def get_page(self, url: str) -> tuple[str, Any] | None:
        """The ETag and body stored for ``url``, if any."""
        entry = self._read(self._etag_path(url))
        if isinstance(entry, dict) and entry.get("url") == url and isinstance(entry.get("etag"), str):
            return entry["etag"], entry.get("body")
        return None

    def put_page(self, url: str, etag: str, body: Any) -> None:
        self._write(self._etag_path(url), {"url": url, "etag": etag, "body": body})
