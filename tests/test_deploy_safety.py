"""A deploy can fail, but never by locking the operator out or half-applying bad input."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner_ctl.hostchecks import CHECK_FLEET_ENV
from runner_ctl.pyinfra_run import run_deploy
from runner_ctl.testhost import DisposableHost, get_host
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def kept_host(rehearsal: dict[str, Any]) -> DisposableHost:
    assert rehearsal["host"], rehearsal["error"]
    return get_host(rehearsal["host"])


def _pyinfra(host: DisposableHost, deploy: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    # On a host of a rehearsed fleet: the whole fleet's inventory, limited to this host, as an
    # operator deploys one host of a fleet (alone, it would make itself its own lock host).
    fleet = os.environ.get(CHECK_FLEET_ENV) or host.name
    return subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "--limit", host.name, *extra, "inventories/testhost.py", str(deploy)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "RUNNER_CTL_TESTHOST": fleet, "PYINFRA_PROGRESS": "off"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _remote(host: DisposableHost, command: str) -> str:
    return subprocess.run(
        ["ssh", "-F", host.ssh_config, "-o", "BatchMode=yes", host.name, command],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout


def _assert_deploy_changes_nothing(host: DisposableHost, tmp_path: Path) -> None:
    run = run_deploy(
        project_root=PROJECT_ROOT,
        inventory=PROJECT_ROOT / "inventories" / "testhost.py",
        deploy=PROJECT_ROOT / "deploys" / "runner_host.py",
        env={"RUNNER_CTL_TESTHOST": host.name},
        log_path=tmp_path / "deploy.log",
        label="deploy after the refused change",
    )
    assert run.changed == 0, run.changed_names


@pytest.mark.parametrize(
    ("deploy", "live_file", "rejection"),
    [
        ("bad_sshd.py", "/etc/ssh/sshd_config.d/10-runner-ctl.conf", "rejected new /etc/ssh/sshd_config.d"),
        ("bad_nftables.py", "/etc/nftables.conf", "rejected new /etc/nftables.conf"),
    ],
)
def test_a_config_that_fails_its_check_is_never_installed(
    kept_host: DisposableHost, tmp_path: Path, deploy: str, live_file: str, rejection: str
) -> None:
    before = _remote(kept_host, f"sha256sum {live_file}")
    done = _pyinfra(kept_host, PROJECT_ROOT / "tests" / "deploys" / deploy)
    assert done.returncode != 0
    assert rejection in done.stderr
    # The previous file is back, byte for byte, and a fresh SSH connection still gets in.
    assert _remote(kept_host, f"sha256sum {live_file}") == before
    assert "passwordauthentication no" in _remote(kept_host, "sshd -T")
    assert _remote(kept_host, "nft list chain inet runner_ctl input").count("policy drop") == 1
    _assert_deploy_changes_nothing(kept_host, tmp_path)


def test_bad_group_data_stops_the_production_deploy_with_one_line(kept_host: DisposableHost, tmp_path: Path) -> None:
    """The pyinfra path (not only rehearse) refuses bad group data before any operation."""
    done = _pyinfra(kept_host, PROJECT_ROOT / "deploys" / "runner_host.py", "--data", "sshd_port=70000")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "sshd_port = " in line]
    assert len(errors) == 1
    assert "expected a TCP port number from 1 to 65535" in errors[0]
    assert "Starting operation" not in done.stderr
    _assert_deploy_changes_nothing(kept_host, tmp_path)
