"""`runner-ctl rehearse --json` end to end: boot, deploy, host checks, idempotent second run."""

import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from runner_ctl.testhost import list_hosts
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.host


def test_rehearsal_passes_and_the_second_run_changes_nothing(rehearsal: dict[str, Any]) -> None:
    assert rehearsal["ok"] is True, f"{rehearsal['failed_step']}: {rehearsal['error']}"
    assert rehearsal["exit_code"] == 0
    assert rehearsal["failed_step"] is None
    assert rehearsal["layers"] == ["base", "bazel", "buildbuddy", "github_runner", "gitlab_runner", "deploy_lock"]
    first, second = rehearsal["first_run"], rehearsal["second_run"]
    assert first["operations"] > 0
    assert first["changed"] > 0  # a fresh host really was configured
    assert second["operations"] > 0
    assert second["changed"] == 0
    assert first["seconds"] > 0 and second["seconds"] > 0
    assert rehearsal["checks"]["failed"] == 0
    assert rehearsal["checks"]["passed"] >= 10


def test_rehearsal_says_which_outside_services_were_stand_ins(rehearsal: dict[str, Any]) -> None:
    """GitHub, GitLab and the runner releases are out of reach: the report names their stand-ins."""
    standins = rehearsal["standins"]
    assert len(standins) == 2, standins
    assert "GitHub API" in standins[0] and "stand-in" in standins[0]
    assert "GitLab API" in standins[1] and "stand-in" in standins[1]
    for summary in standins:
        assert f"stand-in: {summary}" in rehearsal["stderr"]


def test_rehearsal_json_contract(rehearsal: dict[str, Any]) -> None:
    for key in ("ok", "layers", "first_run", "second_run", "checks"):
        assert key in rehearsal
    for run in ("first_run", "second_run"):
        assert set(rehearsal[run]) == {"seconds", "operations", "changed"}
    assert set(rehearsal["checks"]) == {"passed", "failed"}
    assert rehearsal["kept"] is True


def test_rehearsal_reports_its_steps_on_stderr(rehearsal: dict[str, Any]) -> None:
    for step in ("booting", "first deploy", "host checks", "second deploy"):
        assert step in rehearsal["stderr"]


def test_sigterm_during_a_rehearsal_tears_its_host_down() -> None:
    """A cancelled CI job must not leave a test host (or its swap on the controller) behind."""
    before = {h.name for h in list_hosts()}
    process = subprocess.Popen(
        [sys.executable, "-m", "runner_ctl", "rehearse", "--json"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 600
        new: set[str] = set()
        while time.monotonic() < deadline and not new and process.poll() is None:
            new = {h.name for h in list_hosts() if h.running()} - before
            time.sleep(0.5)
        assert new, "the rehearsal never booted a host"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130
    assert "interrupted" in stderr
    assert "Traceback" not in stderr
    assert not new & {h.name for h in list_hosts()}
