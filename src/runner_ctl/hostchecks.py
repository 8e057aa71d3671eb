"""Run the host checks (``tests/host/``, testinfra over SSH) against a test host.

The checks are an ordinary pytest suite; this runs it in a child process and reads the
JUnit XML report it writes, so counts come from pytest itself.
"""

import os
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from runner_ctl._proc import run_timed
from runner_ctl.errors import StepError

__all__ = ["CHECK_HOST_ENV", "CheckRun", "parse_junit", "run_host_checks"]

# The host checks read the target test host's name from this variable.
CHECK_HOST_ENV = "RUNNER_CTL_CHECK_HOST"


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


def run_host_checks(*, project_root: Path, host_name: str, log_dir: Path, timeout: float = 1800) -> CheckRun:
    checks = project_root / "tests" / "host"
    if not checks.is_dir():
        raise StepError(f"host checks: {checks} does not exist")
    log_dir.mkdir(parents=True, exist_ok=True)
    report = log_dir / "checks.xml"
    argv = [sys.executable, "-m", "pytest", str(checks), "-q", f"--junitxml={report}"]
    done, seconds = run_timed(
        argv, what="host checks", cwd=project_root, env={**os.environ, CHECK_HOST_ENV: host_name}, timeout=timeout
    )
    log = log_dir / "checks.log"
    log.write_text(done.stdout + done.stderr)
    if done.returncode not in (0, 1) or not report.is_file():
        raise StepError(f"host checks could not run (pytest exit {done.returncode}); log: {log}")
    passed, failed, failures = parse_junit(report)
    if passed + failed == 0:
        raise StepError(f"host checks: no checks were collected from {checks}")
    return CheckRun(passed, failed, seconds, failures, str(log))
