"""The test host's own network namespace, its veth pair and addresses.

Every test host gets one /30 from a dedicated range (default ``10.213.0.0/24``, override
with ``RUNNER_CTL_TESTHOST_SUBNET``): the first address is the controller's end of the
veth pair, the second the host's ``eth0``. The host has no default route, so nothing it
does can leave the controller.
"""

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from runner_ctl._proc import run
from runner_ctl.errors import ConfigError

__all__ = [
    "DEFAULT_SUBNET",
    "HostNetwork",
    "create_network",
    "destroy_network",
    "slot_network",
    "subnet",
]

DEFAULT_SUBNET = "10.213.0.0/24"


def subnet() -> ipaddress.IPv4Network:
    text = os.environ.get("RUNNER_CTL_TESTHOST_SUBNET", DEFAULT_SUBNET)
    try:
        network = ipaddress.IPv4Network(text)
    except ValueError:
        raise ConfigError(
            f"RUNNER_CTL_TESTHOST_SUBNET={text!r} is invalid; expected an IPv4 network such as {DEFAULT_SUBNET}"
        ) from None
    if network.prefixlen > 30:
        raise ConfigError(
            f"RUNNER_CTL_TESTHOST_SUBNET={text!r} is too small; expected /30 or larger, e.g. {DEFAULT_SUBNET}"
        )
    return network


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
    """Remove the namespace and veth pair; absent pieces are fine (teardown is re-runnable)."""
    if _exists("link", net.veth):
        run(["ip", "link", "del", net.veth], what=f"removing veth {net.veth}")
    if _exists("netns", net.netns):
        run(["ip", "netns", "del", net.netns], what=f"removing network namespace {net.netns}")
