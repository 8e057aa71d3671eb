"""Disposable test hosts: two at once, each reachable only over its own veth, torn down by PID;
hosts on one private network reach each other there."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner_ctl.testhost import get_host, harness_dir, list_hosts, network_dir
from tests.conftest import PROJECT_ROOT, runner_ctl


def _ssh(ssh_config: str, name: str, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-F", ssh_config, "-o", "BatchMode=yes", name, command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.host
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


@pytest.mark.host
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


@pytest.mark.host
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


def _reach(ssh_config: str, name: str, address: str) -> bool:
    """Whether ``name`` can open a TCP connection to sshd at ``address`` (bounded by timeout)."""
    probe = _ssh(ssh_config, name, f"timeout 5 bash -c '</dev/tcp/{address}/22'")
    return probe.returncode == 0


@pytest.mark.host
def test_hosts_on_one_private_network_reach_each_other_and_nothing_beyond_the_controller() -> None:
    names = ("tpa", "tpb", "tpc")
    try:
        up_a = runner_ctl("testhost", "up", "--name", "tpa", "--network", "tpn", "--json", timeout=900)
        assert up_a.returncode == 0, up_a.stderr
        up_b = runner_ctl("testhost", "up", "--name", "tpb", "--network", "tpn", "--json", timeout=900)
        assert up_b.returncode == 0, up_b.stderr
        up_c = runner_ctl("testhost", "up", "--name", "tpc", "--json", timeout=900)
        assert up_c.returncode == 0, up_c.stderr
        a, b, c = (json.loads(up.stdout) for up in (up_a, up_b, up_c))
        assert a["network"] == b["network"] == "tpn"
        assert a["private_ipv4"] != b["private_ipv4"]
        assert "private_ipv4" not in c  # a host of no network keeps the plain contract

        # Each reaches the other's private address; the host of no network reaches neither.
        assert _reach(a["ssh_config"], "tpa", b["private_ipv4"])
        assert _reach(b["ssh_config"], "tpb", a["private_ipv4"])
        assert not _reach(c["ssh_config"], "tpc", a["private_ipv4"])
        # Still nothing beyond the controller: no default route, and the controller is not on the bridge.
        for host in (a, b):
            assert _ssh(host["ssh_config"], host["name"], "ip -4 route show default").stdout.strip() == ""
        controller = {addr for link in json.loads(
            subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True, check=True).stdout
        ) for addr in (i["local"] for i in link.get("addr_info", []))}  # fmt: skip
        assert a["private_ipv4"] not in controller and b["private_ipv4"] not in controller

        # The record, the listing and the inventory carry the private address.
        assert get_host("tpa").private_address == a["private_ipv4"]
        listed = {h["name"]: h for h in json.loads(runner_ctl("testhost", "list", "--json").stdout)}
        assert listed["tpb"]["private_ipv4"] == b["private_ipv4"] and listed["tpb"]["network"] == "tpn"
        assert listed["tpc"]["private_ipv4"] is None
        inventory = runpy_inventory("tpa,tpb")
        assert [(n, d["private_ipv4"]) for n, d in inventory] == [
            ("tpa", a["private_ipv4"]),
            ("tpb", b["private_ipv4"]),
        ]
        # One fleet, one set of stand-in secrets.
        assert inventory[0][1]["secret_standins"] == inventory[1][1]["secret_standins"]

        # `testhost ssh NAME -- CMD` runs CMD on that host and returns its exit code.
        ran = runner_ctl("testhost", "ssh", "tpb", "--", "hostname; exit 3")
        assert (ran.returncode, ran.stdout.strip()) == (3, "tpb"), ran.stderr

        # The network, and what its hosts share, lives as long as its last host.
        shared = network_dir("tpn")
        shared.mkdir(parents=True)
        (shared / "kept-while-the-network-lives").touch()
        assert runner_ctl("testhost", "down", "tpa", timeout=120).returncode == 0
        assert Path("/run/netns/rctnet-tpn").exists() and shared.is_dir()
        assert _ssh(b["ssh_config"], "tpb", "true").returncode == 0
        assert runner_ctl("testhost", "down", "tpb", timeout=120).returncode == 0
        assert not Path("/run/netns/rctnet-tpn").exists()
        assert not shared.exists()
    finally:
        for name in names:
            if any(h.name == name for h in list_hosts()):
                runner_ctl("testhost", "down", name, timeout=120)


def runpy_inventory(names: str) -> list[tuple[str, dict[str, Any]]]:
    """inventories/testhost.py's hosts, loaded as pyinfra loads an inventory file."""
    script = "import json, runpy; print(json.dumps(runpy.run_path('inventories/testhost.py')['runner_hosts']))"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "RUNNER_CTL_TESTHOST": names},
    )
    return [(name, data) for name, data in json.loads(done.stdout)]


PRIVATE = "RUNNER_CTL_TESTHOST_PRIVATE_SUBNET"


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (("--network", "Bad_Name"), {}, "private network name 'Bad_Name' is invalid"),
        (("--network", "tpx"), {PRIVATE: "10.213.0.0/16"}, "overlaps the controller range"),
        (("--network", "tpx"), {PRIVATE: "10.214.0.0/31"}, "is too small"),
        (("--network", "tpx"), {PRIVATE: "vpc"}, "is invalid"),
    ],
)
def test_a_bad_private_network_is_refused_before_anything_is_made(
    args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    before = {h.name for h in list_hosts()}
    done = runner_ctl("testhost", "up", "--name", "tpz", *args, env=env, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], done.stderr
    assert {h.name for h in list_hosts()} == before
    assert not Path("/run/netns/rctnet-tpx").exists()
