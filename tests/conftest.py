"""Suite-wide fixtures.

``rehearsal``: one real ``runner-ctl rehearse --keep --json`` run per test session. Its
report is asserted by tests/test_rehearse.py, and the host it leaves running is the target
of the host checks in tests/host/ and of the other host-marked tests; it is torn down at
the end of the session.

``fleet_rehearsal``: likewise one ``runner-ctl rehearse --hosts 2 --keep --json``, asserted by
tests/test_rehearse.py; its two hosts are the target of the fleet checks in tests/fleet/.
"""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def runner_ctl(
    *args: str, timeout: float = 1800, env: dict[str, str] | None = None, as_user: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a child process, as a user would (optionally as another user)."""
    prefix = ["setpriv", f"--reuid={as_user}", f"--regid={as_user}", "--clear-groups"] if as_user else []
    return subprocess.run(
        [*prefix, sys.executable, "-m", "runner_ctl", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


def _kept_rehearsal(*args: str) -> Iterator[dict[str, Any]]:
    done = runner_ctl("rehearse", "--keep", "--json", *args, timeout=3600)
    lines = done.stdout.strip().splitlines()
    assert lines, f"rehearse printed nothing; stderr: {done.stderr[-2000:]}"
    report: dict[str, Any] = json.loads(lines[-1])
    report["exit_code"] = done.returncode
    report["stderr"] = done.stderr
    try:
        yield report
    finally:
        # The first host last, as rehearse tears a fleet down.
        for name in reversed(report.get("hosts") or ([report["host"]] if report.get("host") else [])):
            runner_ctl("testhost", "down", name, timeout=120)


@pytest.fixture(scope="session")
def rehearsal() -> Iterator[dict[str, Any]]:
    yield from _kept_rehearsal()


@pytest.fixture(scope="session")
def fleet_rehearsal() -> Iterator[dict[str, Any]]:
    yield from _kept_rehearsal("--hosts", "2")
