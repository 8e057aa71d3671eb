"""The test host's own network namespace, its veth pair and addresses.

Every test host gets one /30 from a dedicated range (default ``10.213.0.0/24``, override
with ``RUNNER_CTL_TESTHOST_SUBNET``): the first address is the controller's end of the
veth pair, the second the host's ``eth0``. The host has no default route, so nothing it
does can leave the controller.

Hosts started with ``--network NAME`` also share a private network, as DigitalOcean's VPC
does: a bridge ``br0`` in a network namespace of its own (``rctnet-NAME``, made by the
network's first host, removed with its last) and one more veth per host, ``eth1`` inside
the host. Their ``eth1`` addresses come from a second range (default ``10.214.0.0/24``,
override with ``RUNNER_CTL_TESTHOST_PRIVATE_SUBNET``) that must not overlap the first. The
bridge has no address and the controller is not on it, so the hosts reach each other and
still nothing beyond the controller.
"""

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from runner_ctl._proc import run, run_unchecked
from runner_ctl.errors import ConfigError

__all__ = [
    "DEFAULT_PRIVATE_SUBNET",
    "DEFAULT_SUBNET",
    "HostNetwork",
    "attach_private",
    "create_network",
    "destroy_network",
    "destroy_private_network",
    "ensure_private_network",
    "host_capacity",
    "network_netns",
    "private_network_exists",
    "private_subnet",
    "route_to_controller",
    "slot_network",
    "subnet",
]

DEFAULT_SUBNET = "10.213.0.0/24"
DEFAULT_PRIVATE_SUBNET = "10.214.0.0/24"
PRIVATE_SUBNET_ENV = "RUNNER_CTL_TESTHOST_PRIVATE_SUBNET"
# Inside a private network's own namespace: the bridge, and each host's port on it.
BRIDGE = "br0"


def _range(variable: str, default: str) -> ipaddress.IPv4Network:
    text = os.environ.get(variable, default)
    try:
        network = ipaddress.IPv4Network(text)
    except ValueError:
        raise ConfigError(f"{variable}={text!r} is invalid; expected an IPv4 network such as {default}") from None
    if network.prefixlen > 30:
        raise ConfigError(f"{variable}={text!r} is too small; expected /30 or larger, e.g. {default}")
    return network


def subnet() -> ipaddress.IPv4Network:
    return _range("RUNNER_CTL_TESTHOST_SUBNET", DEFAULT_SUBNET)


def private_subnet() -> ipaddress.IPv4Network:
    """The range private networks take their addresses from; each network uses all of it."""
    network = _range(PRIVATE_SUBNET_ENV, DEFAULT_PRIVATE_SUBNET)
    if network.overlaps(subnet()):
        raise ConfigError(
            f"{PRIVATE_SUBNET_ENV}={network} overlaps the controller range {subnet()}; "
            f"pick a range apart from it, e.g. {DEFAULT_PRIVATE_SUBNET}"
        )
    return network


def host_capacity() -> int:
    """How many test hosts the ranges hold at once: one /30 each, one private address each."""
    return min(subnet().num_addresses // 4, private_subnet().num_addresses - 2)


@dataclass(frozen=True)
class HostNetwork:
    slot: int
    netns: str
    veth: str
    controller_address: str
    host_address: str
    prefixlen: int = 30


def slot_network(slot: int, name: str) -> HostNetwork:
    pairs = list(subnet().subnets(new_prefix=30))
    if not 0 <= slot < len(pairs):
        raise ConfigError(
            f"no free test host address in {subnet()} ({len(pairs)} hosts at most): "
            "run 'runner-ctl testhost down --all' or set a larger RUNNER_CTL_TESTHOST_SUBNET"
        )
    first, second = list(pairs[slot].hosts())
    return HostNetwork(
        slot=slot,
        netns=f"runner-ctl-{name}",
        veth=f"rct-{name}",
        controller_address=str(first),
        host_address=str(second),
    )


def create_network(net: HostNetwork) -> None:
    what = f"creating network namespace {net.netns}"
    run(["ip", "netns", "add", net.netns], what=what)
    run(
        ["ip", "link", "add", net.veth, "type", "veth", "peer", "name", "eth0", "netns", net.netns],
        what=what,
    )
    run(
        ["ip", "addr", "add", f"{net.controller_address}/{net.prefixlen}", "dev", net.veth],
        what=what,
    )
    run(["ip", "link", "set", net.veth, "up"], what=what)
    run(
        [
            "ip",
            "-n",
            net.netns,
            "addr",
            "add",
            f"{net.host_address}/{net.prefixlen}",
            "dev",
            "eth0",
        ],
        what=what,
    )
    run(["ip", "-n", net.netns, "link", "set", "eth0", "up"], what=what)
    run(["ip", "-n", net.netns, "link", "set", "lo", "up"], what=what)


def _exists(kind: str, name: str) -> bool:
    if kind == "netns":
        return Path(f"/run/netns/{name}").exists()
    return Path(f"/sys/class/net/{name}").exists()


def destroy_network(net: HostNetwork) -> None:
    """Remove the namespace and veth pairs; absent pieces are fine (teardown is re-runnable)."""
    if _exists("link", net.veth):
        run(["ip", "link", "del", net.veth], what=f"removing veth {net.veth}")
    port = _private_port(net)
    if _exists("link", port):  # left in the controller's namespace by an interrupted attach
        run(["ip", "link", "del", port], what=f"removing veth {port}")
    if _exists("netns", net.netns):
        # Deleted here, not with the namespace (which the kernel frees later): the bridge must
        # have lost this port by the time teardown asks whether the network is empty.
        run_unchecked(["ip", "-n", net.netns, "link", "del", "eth1"], what="removing eth1", timeout=30)
        run(["ip", "netns", "del", net.netns], what=f"removing network namespace {net.netns}")


def network_netns(network: str) -> str:
    return f"rctnet-{network}"


def private_network_exists(network: str) -> bool:
    return _exists("netns", network_netns(network))


def ensure_private_network(network: str) -> None:
    """The network's bridge namespace, made by its first host (the caller holds the build lock)."""
    netns = network_netns(network)
    if _exists("netns", netns):
        return
    what = f"creating private network {network}"
    run(["ip", "netns", "add", netns], what=what)
    run(["ip", "-n", netns, "link", "add", BRIDGE, "type", "bridge"], what=what)
    run(["ip", "-n", netns, "link", "set", BRIDGE, "up"], what=what)


def _private_port(net: HostNetwork) -> str:
    return f"rcp-{net.netns.removeprefix('runner-ctl-')}"


def attach_private(net: HostNetwork, network: str, address: str) -> None:
    """Give the host ``eth1`` with ``address`` on the network's bridge."""
    netns = network_netns(network)
    port = _private_port(net)
    what = f"attaching {net.netns} to private network {network}"
    run(["ip", "link", "add", port, "type", "veth", "peer", "name", "eth1", "netns", net.netns], what=what)
    run(["ip", "link", "set", port, "netns", netns], what=what)
    run(["ip", "-n", netns, "link", "set", port, "master", BRIDGE, "up"], what=what)
    prefixlen = private_subnet().prefixlen
    run(["ip", "-n", net.netns, "addr", "add", f"{address}/{prefixlen}", "dev", "eth1"], what=what)
    run(["ip", "-n", net.netns, "link", "set", "eth1", "up"], what=what)


def route_to_controller(net: HostNetwork, address: str) -> None:
    """Route ``address``, one of the controller's own, through this host's veth (still only the controller)."""
    what = f"routing {net.netns} to the controller's {address}"
    run(
        ["ip", "-n", net.netns, "route", "replace", f"{address}/32", "via", net.controller_address, "dev", "eth0"],
        what=what,
    )


def destroy_private_network(network: str) -> None:
    """Remove the bridge namespace (its last host is gone; absent is fine)."""
    if _exists("netns", network_netns(network)):
        run(["ip", "netns", "del", network_netns(network)], what=f"removing private network {network}")
