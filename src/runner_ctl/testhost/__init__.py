"""Disposable local Debian 12 hosts: debootstrap + systemd-nspawn + veth + a local apt repository.

Addresses come from ``10.213.0.0/24`` (override: ``RUNNER_CTL_TESTHOST_SUBNET``), one /30
per host; caches and host state live under ``<cache>/testhost`` (``RUNNER_CTL_CACHE_DIR``).
"""

from runner_ctl.testhost._host import (
    VOLUME_DEVICE,
    DisposableHost,
    boot_host,
    destroy_host,
    get_host,
    harness_dir,
    host_names,
    list_hosts,
)
from runner_ctl.testhost._images import APT_REPO_MOUNT, APT_SOURCE_LINE, ROOTFS_PACKAGES, repo_packages
from runner_ctl.testhost._network import DEFAULT_SUBNET
from runner_ctl.testhost._prereqs import check_prerequisites

__all__ = [
    "APT_REPO_MOUNT",
    "APT_SOURCE_LINE",
    "DEFAULT_SUBNET",
    "ROOTFS_PACKAGES",
    "VOLUME_DEVICE",
    "DisposableHost",
    "boot_host",
    "check_prerequisites",
    "destroy_host",
    "get_host",
    "harness_dir",
    "host_names",
    "list_hosts",
    "repo_packages",
]
