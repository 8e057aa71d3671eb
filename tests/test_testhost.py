"""Disposable test hosts: two at once, each reachable only over its own veth, torn down by PID."""

import json
import subprocess
from pathlib import Path

import pytest

from runner_ctl.testhost import get_host, harness_dir, list_hosts
from tests.conftest import runner_ctl

pytestmark = pytest.mark.host


def _ssh(ssh_config: str, name: str, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-F", ssh_config, "-o", "BatchMode=yes", name, command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_two_hosts_at_once_and_teardown_by_name() -> None:
    up_a = runner_ctl("testhost", "up", "--name", "tha", "--volume-mb", "64", "--json", timeout=900)
    assert up_a.returncode == 0, up_a.stderr
    try:
        up_b = runner_ctl("testhost", "up", "--name", "thb", "--json", timeout=900)
        assert up_b.returncode == 0, up_b.stderr
        a, b = json.loads(up_a.stdout), json.loads(up_b.stdout)
        assert set(a) == {"name", "address", "ssh_config", "ssh_key"}
        assert a["address"] != b["address"]

        # Each is a real systemd host, reached with its own key and pinned host key.
        for host in (a, b):
            booted = _ssh(host["ssh_config"], host["name"], "hostname; systemctl is-system-running --wait")
            assert booted.stdout.split()[0] == host["name"], booted.stderr
            assert booted.stdout.split()[1] in ("running", "degraded")
            # No route off the controller: only the veth's own /30.
            routes = _ssh(host["ssh_config"], host["name"], "ip -4 route show default")
            assert routes.stdout.strip() == ""
        # The key of one host does not open the other.
        crossed = subprocess.run(
            ["ssh", "-F", a["ssh_config"], "-o", f"HostName={b['address']}", "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", a["name"], "true"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert crossed.returncode != 0

        listed = json.loads(runner_ctl("testhost", "list", "--json").stdout)
        assert {h["name"] for h in listed if h["running"]} >= {"tha", "thb"}

        # Host a has a block volume, formatted ext4 as DigitalOcean formats a new volume.
        host_a = get_host("tha")
        assert host_a.volume_device
        volume = _ssh(a["ssh_config"], "tha", f"blkid -o value -s TYPE {host_a.volume_device}")
        assert volume.stdout.strip() == "ext4", volume.stderr
        assert _ssh(b["ssh_config"], "thb", f"test -e {host_a.volume_device}").returncode != 0

        down = runner_ctl("testhost", "down", "tha")
        assert down.returncode == 0, down.stderr
        assert not Path(host_a.directory).exists()
        assert not Path(f"/run/netns/{host_a.netns}").exists()
        assert not Path(f"/sys/class/net/{host_a.veth}").exists()
        assert not host_a.running()
        attached = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=True).stdout
        assert str(host_a.volume_image) not in attached
        # The other host is untouched.
        assert _ssh(b["ssh_config"], "thb", "true").returncode == 0
    finally:
        for name in ("tha", "thb"):
            if any(h.name == name for h in list_hosts()):
                runner_ctl("testhost", "down", name, timeout=120)
    assert not any(h.name in ("tha", "thb") for h in list_hosts())
    # The caches survive teardown, so the next host boots without debootstrap.
    assert any((harness_dir() / "rootfs").iterdir())
    assert any((harness_dir() / "apt").iterdir())


def test_duplicate_name_is_refused() -> None:
    up = runner_ctl("testhost", "up", "--name", "thc", "--json", timeout=900)
    assert up.returncode == 0, up.stderr
    try:
        again = runner_ctl("testhost", "up", "--name", "thc")
        assert again.returncode == 2
        assert "exists already" in again.stderr
        assert get_host("thc").running()  # the refused call did not disturb it
    finally:
        runner_ctl("testhost", "down", "thc", timeout=120)


def test_a_running_host_whose_state_file_is_corrupt_is_left_alone() -> None:
    up = runner_ctl("testhost", "up", "--name", "thd", "--json", timeout=900)
    assert up.returncode == 0, up.stderr
    state = Path(json.loads(up.stdout)["ssh_config"]).parent / "host.json"
    intact = state.read_text()
    try:
        state.write_text('{"name": "thd", "pid": ')
        listed = runner_ctl("testhost", "list")
        assert listed.returncode == 2
        assert len(listed.stderr.strip().splitlines()) == 1 and str(state) in listed.stderr, listed.stderr
        # Without a PID it can trust, teardown signals nothing and removes nothing while the container runs.
        down = runner_ctl("testhost", "down", "thd", timeout=120)
        assert down.returncode == 1
        assert len(down.stderr.strip().splitlines()) == 1 and "still runs inside" in down.stderr, down.stderr
        assert state.parent.is_dir()
        assert _ssh(json.loads(up.stdout)["ssh_config"], "thd", "true").returncode == 0
    finally:
        state.write_text(intact)
        runner_ctl("testhost", "down", "thd", timeout=120)
    assert not state.parent.exists()
