"""Run the host checks (``tests/host/``, testinfra over SSH) against a test host, and the fleet
checks (``tests/fleet/``) once against a fleet of them.

The checks are an ordinary pytest suite; this runs it in a child process and reads the
JUnit XML report it writes, so counts come from pytest itself.
"""

import os
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runner_ctl._proc import run_timed
from runner_ctl.errors import StepError

__all__ = [
    "CHECK_FLEET_ENV",
    "CHECK_HOST_ENV",
    "CheckRun",
    "combine_checks",
    "parse_junit",
    "run_fleet_checks",
    "run_host_checks",
]

# The host checks read the target test host's name from this variable.
CHECK_HOST_ENV = "RUNNER_CTL_CHECK_HOST"
# Host and fleet checks read the names of every host of the fleet from this one, comma-separated
# in inventory order (so the first is the default deploy_lock_host); a lone host names itself.
CHECK_FLEET_ENV = "RUNNER_CTL_CHECK_FLEET"


@dataclass(frozen=True)
class CheckRun:
    passed: int
    failed: int
    seconds: float
    failures: tuple[str, ...] = field(default=())
    log: str = ""

    def summary(self) -> dict[str, int]:
        return {"passed": self.passed, "failed": self.failed}


def parse_junit(report: Path) -> tuple[int, int, tuple[str, ...]]:
    """(passed, failed, names of failed tests) from a pytest JUnit XML report."""
    root = ET.parse(report).getroot()  # noqa: S314 - our own child process wrote it
    passed, failed, failures = 0, 0, []
    for case in root.iter("testcase"):
        outcome = {child.tag for child in case}
        if outcome & {"failure", "error"}:
            failed += 1
            failures.append(case.get("name", "?"))
        elif "skipped" not in outcome:
            passed += 1
    return passed, failed, tuple(failures)


def _run_checks(
    checks: Path, *, project_root: Path, env: dict[str, str], log_dir: Path, what: str, timeout: float
) -> CheckRun:
    if not checks.is_dir():
        raise StepError(f"{what}: {checks} does not exist")
    log_dir.mkdir(parents=True, exist_ok=True)
    report = log_dir / "checks.xml"
    argv = [sys.executable, "-m", "pytest", str(checks), "-q", f"--junitxml={report}"]
    done, seconds = run_timed(argv, what=what, cwd=project_root, env={**os.environ, **env}, timeout=timeout)
    log = log_dir / "checks.log"
    log.write_text(done.stdout + done.stderr)
    if done.returncode not in (0, 1) or not report.is_file():
        raise StepError(f"{what} could not run (pytest exit {done.returncode}); log: {log}")
    passed, failed, failures = parse_junit(report)
    if passed + failed == 0:
        raise StepError(f"{what}: no checks were collected from {checks}")
    return CheckRun(passed, failed, seconds, failures, str(log))


def run_host_checks(
    *, project_root: Path, host_name: str, log_dir: Path, fleet: Sequence[str] = (), timeout: float = 1800
) -> CheckRun:
    """tests/host against one host; ``fleet`` names every host of its fleet, in inventory order."""
    env = {CHECK_HOST_ENV: host_name, CHECK_FLEET_ENV: ",".join(fleet or [host_name])}
    return _run_checks(
        project_root / "tests" / "host",
        project_root=project_root,
        env=env,
        log_dir=log_dir,
        what="host checks",
        timeout=timeout,
    )


def run_fleet_checks(*, project_root: Path, fleet: Sequence[str], log_dir: Path, timeout: float = 1800) -> CheckRun:
    """tests/fleet, once for a fleet of test hosts (named in inventory order)."""
    return _run_checks(
        project_root / "tests" / "fleet",
        project_root=project_root,
        env={CHECK_FLEET_ENV: ",".join(fleet)},
        log_dir=log_dir,
        what="fleet checks",
        timeout=timeout,
    )


def combine_checks(names: Sequence[str], runs: Sequence[CheckRun]) -> CheckRun:
    """One host's checks as they are; several hosts' summed, each failure named with its host."""
    if len(runs) == 1:
        return runs[0]
    return CheckRun(
        passed=sum(run.passed for run in runs),
        failed=sum(run.failed for run in runs),
        seconds=sum(run.seconds for run in runs),
        failures=tuple(f"{name}: {failure}" for name, run in zip(names, runs, strict=True) for failure in run.failures),
        log=" ".join(run.log for run in runs if run.failed) or (runs[0].log if runs else ""),
    )
