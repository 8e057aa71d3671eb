"""The base layer's spec (``deploys/base.py``): the hardened Debian 12 host every other layer builds on."""

import ipaddress
import re
from typing import Any, Literal

from pydantic import Field, field_validator

from runner_ctl.layers._spec import LayerSettings, LayerSpec, check_safe_path, non_empty_tuple

__all__ = ["SPEC", "BaseLayerSettings"]

_SYSCTL_KEY = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_-]+)+$")
_JOURNAL_SIZE = re.compile(r"^[1-9][0-9]*[KMGT]?$")
_UNIX_NAME = r"^[a-z_][a-z0-9_-]{0,31}$"


def _form(text: str) -> dict[str, Any]:
    return {"form": text}


class BaseLayerSettings(LayerSettings):
    """Settings of the base layer."""

    apt_sources: tuple[str, ...] = Field(
        (
            "deb http://deb.debian.org/debian bookworm main",
            "deb http://deb.debian.org/debian bookworm-updates main",
            "deb http://deb.debian.org/debian-security bookworm-security main",
        ),
        description="`/etc/apt/sources.list` (rehearsals use the test host's local repository)",
        examples=[["deb http://deb.debian.org/debian bookworm main"]],
        json_schema_extra=_form("a list of one-line apt sources"),
    )
    runner_user: str = Field(
        "runner",
        pattern=_UNIX_NAME,
        description="account for CI jobs: no password, removed from sudo/admin/wheel",
        examples=["runner"],
        json_schema_extra=_form("a Unix user name: lower case letters, digits, '_' or '-'"),
    )
    runner_nofile: int = Field(
        1_048_576,
        ge=1024,
        le=1_073_741_816,
        description="open-file limit (soft and hard) for `runner_user` via pam_limits",
        examples=[1048576],
        json_schema_extra=_form("a whole number of open files between 1024 and 1073741816"),
    )
    sshd_port: int = Field(
        22,
        ge=1,
        le=65535,
        description="sshd port, opened by the firewall (not pyinfra's `ssh_port`, the port it connects to)",
        examples=[22],
        json_schema_extra=_form("a TCP port number from 1 to 65535"),
    )
    sshd_permit_root_login: Literal["prohibit-password", "no"] = Field(
        "prohibit-password",
        description="`prohibit-password` (key only) or `no`; passwords and keyboard-interactive are always off",
        json_schema_extra=_form("'prohibit-password' (root by key only) or 'no'"),
    )
    sshd_allow_cidrs: tuple[str, ...] = Field(
        ("0.0.0.0/0", "::/0"),
        description="source networks allowed to SSH through the host firewall",
        examples=[["203.0.113.0/24", "2001:db8::/32"]],
        json_schema_extra=_form("a non-empty list of CIDRs"),
    )
    swap_size_mb: int = Field(
        2048,
        ge=0,
        le=1_048_576,
        description="`/swapfile` size in MiB, `0` removes it",
        examples=[2048],
        json_schema_extra=_form("a whole number of MiB, 0 for no swap"),
    )
    journald_max_use: str = Field(
        "1G",
        pattern=_JOURNAL_SIZE.pattern,
        description="journald `SystemMaxUse`",
        examples=["1G"],
        json_schema_extra=_form("a size with an optional K/M/G/T suffix"),
    )
    sysctl: dict[str, int] = Field(
        default_factory=lambda: {
            # Bazel's --watchfs and IDE-style file watchers exhaust the Debian defaults
            # (8192 watches, 128 instances) on a large workspace.
            "fs.inotify.max_user_watches": 1_048_576,
            "fs.inotify.max_user_instances": 8192,
            "fs.inotify.max_queued_events": 65536,
        },
        description="kernel settings Bazel needs, in `/etc/sysctl.d/60-runner-ctl.conf`",
        examples=[{"fs.inotify.max_user_watches": 1048576}],
        json_schema_extra=_form("a mapping of sysctl key to whole number"),
    )
    data_dir: str = Field(
        "/var/lib/ci",
        description="persistent data directory, owned by `runner_user`",
        examples=["/var/lib/ci"],
        json_schema_extra=_form("an absolute path of letters, digits and . _ + @ - /"),
    )
    data_device: str | None = Field(
        None,
        description="block device (the DigitalOcean volume) mounted at `data_dir` via fstab",
        examples=["/dev/disk/by-id/scsi-0DO_Volume_ci"],
        json_schema_extra=_form("None, or a device path of letters, digits and . _ + @ - /"),
    )
    data_fs_type: Literal["ext4", "xfs"] = Field(
        "ext4", description="filesystem of `data_device`", json_schema_extra=_form("'ext4' or 'xfs'")
    )
    unattended_upgrades: bool = Field(
        True,
        description="automatic Debian security updates (security origins only)",
        json_schema_extra=_form("True or False"),
    )

    @field_validator("apt_sources", mode="before")
    @classmethod
    def _apt_sources(cls, value: Any) -> Any:
        value = non_empty_tuple(value)
        for line in value:
            if not isinstance(line, str) or "\n" in line or not line.startswith(("deb ", "deb-src ")):
                raise ValueError(f"not a one-line apt source: {line!r}")
        return value

    @field_validator("sshd_allow_cidrs", mode="before")
    @classmethod
    def _cidrs(cls, value: Any) -> Any:
        value = non_empty_tuple(value)
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
        check_safe_path(value)
        return value.rstrip("/")

    @field_validator("data_device")
    @classmethod
    def _data_device(cls, value: str | None) -> str | None:
        if value is not None:
            if not value.startswith("/dev/"):
                raise ValueError(f"not a device path: {value!r}")
            check_safe_path(value)
        return value

    @property
    def sshd_allow_ipv4(self) -> list[str]:
        return [c for c in self.sshd_allow_cidrs if ipaddress.ip_network(c).version == 4]

    @property
    def sshd_allow_ipv6(self) -> list[str]:
        return [c for c in self.sshd_allow_cidrs if ipaddress.ip_network(c).version == 6]


SPEC = LayerSpec(
    name="base",
    settings=BaseLayerSettings,
    apt_packages=("nftables", "openssh-server", "systemd-timesyncd", "unattended-upgrades"),
)
