"""Host checks for the base layer (deploys/base.py), run over SSH with testinfra."""

import json
import socket
from typing import Any

import pytest

from runner_ctl.hostdata import BaseLayerSettings
from runner_ctl.testhost import DisposableHost

pytestmark = pytest.mark.host

PROBE_PORT = 18080
PROBE_UNIT = "runner-ctl-probe"


def test_runner_user_exists_without_sudo(host: Any, base: BaseLayerSettings) -> None:
    user = host.user(base.runner_user)
    assert user.exists
    assert not {"sudo", "admin", "wheel"} & set(user.groups)
    # No usable password: the shadow entry is locked or empty of a hash.
    shadow = host.check_output(f"getent shadow {base.runner_user}").split(":")[1]
    assert shadow.startswith(("!", "*")), shadow
    assert host.run(f"runuser -u {base.runner_user} -- sudo -n true").rc != 0


def test_runner_open_file_limit(host: Any, base: BaseLayerSettings) -> None:
    limits = host.file("/etc/security/limits.d/60-runner-ctl.conf")
    for kind in ("soft", "hard"):
        assert limits.contains(f"^{base.runner_user} {kind} nofile {base.runner_nofile}$")
    # pam_limits applies the file to runner logins. Raising a hard limit needs
    # CAP_SYS_RESOURCE, which root has on a VM; a container whose controller withholds it
    # (some CI sandboxes do) keeps its inherited ceiling, and only the file can be checked.
    capabilities = int(host.check_output("awk '/^CapEff/ {print $2}' /proc/self/status"), 16)
    if capabilities & (1 << 24):
        limit = host.check_output(f"runuser -l {base.runner_user} -c 'ulimit -Sn; ulimit -Hn'")
        assert limit.split() == [str(base.runner_nofile)] * 2


def test_sshd_effective_config_refuses_passwords(host: Any, base: BaseLayerSettings) -> None:
    effective = dict(line.split(" ", 1) for line in host.check_output("sshd -T").splitlines() if " " in line)
    assert effective["passwordauthentication"] == "no"
    assert effective["kbdinteractiveauthentication"] == "no"
    expected_root = {"prohibit-password": "without-password", "no": "no"}[base.sshd_permit_root_login]
    assert effective["permitrootlogin"] == expected_root
    assert effective["port"] == str(base.sshd_port)


def _input_chain(host: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    listing = json.loads(host.check_output("nft -j list chain inet runner_ctl input"))["nftables"]
    chain = next(item["chain"] for item in listing if "chain" in item)
    rules = [item["rule"] for item in listing if "rule" in item]
    return chain, rules


def _accepts_port(rule: dict[str, Any], port: int) -> bool:
    expressions = rule["expr"]
    matches_port = any(
        "match" in e and e["match"]["left"].get("payload", {}).get("field") == "dport" and e["match"]["right"] == port
        for e in expressions
    )
    return matches_port and any("accept" in e for e in expressions)


def test_firewall_input_policy_drop_and_ssh_allowed(host: Any, base: BaseLayerSettings) -> None:
    chain, rules = _input_chain(host)
    assert chain["hook"] == "input"
    assert chain["policy"] == "drop"
    assert any(_accepts_port(rule, base.sshd_port) for rule in rules)
    assert host.service("nftables").is_enabled


def _tcp_connects(address: str, port: int, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def test_firewall_blocks_other_listening_ports_from_the_controller(
    host: Any, test_host: DisposableHost, base: BaseLayerSettings
) -> None:
    host.run(f"systemctl stop {PROBE_UNIT}")
    started = host.run(
        f"systemd-run --unit={PROBE_UNIT} --collect systemd-socket-activate --listen=0.0.0.0:{PROBE_PORT} /bin/cat"
    )
    assert started.rc == 0, started.stderr
    try:
        # The probe really listens: the host reaches it over loopback ...
        reached_locally = host.run(
            f"for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/{PROBE_PORT}) 2>/dev/null && exit 0; "
            "sleep 0.1; done; exit 1",
        )
        assert reached_locally.rc == 0, "the probe listener never came up on the host"
        # ... the controller cannot, while SSH on the same address works.
        assert not _tcp_connects(test_host.address, PROBE_PORT)
        assert _tcp_connects(test_host.address, base.sshd_port)
    finally:
        host.run(f"systemctl stop {PROBE_UNIT}")


def test_unattended_upgrades_and_timesyncd_enabled(host: Any, base: BaseLayerSettings) -> None:
    assert host.package("unattended-upgrades").is_installed
    assert host.service("unattended-upgrades").is_enabled is base.unattended_upgrades
    periodic = host.check_output("apt-config dump APT::Periodic::Unattended-Upgrade")
    assert f'"{int(base.unattended_upgrades)}"' in periodic
    origins = host.check_output("apt-config dump Unattended-Upgrade::Origins-Pattern")
    assert "Debian-Security" in origins
    assert 'label=Debian";' not in origins  # security updates only
    assert host.package("systemd-timesyncd").is_installed
    assert host.service("systemd-timesyncd").is_enabled


def test_journal_is_capped(host: Any, base: BaseLayerSettings) -> None:
    drop_in = host.file("/etc/systemd/journald.conf.d/60-runner-ctl.conf")
    assert drop_in.contains(f"^SystemMaxUse={base.journald_max_use}$")


def test_swap_matches_configuration(host: Any, base: BaseLayerSettings) -> None:
    active = host.check_output("swapon --show=NAME,SIZE --bytes --noheadings").split("\n")
    swap_files = {line.split()[0]: int(line.split()[1]) for line in active if line.strip()}
    if base.swap_size_mb:
        assert "/swapfile" in swap_files
        # swapon reports the usable size: the file less its one-page header
        assert abs(swap_files["/swapfile"] - base.swap_size_mb * 1024 * 1024) <= 64 * 1024
        assert host.file("/etc/fstab").contains("^/swapfile none swap sw 0 0$")
        assert host.file("/swapfile").mode == 0o600
    else:
        assert "/swapfile" not in swap_files
        assert not host.file("/swapfile").exists


def test_sysctl_values_applied_and_persisted(host: Any, base: BaseLayerSettings) -> None:
    persisted = host.file("/etc/sysctl.d/60-runner-ctl.conf")
    for key, value in base.sysctl.items():
        assert host.sysctl(key) == value
        assert persisted.contains(f"^{key} = {value}$")


def test_data_dir_owned_by_runner(host: Any, base: BaseLayerSettings) -> None:
    data_dir = host.file(base.data_dir)
    assert data_dir.is_directory
    assert data_dir.user == base.runner_user
    assert data_dir.group == base.runner_user
    mount = host.mount_point(base.data_dir)
    if base.data_device:
        assert mount.exists
        assert mount.device == base.data_device
        assert mount.filesystem == base.data_fs_type
        assert host.file("/etc/fstab").contains(f"^{base.data_device} {base.data_dir} {base.data_fs_type} ")
        # Writable by the runner: the point of the volume is the runner's caches.
        assert host.run(f"runuser -u {base.runner_user} -- touch {base.data_dir}/.probe").rc == 0
        host.run(f"rm -f {base.data_dir}/.probe")
    else:
        assert not mount.exists


def test_apt_sources_are_the_configured_ones(host: Any, base: BaseLayerSettings) -> None:
    lines = [
        line
        for line in host.file("/etc/apt/sources.list").content_string.splitlines()
        if line and not line.startswith("#")
    ]
    assert lines == list(base.apt_sources)
