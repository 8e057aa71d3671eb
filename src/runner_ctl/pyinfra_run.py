"""Run a pyinfra deploy and read pyinfra's own per-operation results.

pyinfra runs in a child process (its global state and gevent hub stay out of ours) with
``--json``, which reports, for every operation and host, whether it changed something,
did nothing, or failed: the change counts come from pyinfra's change detection, not from
reading its log.
"""

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner_ctl._proc import run_timed
from runner_ctl.errors import StepError

__all__ = ["DeployRun", "parse_results", "run_deploy"]


@dataclass(frozen=True)
class DeployRun:
    """One pyinfra run: host-operations executed, how many changed something, how long."""

    seconds: float
    operations: int
    changed: int
    changed_names: tuple[str, ...] = field(default=())
    log: str = ""

    def summary(self) -> dict[str, float | int]:
        return {
            "seconds": round(self.seconds, 2),
            "operations": self.operations,
            "changed": self.changed,
        }


def parse_results(document: Mapping[str, Any]) -> tuple[int, int, int, tuple[str, ...]]:
    """(operations, changed, errors, names of changed operations) from ``pyinfra --json``."""
    results = document.get("results")
    if not isinstance(results, Mapping):
        raise ValueError("pyinfra --json output has no results (was it a dry run?)")
    totals = results["totals"]
    changed_names = tuple(op["name"] for op in results["operations"] if op["success"])
    return int(totals["hosts"]), int(totals["success"]), int(totals["error"]), changed_names


def _last_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    interesting = [line for line in lines if "error" in line.lower() or "rejected" in line.lower()]
    picked = interesting[-2:] if interesting else lines[-1:]
    return " / ".join(picked) or "(no output)"


def run_deploy(
    *,
    project_root: Path,
    inventory: Path,
    deploy: Path,
    env: Mapping[str, str],
    log_path: Path,
    label: str,
    timeout: float = 3600,
    group_data: Path | None = None,
) -> DeployRun:
    """Run ``pyinfra -y --json INVENTORY DEPLOY`` from the project root; raise on any failure.

    ``group_data``: a further group data directory, whose keys override the inventory's.
    """
    extra = ["--group-data", str(group_data)] if group_data else []
    argv = [sys.executable, "-m", "pyinfra", "-y", "--json", *extra, str(inventory), str(deploy)]
    child_env = {**os.environ, **env, "PYINFRA_PROGRESS": "off"}
    done, seconds = run_timed(argv, what=f"{label}: pyinfra", cwd=project_root, env=child_env, timeout=timeout)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(done.stderr + "\n--- stdout ---\n" + done.stdout)
    if done.returncode != 0:
        raise StepError(f"{label} failed: {_last_error(done.stderr)} (log: {log_path})")
    try:
        operations, changed, errors, changed_names = parse_results(json.loads(done.stdout))
    except (ValueError, KeyError, TypeError) as error:
        raise StepError(f"{label}: unreadable pyinfra --json output ({error}); log: {log_path}") from None
    if errors:
        raise StepError(f"{label}: {errors} operation(s) failed (log: {log_path})")
    return DeployRun(seconds, operations, changed, changed_names, str(log_path))
