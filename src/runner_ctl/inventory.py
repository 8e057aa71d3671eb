"""Runner hosts for the pyinfra inventories, from OpenTofu's outputs or DigitalOcean's API.

``inventories/production.py`` reads ``bin/tofu -chdir=tofu output -json`` (the module in
``tofu/`` writes its ``pyinfra_inventory`` output); ``inventories/digitalocean.py`` asks
DigitalOcean for the droplets carrying a tag, for operators without access to the state.
Both end in the same ``runner_hosts`` group: ``(name, host data)`` tuples whose host data
uses the keys the layers read (``hostdata.py``), e.g. the cache volume as ``data_device``,
and the droplet's VPC address as ``private_ipv4`` (the fleet's channel to its one deploy
lock service connects to it).

Every failure is a ``RunnerCtlError`` with a one-line message; the inventory files turn it
into pyinfra's one-line exit.
"""

import ipaddress
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner_ctl._proc import run_unchecked
from runner_ctl.errors import (
    ConfigError,
    PrerequisiteError,
    RunnerCtlError,
    ToolMissingError,
    ToolNotExecutableError,
    ToolTimeoutError,
)
from runner_ctl.hostdata import validate_host_data

__all__ = [
    "APPLY_HINT",
    "TOFU_OUTPUT_DISPLAY",
    "VOLUME_DEVICE_PREFIX",
    "RunnerHost",
    "discover_droplet_hosts",
    "hosts_from_tofu_outputs",
    "inventory_exit",
    "private_ipv4",
    "read_tofu_outputs",
    "runner_hosts_group",
    "tofu_output_argv",
    "volume_device",
]

# DigitalOcean exposes an attached volume under this path on the droplet (tofu/main.tf
# relies on the same convention).
VOLUME_DEVICE_PREFIX = "/dev/disk/by-id/scsi-0DO_Volume_"

# What the user sees as the command, whatever absolute paths were actually run.
TOFU_OUTPUT_DISPLAY = "bin/tofu -chdir=tofu output -json"
APPLY_HINT = "run `bin/tofu -chdir=tofu apply` first, see tofu/README.md"

# A remote backend (Spaces) answers in seconds; a hung network should not hang pyinfra.
TOFU_OUTPUT_TIMEOUT = 120.0

# RFC 1918: the ranges a DigitalOcean VPC may use. ipaddress's is_private would also admit the
# documentation ranges (203.0.113.0/24, ...) that stand for public addresses in examples.
_RFC1918 = tuple(ipaddress.IPv4Network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class RunnerHost:
    """One runner host as pyinfra needs it: where to connect and which volume is its cache."""

    name: str
    ssh_hostname: str
    ssh_user: str = "root"
    data_device: str | None = None
    private_ipv4: str | None = None

    def host_data(self) -> dict[str, object]:
        """Host data for pyinfra: connection keys plus the layer keys this source knows."""
        data: dict[str, object] = {"ssh_hostname": self.ssh_hostname, "ssh_user": self.ssh_user}
        if self.data_device is not None:
            data["data_device"] = self.data_device
        if self.private_ipv4 is not None:
            data["private_ipv4"] = self.private_ipv4
        return data


def volume_device(volume_name: str) -> str:
    """The device path of an attached DigitalOcean volume on its droplet."""
    return VOLUME_DEVICE_PREFIX + volume_name


def private_ipv4(value: str, where: str) -> str:
    """``value`` if it is a private (RFC 1918) IPv4 address, as DigitalOcean's VPC ranges are."""
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        address = None
    if address is None or not any(address in network for network in _RFC1918):
        raise ConfigError(
            f"{where}: private_ipv4 = {value!r} is not a private IPv4 address; expected the droplet's VPC "
            "address (ipv4_address_private, e.g. '10.114.0.2')"
        )
    return str(address)


def runner_hosts_group(hosts: Sequence[RunnerHost]) -> list[tuple[str, dict[str, object]]]:
    """The ``runner_hosts`` group of a pyinfra inventory file; host names and private addresses must be unique."""
    seen: set[str] = set()
    addresses: dict[str, str] = {}
    for host in hosts:
        if host.name in seen:
            raise ConfigError(f"two runner hosts are named {host.name!r}; host names must be unique")
        seen.add(host.name)
        if host.private_ipv4 is not None:
            other = addresses.setdefault(host.private_ipv4, host.name)
            if other != host.name:
                # The lock channel would reach the wrong host: a stale state or two VPCs mixed up.
                raise ConfigError(
                    f"runner hosts {other!r} and {host.name!r} share private_ipv4 {host.private_ipv4!r}; "
                    "each droplet has its own VPC address (refresh the OpenTofu state)"
                )
    return [(host.name, host.host_data()) for host in hosts]


# ---- from OpenTofu ------------------------------------------------------------------------


def tofu_output_argv(project_root: Path, tofu: str | None = None) -> list[str]:
    """``bin/tofu -chdir=tofu output -json`` with absolute paths, so any working directory works.

    ``tofu`` replaces ``bin/tofu`` (RUNNER_CTL_TOFU: another OpenTofu, or a test's stand-in).
    """
    executable = tofu or str(project_root / "bin" / "tofu")
    # -no-color: its error text is read back (first_error_line) and shown on one line.
    return [executable, f"-chdir={project_root / 'tofu'}", "output", "-no-color", "-json"]


def _first_error_line(stderr: str) -> str:
    """The summary of tofu's first error diagnostic ("Error: <summary>"), or its first line."""
    lines = [_ANSI.sub("", line).strip(" \t│╷╵") for line in stderr.splitlines()]
    lines = [line for line in lines if line]
    chosen = next((line for line in lines if line.startswith("Error:")), lines[0] if lines else "no error message")
    chosen = chosen.removeprefix("Error:").strip()
    return chosen if len(chosen) <= 200 else chosen[:197] + "..."


def read_tofu_outputs(argv: Sequence[str], *, timeout: float = TOFU_OUTPUT_TIMEOUT) -> dict[str, Any]:
    """Run ``tofu output -json`` once and return its document: ``{name: {sensitive, type, value}}``."""
    env = {
        **os.environ,
        # Never prompt (e.g. for a missing TF_VAR_state_passphrase): pyinfra has no one to
        # answer; fail with tofu's own message instead.
        "TF_INPUT": "0",
    }
    try:
        done = run_unchecked(argv, what=TOFU_OUTPUT_DISPLAY, timeout=timeout, env=env)
    except ToolNotExecutableError:
        raise PrerequisiteError(f"{argv[0]} is not executable") from None
    except ToolMissingError:
        raise PrerequisiteError(
            f"{argv[0]} not found: OpenTofu runs through bin/tofu (or RUNNER_CTL_TOFU names another executable)"
        ) from None
    except ToolTimeoutError:
        raise PrerequisiteError(f"`{TOFU_OUTPUT_DISPLAY}` did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        # tofu fails like this before any apply (no backend initialised yet) and when the
        # state cannot be read (no passphrase, no Spaces keys): show its reason and both fixes.
        raise PrerequisiteError(
            f"`{TOFU_OUTPUT_DISPLAY}` failed: {_first_error_line(done.stderr)} "
            f"(no runner yet? {APPLY_HINT}; reading the state needs TF_VAR_state_passphrase)"
        )
    try:
        document = _json_object(done.stdout)
    except ValueError as error:
        raise ConfigError(f"`{TOFU_OUTPUT_DISPLAY}` printed no JSON object ({error})") from None
    return document


def _json_object(text: str) -> dict[str, Any]:
    """Parse a JSON object (and nothing else); ``ValueError`` with a short reason otherwise."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{error.msg} at line {error.lineno}") from None
    if not isinstance(value, dict):
        raise ValueError(f"a JSON {type(value).__name__}, not an object")
    return value


def _text_field(item: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    value = item.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
        raise ConfigError(f"{where}: {key} = {value!r} is invalid; expected a non-empty string without spaces")
    return value


def _host_from_item(item: object, where: str) -> RunnerHost:
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where} is {type(item).__name__}, not an object with name, ssh_hostname, ...")
    name = _text_field(item, "name", where)
    assert name is not None
    if not _HOST_NAME.match(name):
        raise ConfigError(f"{where}: name = {name!r} is invalid; expected a host name such as 'runner-ctl-1'")
    hostname = _text_field(item, "ssh_hostname", where)
    assert hostname is not None
    user = _text_field(item, "ssh_user", where, required=False) or "root"
    device = _text_field(item, "volume_device", where, required=False)
    if device is not None:
        # The same rule the base layer applies to data_device, and the same message form.
        validate_host_data({"data_device": device}, origin=f"{where} (volume_device)")
    private = _text_field(item, "private_ipv4", where, required=False)
    if private is not None:
        private = private_ipv4(private, where)
    return RunnerHost(name=name, ssh_hostname=hostname, ssh_user=user, data_device=device, private_ipv4=private)


def hosts_from_tofu_outputs(outputs: Mapping[str, Any], output_name: str = "pyinfra_inventory") -> list[RunnerHost]:
    """The runner hosts in a ``tofu output -json`` document's ``pyinfra_inventory`` output."""
    output = outputs.get(output_name)
    if output is None:
        # `tofu output -json` on an empty state prints {} and exits 0: no apply has run yet.
        raise PrerequisiteError(f"the OpenTofu state has no {output_name} output; {APPLY_HINT}")
    if not isinstance(output, Mapping) or "value" not in output:
        raise ConfigError(f"output {output_name} is not in `tofu output -json` form ({{'value': ..., 'type': ...}})")
    items = output["value"]
    if not isinstance(items, list):
        raise ConfigError(f"output {output_name} is {type(items).__name__}, expected a list of runner objects")
    if not items:
        raise PrerequisiteError(f"output {output_name} lists no runner hosts; {APPLY_HINT}")
    return [_host_from_item(item, f"{output_name}[{index}]") for index, item in enumerate(items)]


# ---- from DigitalOcean's API ----------------------------------------------------------------


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    # requests' connection errors run to several hundred characters of pool internals.
    return text if len(text) <= 200 else text[:197] + "..."


def _cache_volume(droplet: Any, volumes: Mapping[str, Any], tag: str) -> str | None:
    """The name of the droplet's cache volume: its only volume, or its only one with ``tag``."""
    ids = [str(volume_id) for volume_id in (droplet.volume_ids or [])]
    missing = [volume_id for volume_id in ids if volume_id not in volumes]
    if missing:
        raise ConfigError(f"droplet {droplet.name}: attached volume {missing[0]} is not in the volume list")
    attached = [volumes[volume_id] for volume_id in ids]
    if len(attached) > 1:
        # tofu/ tags the cache volume like its droplet; other volumes may be attached too.
        attached = [volume for volume in attached if tag in (volume.tags or [])]
    if len(attached) > 1:
        names = ", ".join(sorted(str(volume.name) for volume in attached))
        raise ConfigError(f"droplet {droplet.name}: several volumes tagged {tag!r} ({names}); tag only the cache one")
    return str(attached[0].name) if attached else None


def _host_from_droplet(droplet: Any, volumes: Mapping[str, Any], tag: str) -> RunnerHost:
    name = str(droplet.name)
    if not droplet.ip_address:
        raise ConfigError(f"droplet {name} has no public IPv4 address yet; wait until it is active")
    volume_name = _cache_volume(droplet, volumes, tag)
    return RunnerHost(
        name=name,
        ssh_hostname=str(droplet.ip_address),
        # DigitalOcean's Debian images log in as root with the droplet's SSH keys.
        ssh_user="root",
        data_device=volume_device(volume_name) if volume_name else None,
        # python-digitalocean takes it from the droplet's networks.v4 entry of type "private";
        # a droplet always has one inside a VPC.
        private_ipv4=(
            private_ipv4(str(droplet.private_ip_address), f"droplet {name}") if droplet.private_ip_address else None
        ),
    )


def discover_droplet_hosts(token: str, tag: str, *, end_point: str | None = None) -> list[RunnerHost]:
    """The droplets tagged ``tag``, in name order, with their cache volumes.

    ``end_point`` replaces DigitalOcean's API URL (python-digitalocean also reads
    DIGITALOCEAN_END_POINT); tests point it at a loopback stand-in.
    """
    # Imported here: python-digitalocean is in the operator extra, and only this source needs it.
    import requests

    import digitalocean

    # python-digitalocean sends requests without a timeout unless this (its own setting) is set.
    os.environ.setdefault("PYTHON_DIGITALOCEAN_REQUEST_TIMEOUT_SEC", "30")
    settings: dict[str, Any] = {"token": token}
    if end_point:
        settings["end_point"] = end_point
    try:
        manager = digitalocean.Manager(**settings)
        droplets = manager.get_all_droplets(tag_name=tag)
        needs_volumes = any(droplet.volume_ids for droplet in droplets)
        volumes = {str(volume.id): volume for volume in manager.get_all_volumes()} if needs_volumes else {}
    except digitalocean.DataReadError as error:
        # The API's own message, e.g. "Unable to authenticate you" for a bad token.
        raise PrerequisiteError(
            f"DigitalOcean API refused the request: {_one_line(error)} (check DIGITALOCEAN_TOKEN)"
        ) from None
    except (digitalocean.Error, requests.RequestException) as error:
        raise PrerequisiteError(
            f"DigitalOcean API request failed: {type(error).__name__}: {_one_line(error)}"
        ) from None
    if not droplets:
        raise PrerequisiteError(f"no droplets are tagged {tag!r} (RUNNER_CTL_DO_TAG); {APPLY_HINT}")
    hosts = [_host_from_droplet(droplet, volumes, tag) for droplet in droplets]
    return sorted(hosts, key=lambda host: host.name)


def inventory_exit(source: str, error: RunnerCtlError) -> SystemExit:
    """The one-line exit an inventory file raises: pyinfra prints a SystemExit's message as is."""
    return SystemExit(f"{source}: {error}")
