"""Group data: the typed, validated settings that configure the host layers.

pyinfra hands every deploy a flat mapping of host data (``inventories/group_data/*.py``
merged with per-host data). This module is the one place that says which keys exist,
what form each takes and what its default is; the layers in ``deploys/`` read their
settings through it, and ``runner-ctl rehearse`` validates before any host is touched.
"""

import difflib
import ipaddress
import re
import runpy
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from runner_ctl.errors import ConfigError

__all__ = [
    "LAYER_APT_PACKAGES",
    "LAYER_ORDER",
    "NON_LAYER_KEYS",
    "BaseLayerSettings",
    "DeployLockSettings",
    "HostSettings",
    "LockToken",
    "available_layers",
    "load_group_data",
    "validate_host_data",
]

# Canonical order in which runner_host.py applies layers; a layer's name is its file stem
# under deploys/. Later layers rely on earlier ones (the runner needs Bazel's user and dirs).
LAYER_ORDER: tuple[str, ...] = (
    "base",
    "bazel",
    "buildbuddy",
    "github_runner",
    "gitlab_runner",
    "deploy_lock",
)

# What each layer installs with apt. The test host's local apt repository is built from the
# union of these, so a layer that installs a package not listed here fails its rehearsal.
LAYER_APT_PACKAGES: dict[str, tuple[str, ...]] = {
    "base": ("nftables", "openssh-server", "systemd-timesyncd", "unattended-upgrades"),
    # git: CI jobs' deploys answer the stale guard's ancestry questions on the host.
    "deploy_lock": ("git", "python3", "python3-venv"),
}

_SYSCTL_KEY = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_-]+)+$")
_JOURNAL_SIZE = re.compile(r"^[1-9][0-9]*[KMGT]?$")
_UNIX_NAME = r"^[a-z_][a-z0-9_-]{0,31}$"
# Paths reach shell commands (mount, fstab) and config files: letters, digits and . _ + @ - /
# only, so no value can carry whitespace, a newline, a quote or a shell metacharacter.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._+@/-]*$")

# Host data keys that are not layer settings, yet legitimately sit next to them.
# pyinfra's own: each connector's ``data_meta`` and the global operation arguments, which
# pyinfra reads from host data (tests/test_hostdata_keys.py keeps this list in step with
# the installed pyinfra). Ours: what the inventories in inventories/ set per host.
PYINFRA_DATA_KEYS: frozenset[str] = frozenset(
    {
        # connectors' data_meta (ssh, docker/podman, fake; the others have none)
        "ssh_allow_agent",
        "ssh_config_file",
        "ssh_connect_retries",
        "ssh_connect_retry_max_delay",
        "ssh_connect_retry_min_delay",
        "ssh_file_transfer_protocol",
        "ssh_forward_agent",
        "ssh_hostname",
        "ssh_key",
        "ssh_key_password",
        "ssh_known_hosts_file",
        "ssh_look_for_keys",
        "ssh_paramiko_connect_kwargs",
        "ssh_password",
        "ssh_port",
        "ssh_strict_host_key_checking",
        "ssh_user",
        "docker_architecture",
        "docker_identifier",
        "docker_platform",
        "fake_delay",
        "fake_delay_jitter",
        "fake_responses",
        # global operation arguments settable as host data
        "_chdir",
        "_continue_on_error",
        "_doas",
        "_doas_user",
        "_dzdo",
        "_dzdo_user",
        "_env",
        "_get_pty",
        "_if",
        "_ignore_errors",
        "_parallel",
        "_preserve_su_env",
        "_preserve_sudo_env",
        "_retries",
        "_retry_delay",
        "_retry_until",
        "_run_once",
        "_serial",
        "_shell_executable",
        "_stdin",
        "_su_password",
        "_su_shell",
        "_su_user",
        "_success_exit_codes",
        "_sudo",
        "_sudo_password",
        "_sudo_user",
        "_temp_dir",
        "_timeout",
        "_use_su_login",
        "_use_sudo_login",
    }
)
# Set by our inventories: private_ipv4 by production/digitalocean (informational);
# secret_standins by inventories/testhost.py (see runner_ctl.secretrefs).
INVENTORY_KEYS: frozenset[str] = frozenset({"private_ipv4", "secret_standins"})
NON_LAYER_KEYS: frozenset[str] = PYINFRA_DATA_KEYS | INVENTORY_KEYS

# What the user is told when a key is wrong: the expected form, with an example.
EXPECTED_FORM: dict[str, str] = {
    "layers": f"a list of layer names from {', '.join(LAYER_ORDER)} (e.g. ['base'])",
    "apt_sources": "a list of one-line apt sources (e.g. ['deb http://deb.debian.org/debian bookworm main'])",
    "runner_user": "a Unix user name: lower case letters, digits, '_' or '-' (e.g. 'runner')",
    "runner_nofile": "a whole number of open files between 1024 and 1073741816 (e.g. 1048576)",
    "sshd_port": "a TCP port number from 1 to 65535 (e.g. 22)",
    "sshd_permit_root_login": "'prohibit-password' (root by key only) or 'no'",
    "sshd_allow_cidrs": "a non-empty list of CIDRs (e.g. ['203.0.113.0/24', '2001:db8::/32'])",
    "swap_size_mb": "a whole number of MiB, 0 for no swap (e.g. 2048)",
    "journald_max_use": "a size with an optional K/M/G/T suffix (e.g. '1G')",
    "sysctl": "a mapping of sysctl key to whole number (e.g. {'fs.inotify.max_user_watches': 1048576})",
    "data_dir": "an absolute path of letters, digits and . _ + @ - / (e.g. '/var/lib/ci')",
    "data_device": (
        "None, or a device path of letters, digits and . _ + @ - / (e.g. '/dev/disk/by-id/scsi-0DO_Volume_ci')"
    ),
    "data_fs_type": "'ext4' or 'xfs'",
    "unattended_upgrades": "True or False",
    "deploy_lock_listen": "a loopback HOST:PORT (e.g. '127.0.0.1:7465'); operators reach it through SSH",
    "deploy_lock_tokens": (
        "a list of {'name': ..., 'secret': 'env:NAME|file:PATH|cmd:COMMAND|generated:NAME', 'admin': bool}"
    ),
    "deploy_lock_ci_token": "the name of one of deploy_lock_tokens (e.g. 'ci')",
}


def _non_empty_tuple(value: Any) -> tuple[Any, ...]:
    """Group data lists arrive as lists; the models keep tuples (they are frozen)."""
    if isinstance(value, list):
        value = tuple(value)
    if not isinstance(value, tuple) or not value:
        raise ValueError("empty or not a list")
    return value


def _check_safe_path(value: str) -> None:
    if not _SAFE_PATH.fullmatch(value) or "/../" in f"{value}/":
        raise ValueError("whitespace, '..', quotes and shell metacharacters are not allowed in a path")


class BaseLayerSettings(BaseModel):
    """Settings of the base layer (``deploys/base.py``).

    + apt_sources: apt source lines written to /etc/apt/sources.list (the test host points
      these at its local repository; production uses Debian's mirrors)
    + runner_user: the account CI jobs run as: no password, no sudo
    + runner_nofile: open-file limit (soft and hard) for ``runner_user``
    + sshd_port: port sshd listens on and the firewall opens
    + sshd_permit_root_login: sshd PermitRootLogin; never ``yes`` (passwords are always off)
    + sshd_allow_cidrs: source networks allowed to reach SSH through the host firewall
    + swap_size_mb: size of /swapfile in MiB; 0 removes it
    + journald_max_use: journald SystemMaxUse cap
    + sysctl: kernel settings, persisted in /etc/sysctl.d/60-runner-ctl.conf
    + data_dir: the persistent data directory for caches and workspaces
    + data_device: block device mounted at ``data_dir`` (the DigitalOcean volume), or None
    + data_fs_type: filesystem type of ``data_device``
    + unattended_upgrades: install security updates automatically
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    apt_sources: tuple[str, ...] = (
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    )
    runner_user: str = Field("runner", pattern=_UNIX_NAME)
    runner_nofile: int = Field(1_048_576, ge=1024, le=1_073_741_816)
    sshd_port: int = Field(22, ge=1, le=65535)
    sshd_permit_root_login: Literal["prohibit-password", "no"] = "prohibit-password"
    sshd_allow_cidrs: tuple[str, ...] = ("0.0.0.0/0", "::/0")
    swap_size_mb: int = Field(2048, ge=0, le=1_048_576)
    journald_max_use: str = Field("1G", pattern=_JOURNAL_SIZE.pattern)
    sysctl: dict[str, int] = Field(
        default_factory=lambda: {
            # Bazel's --watchfs and IDE-style file watchers exhaust the Debian defaults
            # (8192 watches, 128 instances) on a large workspace.
            "fs.inotify.max_user_watches": 1_048_576,
            "fs.inotify.max_user_instances": 8192,
            "fs.inotify.max_queued_events": 65536,
        }
    )
    data_dir: str = "/var/lib/ci"
    data_device: str | None = None
    data_fs_type: Literal["ext4", "xfs"] = "ext4"
    unattended_upgrades: bool = True

    @field_validator("apt_sources", mode="before")
    @classmethod
    def _apt_sources(cls, value: Any) -> Any:
        value = _non_empty_tuple(value)
        for line in value:
            if not isinstance(line, str) or "\n" in line or not line.startswith(("deb ", "deb-src ")):
                raise ValueError(f"not a one-line apt source: {line!r}")
        return value

    @field_validator("sshd_allow_cidrs", mode="before")
    @classmethod
    def _cidrs(cls, value: Any) -> Any:
        value = _non_empty_tuple(value)
        normalised = []
        for item in value:
            if not isinstance(item, str):
                raise ValueError(f"not a CIDR: {item!r}")
            try:
                normalised.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError as error:
                raise ValueError(f"not a CIDR: {item!r}") from error
        return tuple(normalised)

    @field_validator("sysctl")
    @classmethod
    def _sysctl(cls, value: dict[str, int]) -> dict[str, int]:
        for key in value:
            if not _SYSCTL_KEY.fullmatch(key):
                raise ValueError(f"not a sysctl key: {key!r}")
        return value

    @field_validator("data_dir")
    @classmethod
    def _data_dir(cls, value: str) -> str:
        if not value.startswith("/") or value.rstrip("/") in ("", "/"):
            raise ValueError(f"not an absolute directory: {value!r}")
        _check_safe_path(value)
        return value.rstrip("/")

    @field_validator("data_device")
    @classmethod
    def _data_device(cls, value: str | None) -> str | None:
        if value is not None:
            if not value.startswith("/dev/"):
                raise ValueError(f"not a device path: {value!r}")
            _check_safe_path(value)
        return value

    @property
    def sshd_allow_ipv4(self) -> list[str]:
        return [c for c in self.sshd_allow_cidrs if ipaddress.ip_network(c).version == 4]

    @property
    def sshd_allow_ipv6(self) -> list[str]:
        return [c for c in self.sshd_allow_cidrs if ipaddress.ip_network(c).version == 6]


class LockToken(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
    secret: str = Field(pattern=r"^(env|file|cmd|generated):.+$")
    admin: bool = False


class DeployLockSettings(BaseModel):
    """Settings of the deploy lock layer (``deploys/deploy_lock.py``).

    + deploy_lock_listen: where the service listens: loopback only (CI jobs on the host and
      operators through ``--via-ssh`` reach it; nothing else should)
    + deploy_lock_tokens: API tokens as secret references, resolved on the operator's machine
    + deploy_lock_ci_token: the token CI jobs on the host use (readable by ``runner_user``)
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    deploy_lock_listen: str = "127.0.0.1:7465"
    deploy_lock_tokens: tuple[LockToken, ...] = (
        LockToken(name="ci", secret="generated:lock-ci"),  # noqa: S106 - references, not secrets
        LockToken(name="ops", secret="generated:lock-ops", admin=True),  # noqa: S106
    )
    deploy_lock_ci_token: str = "ci"  # noqa: S105 - a token name

    @field_validator("deploy_lock_listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"not HOST:PORT: {value!r}")
        try:
            loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise ValueError(f"{host} is not a loopback address")
        return value

    @field_validator("deploy_lock_tokens", mode="before")
    @classmethod
    def _tokens(cls, value: Any) -> Any:
        value = _non_empty_tuple(value)
        names = [t.get("name") if isinstance(t, dict) else getattr(t, "name", None) for t in value]
        if len(set(names)) != len(names):
            raise ValueError("a token name is used twice")
        return value

    @model_validator(mode="after")
    def _ci_token_exists(self) -> "DeployLockSettings":
        if self.deploy_lock_ci_token not in {t.name for t in self.deploy_lock_tokens}:
            raise ValueError(f"deploy_lock_ci_token {self.deploy_lock_ci_token!r} names no token")
        return self


class HostSettings(BaseLayerSettings, DeployLockSettings):
    """Everything a runner host is configured from: the layer list plus each layer's keys.

    + layers: which layers ``deploys/runner_host.py`` applies, in the canonical order
    """

    layers: tuple[str, ...] = ("base", "deploy_lock")

    @field_validator("layers", mode="before")
    @classmethod
    def _layers(cls, value: Any) -> Any:
        value = _non_empty_tuple(value)
        unknown = [name for name in value if name not in LAYER_ORDER]
        if unknown:
            raise ValueError(f"unknown layer {unknown[0]!r}")
        if "base" not in value:
            raise ValueError("'base' is required: every other layer builds on it")
        return tuple(name for name in LAYER_ORDER if name in value)


def _key_from_message(message: str) -> str:
    """Model-level checks name their key first in the message."""
    words = message.removeprefix("Value error, ").split()
    return words[0] if words and words[0] in EXPECTED_FORM else "?"


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _refuse_unknown_keys(data: Mapping[str, Any], origin: str) -> None:
    """A misspelled key would otherwise leave its setting at the default, silently."""
    known = set(HostSettings.model_fields)
    unknown = sorted(key for key in data if key not in known and key not in NON_LAYER_KEYS)
    if not unknown:
        return
    key = unknown[0]
    close = difflib.get_close_matches(str(key), sorted(known | NON_LAYER_KEYS), n=1)
    hint = f"did you mean {close[0]!r}?" if close else "remove it"
    raise ConfigError(
        f"{origin}: unknown key {_describe(key)} ({hint}); the keys are documented in inventories/group_data/all.py"
    )


def validate_host_data(
    data: Mapping[str, Any], *, available: frozenset[str] | None = None, origin: str = "group data"
) -> HostSettings:
    """Validate host data, raising a one-line ``ConfigError`` naming the key and its form.

    ``available`` is the set of layers that exist in ``deploys/``; a known layer that this
    checkout does not have yet is as wrong as an unknown one.
    """
    _refuse_unknown_keys(data, origin)
    layer_data = {key: value for key, value in data.items() if key not in NON_LAYER_KEYS}
    try:
        settings = HostSettings.model_validate(layer_data)
    except ValidationError as error:
        first = error.errors()[0]
        key = str(first["loc"][0]) if first["loc"] else _key_from_message(first["msg"])
        got = data.get(key, first.get("input"))
        form = EXPECTED_FORM.get(key, "a valid value")
        detail = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{origin}: {key} = {_describe(got)} is invalid ({detail}); expected {form}") from None
    if available is not None:
        missing = [name for name in settings.layers if name not in available]
        if missing:
            raise ConfigError(
                f"{origin}: layers = {_describe(list(data.get('layers', [])))} is invalid "
                f"(layer {missing[0]!r} has no deploys/{missing[0]}.py in this checkout); "
                f"expected a list of layer names from {', '.join(sorted(available))}"
            )
    return settings


def available_layers(project_root: Path) -> frozenset[str]:
    """Layer names that this checkout can apply: known layers with a file in deploys/."""
    return frozenset(name for name in LAYER_ORDER if (project_root / "deploys" / f"{name}.py").is_file())


def load_group_data(group_data_dir: Path, groups: tuple[str, ...] = ("all", "runner_hosts")) -> dict[str, Any]:
    """Read pyinfra group data files the way pyinfra does: public module-level names.

    Later groups override earlier ones, as pyinfra's group precedence does for a host in
    both ``all`` and ``runner_hosts``.
    """
    merged: dict[str, Any] = {}
    for group in groups:
        path = group_data_dir / f"{group}.py"
        if not path.is_file():
            continue
        try:
            namespace = runpy.run_path(str(path))
        except Exception as error:  # any error in a user's data file is a config error
            raise ConfigError(f"{path}: cannot be loaded ({type(error).__name__}: {error})") from None
        for name, value in namespace.items():
            if name.startswith("_") or callable(value) or type(value).__name__ == "module":
                continue
            merged[name] = value
    return merged
