"""The deploy lock layer's spec (``deploys/deploy_lock.py``): runner-ctl's lock service and its tokens.

A fleet has one lock service, on the host ``deploy_lock_host`` names; ``fleet_lock_host``
checks that choice against the inventory before any host is touched.
"""

import ipaddress
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from runner_ctl.hostport import check_loopback
from runner_ctl.layers._spec import LayerSettings, LayerSpec, non_empty_tuple

__all__ = ["SPEC", "DeployLockSettings", "LockToken", "fleet_lock_host", "private_ipv4"]

_HOST_NAME = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,252}$"


class LockToken(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
    secret: str = Field(pattern=r"^(env|file|cmd|generated):.+$")
    admin: bool = False


class DeployLockSettings(LayerSettings):
    """Settings of the deploy lock layer."""

    deploy_lock_listen: str = Field(
        "127.0.0.1:7465",
        description="where `runner-ctl-lockd` listens; loopback only (validated), operators reach it through SSH",
        examples=["127.0.0.1:7465"],
        json_schema_extra={"form": "a loopback HOST:PORT"},
    )
    deploy_lock_tokens: tuple[LockToken, ...] = Field(
        (
            LockToken(name="ci", secret="generated:lock-ci"),  # noqa: S106 - references, not secrets
            LockToken(name="ops", secret="generated:lock-ops", admin=True),  # noqa: S106
        ),
        description="API tokens; each secret is a reference resolved on the operator's machine",
        json_schema_extra={
            "form": "a list of {'name': ..., 'secret': 'env:NAME|file:PATH|cmd:COMMAND|generated:NAME', 'admin': bool}"
        },
    )
    deploy_lock_ci_token: str = Field(
        "ci",
        description="the token CI jobs on the host use (`/etc/runner-ctl/lock-client.token`)",
        examples=["ci"],
        json_schema_extra={"form": "the name of one of deploy_lock_tokens"},
    )

    deploy_lock_host: str | None = Field(
        None,
        pattern=_HOST_NAME,
        description=(
            "the inventory host that runs the fleet's one lock service (None: the first host of the "
            "runner group); the others reach it through an SSH forward to its `private_ipv4`"
        ),
        examples=["runner-1"],
        json_schema_extra={"form": "None, or the name of one host of the inventory"},
    )

    @field_validator("deploy_lock_listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return check_loopback(value)

    @field_validator("deploy_lock_tokens", mode="before")
    @classmethod
    def _tokens(cls, value: Any) -> Any:
        value = non_empty_tuple(value)
        names = [t.get("name") if isinstance(t, dict) else getattr(t, "name", None) for t in value]
        if len(set(names)) != len(names):
            raise ValueError("a token name is used twice")
        return value

    @model_validator(mode="after")
    def _ci_token_exists(self) -> "DeployLockSettings":
        if self.deploy_lock_ci_token not in {t.name for t in self.deploy_lock_tokens}:
            raise ValueError(f"deploy_lock_ci_token {self.deploy_lock_ci_token!r} names no token")
        return self


def fleet_lock_host(hosts: Sequence[tuple[str, str | None]]) -> str:
    """The lock host of a fleet, from each host's (name, ``deploy_lock_host``) in inventory order.

    None everywhere means the first host. Raises ValueError (one line) when the hosts disagree
    or the name is no host of the inventory: every host must reach the same service.
    """
    if not hosts:
        raise ValueError("deploy_lock_host: the inventory has no runner host")
    first = hosts[0][0]
    chosen = {value or first for _, value in hosts}
    if len(chosen) > 1:
        which = ", ".join(f"{name}: {value or first}" for name, value in hosts)
        raise ValueError(f"deploy_lock_host: the hosts disagree ({which}); set it once, in group data for all hosts")
    lock_host = chosen.pop()
    names = [name for name, _ in hosts]
    if lock_host not in names:
        raise ValueError(
            f"deploy_lock_host {lock_host!r} is no host of the inventory; expected one of {', '.join(names)}"
        )
    return lock_host


def private_ipv4(name: str, value: object) -> str:
    """A host's ``private_ipv4`` (inventory data), checked: it goes into a unit and the firewall."""
    try:
        address = ipaddress.IPv4Address(value) if isinstance(value, str) else None
    except ValueError:
        address = None
    if address is None or not address.is_private:
        raise ValueError(f"{name}: private_ipv4 {value!r} is not a private IPv4 address (e.g. '10.116.0.2')")
    return str(address)


SPEC = LayerSpec(
    name="deploy_lock",
    settings=DeployLockSettings,
    # git: CI jobs' deploys answer the stale guard's ancestry questions on the host.
    apt_packages=("git", "python3", "python3-venv"),
    secret_fields=("deploy_lock_tokens",),
)
