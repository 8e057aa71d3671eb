"""Base host layer: the hardened Debian 12 host every other layer builds on.

Group data keys (defaults in ``runner_ctl.layers.base.BaseLayerSettings``, documented values
in ``inventories/group_data/all.py``):

+ apt_sources: apt source lines for /etc/apt/sources.list
+ runner_user: the account CI jobs run as (no password, no sudo)
+ runner_nofile: open-file limit for ``runner_user``
+ sshd_port / sshd_permit_root_login / sshd_allow_cidrs: sshd and firewall settings
+ swap_size_mb: /swapfile size in MiB, 0 for none
+ journald_max_use: journald size cap
+ sysctl: kernel settings (inotify limits for Bazel)
+ data_dir / data_device / data_fs_type: the persistent data directory and its volume
+ unattended_upgrades: automatic security updates

Example:

.. code:: python

    from deploys.base import base

    base()
"""

import io
import shlex
from pathlib import Path

from pyinfra.api.deploy import deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.operation import OperationMeta
from pyinfra.context import host, inventory
from pyinfra.facts.files import File
from pyinfra.facts.server import Mounts, Users
from pyinfra.operations import apt, files, server, systemd

from runner_ctl.layerkit import (
    ActiveSwaps,
    host_settings,
    install_validated,
    render_template,
    settings_defaults,
)
from runner_ctl.layers.base import SPEC, BaseLayerSettings
from runner_ctl.layers.deploy_lock import private_ipv4

TEMPLATES = Path(__file__).resolve().parents[1] / "templates" / "base"
SWAP_FILE = "/swapfile"
SSHD_DROP_IN = "/etc/ssh/sshd_config.d/10-runner-ctl.conf"
SYSCTL_FILE = "/etc/sysctl.d/60-runner-ctl.conf"


def _put(label: str, template: str, dest: str, settings: BaseLayerSettings) -> OperationMeta:
    """Render a template from templates/base and upload it as a root-owned 0644 file."""
    content = render_template(TEMPLATES / template, **_template_values(settings))
    return files.put(name=label, src=io.StringIO(content), dest=dest, user="root", group="root", mode="644")


def _template_values(settings: BaseLayerSettings) -> dict[str, object]:
    values: dict[str, object] = settings.model_dump()
    values["sshd_allow_ipv4"] = settings.sshd_allow_ipv4
    values["sshd_allow_ipv6"] = settings.sshd_allow_ipv6
    # The fleet's own hosts reach sshd across the private network whatever sshd_allow_cidrs
    # says: the deploy lock's forward (deploys/deploy_lock.py) is an SSH connection between them.
    try:
        values["fleet_ipv4"] = sorted(
            {private_ipv4(o.name, o.data.get("private_ipv4")) for o in inventory if o.data.get("private_ipv4")}
        )
    except ValueError as error:
        raise PyinfraError(str(error)) from None
    return values


def _apt(settings: BaseLayerSettings) -> None:
    sources = _put("Set apt sources", "sources.list.j2", "/etc/apt/sources.list", settings)
    apt.update(name="Refresh apt lists after a source change", _if=sources.did_change)
    apt.update(name="Refresh apt lists older than a day", cache_time=86400)
    apt.packages(
        name="Install base packages",
        packages=list(SPEC.apt_packages),
        no_recommends=True,
    )


def _runner_user(settings: BaseLayerSettings) -> None:
    name = settings.runner_user
    server.user(  # noqa: S604 - pyinfra operation arguments, not a subprocess shell
        name=f"Create the {name} user (no password, no sudo)",
        user=name,
        home=f"/home/{name}",
        shell="/bin/bash",
        create_home=True,
    )
    groups = host.get_fact(Users).get(name, {}).get("groups", [])
    privileged = [group for group in ("sudo", "admin", "wheel") if group in groups]
    if privileged:
        server.shell(
            name=f"Remove {name} from privileged groups",
            commands=[shlex.join(["gpasswd", "-d", name, group]) for group in privileged],
        )
    _put(
        f"Open-file limits for {name}",
        "limits.conf.j2",
        "/etc/security/limits.d/60-runner-ctl.conf",
        settings,
    )


def _sshd(settings: BaseLayerSettings) -> None:
    install_validated(
        label="sshd hardening drop-in",
        dest=SSHD_DROP_IN,
        content=render_template(TEMPLATES / "sshd.conf.j2", **_template_values(settings)),
        validate="sshd -t",
        activate="systemctl reload ssh.service",
    )


def _firewall(settings: BaseLayerSettings) -> None:
    install_validated(
        label="nftables ruleset",
        dest="/etc/nftables.conf",
        content=render_template(TEMPLATES / "nftables.conf.j2", **_template_values(settings)),
        validate="nft -c -f /etc/nftables.conf",
        activate="nft -f /etc/nftables.conf",
        mode="755",
    )
    systemd.service(name="Load the firewall at boot", service="nftables.service", running=True, enabled=True)


def _updates_and_time(settings: BaseLayerSettings) -> None:
    _put("Periodic apt runs", "20auto-upgrades.j2", "/etc/apt/apt.conf.d/20auto-upgrades", settings)
    _put(
        "Unattended upgrades: security only",
        "52runner-ctl-unattended-upgrades.j2",
        "/etc/apt/apt.conf.d/52runner-ctl-unattended-upgrades",
        settings,
    )
    systemd.service(
        name="Enable unattended-upgrades",
        service="unattended-upgrades.service",
        running=None,
        enabled=settings.unattended_upgrades,
    )
    # timesyncd refuses to run inside a container (ConditionVirtualization=!container), so
    # the layer asks only that it is enabled; on a VM it starts at install and at boot.
    systemd.service(
        name="Enable systemd-timesyncd",
        service="systemd-timesyncd.service",
        running=None,
        enabled=True,
    )


def _journald(settings: BaseLayerSettings) -> None:
    files.directory(name="journald drop-in directory", path="/etc/systemd/journald.conf.d", mode="755")
    cap = _put(
        "Cap the journal size",
        "journald.conf.j2",
        "/etc/systemd/journald.conf.d/60-runner-ctl.conf",
        settings,
    )
    systemd.service(
        name="Restart journald for the new cap",
        service="systemd-journald.service",
        running=None,
        restarted=True,
        _if=cap.did_change,
    )


def _swap(settings: BaseLayerSettings) -> None:
    # SWAP_FILE is a constant without shell metacharacters and size a validated int.
    size = settings.swap_size_mb
    active = SWAP_FILE in host.get_fact(ActiveSwaps)
    existing = host.get_fact(File, path=SWAP_FILE)
    if size == 0:
        if active:
            server.shell(name="Turn off the swap file", commands=[f"swapoff {SWAP_FILE}"])
        if existing:
            files.file(name="Remove the swap file", path=SWAP_FILE, present=False)
        files.line(
            name="Drop the swap file from fstab",
            path="/etc/fstab",
            line=f"^{SWAP_FILE} ",
            present=False,
        )
        return
    if not existing or existing.get("size") != size * 1024 * 1024:
        server.shell(
            name=f"Create a {size} MiB swap file",
            commands=[
                # Test hosts share one kernel, so /proc/swaps may list another host's file by
                # this path: only a file that exists here can be this host's to turn off.
                f"if [ -e {SWAP_FILE} ] && grep -q '^{SWAP_FILE} ' /proc/swaps; then swapoff {SWAP_FILE}; fi",
                f"rm -f {SWAP_FILE} {SWAP_FILE}.new",
                # Made under a new name: mkswap refuses a path /proc/swaps lists, and on a shared
                # kernel that may be another test host's file.
                f"fallocate -l {size}M {SWAP_FILE}.new"
                f" || dd if=/dev/zero of={SWAP_FILE}.new bs=1M count={size} status=none",
                f"chmod 600 {SWAP_FILE}.new",
                f"mkswap {SWAP_FILE}.new",
                f"mv {SWAP_FILE}.new {SWAP_FILE}",
                f"swapon {SWAP_FILE}",
            ],
        )
    elif not active:
        server.shell(name="Turn on the swap file", commands=[f"swapon {SWAP_FILE}"])
    files.line(
        name="Swap file in fstab",
        path="/etc/fstab",
        line=f"^{SWAP_FILE} .*",
        replace=f"{SWAP_FILE} none swap sw 0 0",
    )


def _sysctl(settings: BaseLayerSettings) -> None:
    for key, value in sorted(settings.sysctl.items()):
        server.sysctl(name=f"sysctl {key}", key=key, value=value, persist=True, persist_file=SYSCTL_FILE)


def _data_dir(settings: BaseLayerSettings) -> None:
    # Validated (layers/base.py: no whitespace or metacharacters) and still quoted where a shell sees it.
    path = settings.data_dir
    if settings.data_device:
        files.directory(name=f"Mount point {path}", path=path, mode="755")
        files.line(
            name=f"{path} in fstab",
            path="/etc/fstab",
            line=rf"^\S+\s+{path}\s.*",
            replace=f"{settings.data_device} {path} {settings.data_fs_type} defaults,nofail,discard,noatime 0 2",
        )
        if path not in host.get_fact(Mounts):
            server.shell(name=f"Mount {settings.data_device} at {path}", commands=[shlex.join(["mount", path])])
    files.directory(
        name=f"Persistent data directory {path}",
        path=path,
        user=settings.runner_user,
        group=settings.runner_user,
        mode="755",
    )


@deploy("base", data_defaults=settings_defaults())
def base() -> None:
    """Configure the base layer on the current host."""
    settings = host_settings().of(BaseLayerSettings)
    _apt(settings)
    _runner_user(settings)
    _sshd(settings)
    _firewall(settings)
    _updates_and_time(settings)
    _journald(settings)
    _swap(settings)
    _sysctl(settings)
    _data_dir(settings)
