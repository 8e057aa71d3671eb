"""`runner-ctl rehearse --json` end to end: boot, deploy, host checks, idempotent second run;
with ``--hosts 2``, a fleet on one private network with the fleet checks."""

import json
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from runner_ctl.testhost import list_hosts
from tests.conftest import PROJECT_ROOT, runner_ctl


@pytest.mark.host
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


@pytest.mark.host
def test_rehearsal_says_which_outside_services_were_stand_ins(rehearsal: dict[str, Any]) -> None:
    """GitHub, GitLab and the runner releases are out of reach: the report names their stand-ins."""
    standins = rehearsal["standins"]
    assert len(standins) == 2, standins
    assert "GitHub API" in standins[0] and "stand-in" in standins[0]
    assert "GitLab API" in standins[1] and "stand-in" in standins[1]
    for summary in standins:
        assert f"stand-in: {summary}" in rehearsal["stderr"]


@pytest.mark.host
def test_rehearsal_json_contract(rehearsal: dict[str, Any]) -> None:
    for key in ("ok", "layers", "first_run", "second_run", "checks"):
        assert key in rehearsal
    for run in ("first_run", "second_run"):
        assert set(rehearsal[run]) == {"seconds", "operations", "changed"}
    assert set(rehearsal["checks"]) == {"passed", "failed"}
    assert rehearsal["kept"] is True


@pytest.mark.host
def test_rehearsal_reports_its_steps_on_stderr(rehearsal: dict[str, Any]) -> None:
    for step in ("booting", "first deploy", "host checks", "second deploy"):
        assert step in rehearsal["stderr"]


@pytest.mark.host
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


@pytest.mark.host
def test_a_fleet_rehearsal_passes_on_every_host(fleet_rehearsal: dict[str, Any]) -> None:
    """The done-when: two hosts on one private network, the fleet checks, and no change on the second run."""
    report = fleet_rehearsal
    assert report["ok"] is True, f"{report['failed_step']}: {report['error']}"
    assert report["exit_code"] == 0
    hosts = report["hosts"]
    assert len(hosts) == 2 and len(set(hosts)) == 2
    assert report["host"] == hosts[0]  # the one-host contract holds: "host" is the first
    assert report["second_run"]["changed"] == 0
    assert report["first_run"]["changed"] > 0
    # Host checks ran on each host, and the fleet checks once.
    for name in hosts:
        assert f"host checks: tests/host on {name}" in report["stderr"]
    assert report["fleet_checks"]["failed"] == 0
    assert report["fleet_checks"]["passed"] >= 4
    # Both hosts share one private network, and the inventory gives each its address there.
    listed = {h["name"]: h for h in json.loads(runner_ctl("testhost", "list", "--json").stdout)}
    assert listed[hosts[0]]["network"] is not None
    assert listed[hosts[0]]["network"] == listed[hosts[1]]["network"]
    assert listed[hosts[0]]["private_ipv4"] != listed[hosts[1]]["private_ipv4"]


@pytest.mark.host
def test_a_single_host_rehearsal_names_its_host_in_hosts(rehearsal: dict[str, Any]) -> None:
    """Without --hosts: one host on no private network, and no fleet checks."""
    assert rehearsal["hosts"] == [rehearsal["host"]]
    assert rehearsal["fleet_checks"] == {"passed": 0, "failed": 0}
    assert "fleet checks" not in rehearsal["stderr"]
    assert "private network" not in rehearsal["stderr"]


@pytest.mark.parametrize("hosts", ["0", "-1", "100000"])
def test_a_host_count_the_ranges_cannot_hold_is_refused_before_any_host_boots(hosts: str) -> None:
    before = {h.name for h in list_hosts()}
    done = runner_ctl("rehearse", "--hosts", hosts, "--json", timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--hosts {hosts}" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert (report["failed_step"], report["hosts"], report["host"]) == ("validate", [], None)
    assert {h.name for h in list_hosts()} == before
