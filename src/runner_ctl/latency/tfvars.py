"""``--write-tfvars``: the replay's recommendation as ``runner_count`` in an OpenTofu JSON variables file.

The file is read (and refused when it is not a JSON object) before any API call, and
written atomically (a temporary file in the same directory, renamed over it), keeping every
other key of the object. Scaling in is never automatic: a smaller count than the file holds
is written only with ``--allow-scale-in``, because removing a droplet is the step
tofu/README.md's "Scaling in" makes deliberate.
"""

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner_ctl.errors import ConfigError, UsageError
from runner_ctl.paths import open_regular

__all__ = ["KEY", "TfvarsPlan", "decide", "read_tfvars", "write_tfvars"]

KEY = "runner_count"
MAX_HOSTS_LIMIT = 1000
MAX_BYTES = 1024 * 1024  # a variables file is a few lines


@dataclass(frozen=True)
class TfvarsPlan:
    """What to write: ``runner_count`` (None: leave the file as it is) and why."""

    path: Path
    previous: int | None
    runner_count: int | None
    reason: str

    @property
    def changed(self) -> bool:
        return self.runner_count is not None and self.runner_count != self.previous

    def to_json(self, slots_per_host: int) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "slots_per_host": slots_per_host,
            "previous": self.previous,
            "runner_count": self.runner_count if self.runner_count is not None else self.previous,
            "changed": self.changed,
            "reason": self.reason,
        }


def read_tfvars(path: Path) -> dict[str, Any]:
    """The object in ``path`` ({} when the file does not exist); UsageError when it is not one."""
    fix = f"give --write-tfvars a JSON variables file (e.g. tofu/runner-count.auto.tfvars.json) or remove {path}"
    if path.is_dir():
        raise UsageError(f"--write-tfvars {path} is a directory; {fix}")
    if not path.exists() and not path.is_symlink():
        if not path.parent.is_dir():
            raise UsageError(f"--write-tfvars {path}: the directory {path.parent} does not exist")
        return {}
    # open_regular refuses a FIFO or a device at once, where a plain read would wait or never end.
    with open_regular(path, "--write-tfvars") as handle:
        raw = handle.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise UsageError(f"--write-tfvars {path} is over {MAX_BYTES // 1024} KiB, not a variables file; {fix}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"--write-tfvars {path} is not UTF-8 text; {fix}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"--write-tfvars {path} is not JSON (line {error.lineno}: {error.msg}); {fix}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--write-tfvars {path} holds a JSON {type(data).__name__}, not an object; {fix}")
    current = data.get(KEY)
    if KEY in data and (isinstance(current, bool) or not isinstance(current, int) or current < 0):
        raise UsageError(f"--write-tfvars {path}: {KEY} is {current!r}, not a whole number of hosts; correct it")
    return data


def decide(
    path: Path,
    existing: dict[str, Any],
    *,
    recommended_slots: int | None,
    simulated_jobs: int,
    slots_per_host: int,
    max_hosts: int | None,
    allow_scale_in: bool,
) -> TfvarsPlan:
    """How many hosts of ``slots_per_host`` slots the recommendation needs, within the limits."""
    previous = existing.get(KEY)
    if not simulated_jobs:
        return TfvarsPlan(path, previous, None, "no self-hosted jobs in the window: nothing to size")
    if max_hosts is not None and previous is not None and previous > max_hosts and not allow_scale_in:
        raise UsageError(
            f"{path} has {KEY} {previous}, more than --max-hosts {max_hosts}: "
            "raise --max-hosts or give --allow-scale-in"
        )
    if recommended_slots is None:
        if max_hosts is None:
            raise UsageError(
                "no slot count the replay tried meets the target: give --max-hosts (the replay then tries "
                "--max-hosts x --slots-per-host slots) or raise --max-slots"
            )
        return TfvarsPlan(path, previous, max_hosts, f"no count up to --max-hosts {max_hosts} meets the target")
    wanted = max(1, math.ceil(recommended_slots / slots_per_host))
    count, reason = wanted, f"{recommended_slots} slots recommended, {slots_per_host} per host"
    if previous is not None and wanted < previous and not allow_scale_in:
        count, reason = previous, f"{reason}: {wanted} hosts would do, kept at {previous} (no --allow-scale-in)"
    if max_hosts is not None and count > max_hosts:
        count, reason = max_hosts, f"{reason}: {wanted} hosts wanted, capped at --max-hosts {max_hosts}"
    return TfvarsPlan(path, previous, count, reason)


def write_tfvars(plan: TfvarsPlan, existing: dict[str, Any]) -> None:
    """Write ``runner_count`` into the object, atomically; an unchanged count leaves the file alone."""
    if not plan.changed or plan.runner_count is None:
        return
    text = json.dumps({**existing, KEY: plan.runner_count}, indent=2) + "\n"
    directory = plan.path.parent
    try:
        mode = plan.path.stat().st_mode & 0o777 if plan.path.exists() else 0o644
        handle, temporary = tempfile.mkstemp(prefix=f".{plan.path.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            Path(temporary).chmod(mode)
            Path(temporary).replace(plan.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as error:
        raise ConfigError(f"cannot write --write-tfvars {plan.path}: {error.strerror or error}") from None
