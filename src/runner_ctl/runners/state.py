"""When runner-ctl first saw each runner offline: a small JSON state file in ``paths.state_dir()``.

GitHub reports a runner as online or offline but not since when, so ``runners prune``
measures a GitHub runner's offline time from the first run that saw it offline (likewise a
GitLab runner that never made contact and so has no ``contacted_at``). Entries are
keyed by API URL, scope and runner id (ids are unique only per API, and one file serves
every forge and scope); a runner seen online again, or no longer listed, is forgotten.

The file is rewritten atomically (a temporary file, then a rename) with mode 0600: a killed
run leaves the old file, never half of a new one. An unreadable or corrupt file is treated
as empty: the worst outcome is that an offline runner's clock starts again.
"""

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from runner_ctl.errors import ConfigError
from runner_ctl.forge.runners import RunnerInfo

__all__ = ["OfflineSince"]

_VERSION = 1


class OfflineSince:
    """The first-seen-offline times of one API URL and scope, backed by ``path``."""

    def __init__(self, path: Path, api_url: str, scope: str) -> None:
        self.path = path
        self._prefix = f"{api_url.rstrip('/')} {scope} "
        self._entries = self._load()

    def _load(self) -> dict[str, float]:
        try:
            document = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return {}
        entries = document.get("offline_since") if isinstance(document, dict) else None
        if not isinstance(entries, dict):
            return {}
        return {
            key: float(value)
            for key, value in entries.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }

    def _key(self, runner_id: int) -> str:
        return f"{self._prefix}{runner_id}"

    def observe(self, runners: Iterable[RunnerInfo], now: float | None = None) -> dict[int, float]:
        """Record this listing; the first-seen-offline time of each offline runner in it.

        Runners of this scope that are online or not listed are forgotten; other scopes' are kept.
        """
        moment = time.time() if now is None else now
        listed: dict[str, float] = {}
        found: dict[int, float] = {}
        for runner in runners:
            if runner.online:
                continue
            key = self._key(runner.id)
            found[runner.id] = listed[key] = self._entries.get(key, moment)
        others = {key: value for key, value in self._entries.items() if not key.startswith(self._prefix)}
        self._entries = {**others, **listed}
        return found

    def forget(self, runner_id: int) -> None:
        self._entries.pop(self._key(runner_id), None)

    def save(self) -> None:
        """Write the file atomically, mode 0600; ConfigError naming the path when that fails."""
        data = json.dumps({"version": _VERSION, "offline_since": self._entries}, indent=1, sort_keys=True).encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-offline-since-")
        except OSError as error:
            raise ConfigError(self._unwritable(error)) from None
        try:
            with os.fdopen(handle, "wb") as out:  # mkstemp makes it 0600
                out.write(data + b"\n")
            Path(temporary).replace(self.path)
        except OSError as error:
            with contextlib.suppress(OSError):
                Path(temporary).unlink()
            raise ConfigError(self._unwritable(error)) from None

    def _unwritable(self, error: OSError) -> str:
        return (
            f"cannot write the prune state file {self.path}: {error.strerror or error}; "
            "set RUNNER_CTL_STATE_DIR to a writable directory"
        )
