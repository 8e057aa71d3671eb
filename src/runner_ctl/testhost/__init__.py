"""Disposable local Debian 12 hosts: debootstrap + systemd-nspawn + veth + a local apt repository.

Addresses come from ``10.213.0.0/24`` (override: ``RUNNER_CTL_TESTHOST_SUBNET``), one /30
per host; hosts on one private network (``--network NAME``, like a DigitalOcean VPC) also get
an address from ``10.214.0.0/24`` (override: ``RUNNER_CTL_TESTHOST_PRIVATE_SUBNET``); caches
and host state live under ``<cache>/testhost`` (``RUNNER_CTL_CACHE_DIR``).
"""

from runner_ctl.testhost._host import (
    VOLUME_DEVICE,
    DisposableHost,
    boot_host,
    destroy_host,
    free_host_slots,
    get_host,
    harness_dir,
    host_names,
    list_hosts,
    network_dir,
    network_hosts,
    route_to_controller_address,
)
from runner_ctl.testhost._images import APT_REPO_MOUNT, APT_SOURCE_LINE, ROOTFS_PACKAGES, repo_packages
from runner_ctl.testhost._network import DEFAULT_PRIVATE_SUBNET, DEFAULT_SUBNET, host_capacity, private_subnet, subnet
from runner_ctl.testhost._prereqs import check_prerequisites

__all__ = [
    "APT_REPO_MOUNT",
    "APT_SOURCE_LINE",
    "DEFAULT_PRIVATE_SUBNET",
    "DEFAULT_SUBNET",
    "ROOTFS_PACKAGES",
    "VOLUME_DEVICE",
    "DisposableHost",
    "boot_host",
    "check_prerequisites",
    "destroy_host",
    "free_host_slots",
    "get_host",
    "harness_dir",
    "host_capacity",
    "host_names",
    "list_hosts",
    "network_dir",
    "network_hosts",
    "private_subnet",
    "repo_packages",
    "route_to_controller_address",
    "subnet",
]
