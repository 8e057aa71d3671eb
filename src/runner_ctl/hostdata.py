"""Group data: the registry that composes the host layers' specs into one host's settings.

pyinfra hands every deploy a flat mapping of host data (``inventories/group_data/*.py``
merged with per-host data). Each layer declares its keys in its spec
(``runner_ctl.layers.<name>``); this module composes the specs, refuses a key that no
layer (nor pyinfra, nor our inventories) knows and a key two layers both claim, and
validates in one place. The layers in ``deploys/`` read their settings through it, and
``runner-ctl rehearse`` validates before any host is touched.
"""

import difflib
import runpy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from runner_ctl.errors import ConfigError
from runner_ctl.layers import DEFAULT_LAYERS, LAYER_ORDER, SPECS, LayerSettings, LayerSpec, expected_form
from runner_ctl.layers.base import BaseLayerSettings
from runner_ctl.layers.deploy_lock import DeployLockSettings, LockToken

__all__ = [
    "EXPECTED_FORM",
    "KEY_OWNERS",
    "LAYER_APT_PACKAGES",
    "LAYER_ORDER",
    "NON_LAYER_KEYS",
    "BaseLayerSettings",
    "DeployLockSettings",
    "HostSettings",
    "LockToken",
    "available_layers",
    "claimed_keys",
    "default_host_settings",
    "load_group_data",
    "validate_host_data",
]

M = TypeVar("M", bound=LayerSettings)

LAYERS_FORM = f"a list of layer names from {', '.join(LAYER_ORDER)} (e.g. ['base'])"


def claimed_keys(specs: Iterable[LayerSpec]) -> dict[str, LayerSpec]:
    """Each group-data key and the one layer that owns it; two layers claiming a key is an error."""
    owners: dict[str, LayerSpec] = {}
    for spec in specs:
        for key in spec.settings.model_fields:
            if key in owners or key == "layers":
                other = owners[key].name if key in owners else "the registry"
                raise ValueError(f"group data key {key!r} is claimed by both {other} and {spec.name}")
            owners[key] = spec
    return owners


KEY_OWNERS: dict[str, LayerSpec] = claimed_keys(SPECS.values())

# What each layer installs with apt. The test host's local apt repository is built from the
# union of these, so a layer that installs a package not listed in its spec fails its rehearsal.
LAYER_APT_PACKAGES: dict[str, tuple[str, ...]] = {name: spec.apt_packages for name, spec in SPECS.items()}

# What the user is told when a key is wrong: the expected form, with an example, from the field.
EXPECTED_FORM: dict[str, str] = {
    "layers": LAYERS_FORM,
    **{key: expected_form(spec.settings, key) or "a valid value" for key, spec in KEY_OWNERS.items()},
}

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


@dataclass(frozen=True)
class HostSettings:
    """Everything a runner host is configured from: the layer list plus each layer's own settings."""

    layers: tuple[str, ...]
    parts: tuple[LayerSettings, ...]

    def of(self, model: type[M]) -> M:
        """The settings of the layer whose model is ``model`` (every layer's, whether listed or not)."""
        for part in self.parts:
            if isinstance(part, model):
                return part
        raise LookupError(f"no layer spec has the settings model {model.__name__}")

    def dump(self) -> dict[str, Any]:
        """Every key with its value, flat as group data is (JSON types)."""
        flat: dict[str, Any] = {"layers": list(self.layers)}
        for part in self.parts:
            flat.update(part.model_dump(mode="json"))
        return flat


def default_host_settings() -> HostSettings:
    return HostSettings(DEFAULT_LAYERS, tuple(spec.settings() for spec in SPECS.values()))


def _key_from_message(message: str) -> str:
    """Model-level checks name their key first in the message."""
    words = message.removeprefix("Value error, ").split()
    return words[0] if words and words[0] in EXPECTED_FORM else "?"


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _refuse_unknown_keys(data: Mapping[str, Any], origin: str) -> None:
    """A misspelled key would otherwise leave its setting at the default, silently."""
    known = set(KEY_OWNERS) | {"layers"}
    unknown = sorted(str(key) for key in data if key not in known and key not in NON_LAYER_KEYS)
    if not unknown:
        return
    key = unknown[0]
    close = difflib.get_close_matches(key, sorted(known | NON_LAYER_KEYS), n=1)
    hint = f"did you mean {close[0]!r}?" if close else "remove it"
    raise ConfigError(
        f"{origin}: unknown key {_describe(key)} ({hint}); the keys are documented in inventories/group_data/all.py"
    )


def _layers(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        value = tuple(value)
    if not isinstance(value, tuple) or not value or not all(isinstance(name, str) for name in value):
        raise ValueError("empty or not a list of names")
    unknown = [name for name in value if name not in LAYER_ORDER]
    if unknown:
        raise ValueError(f"unknown layer {unknown[0]!r}")
    if "base" not in value:
        raise ValueError("'base' is required: every other layer builds on it")
    return tuple(name for name in LAYER_ORDER if name in value)


class _NotShown:
    def __repr__(self) -> str:
        return "<not shown: a secret field>"


_SECRET_NOT_SHOWN = _NotShown()


def _invalid(origin: str, key: str, got: Any, detail: str) -> ConfigError:
    form = EXPECTED_FORM.get(key, "a valid value")
    return ConfigError(f"{origin}: {key} = {_describe(got)} is invalid ({detail}); expected {form}")


def validate_host_data(
    data: Mapping[str, Any],
    *,
    available: frozenset[str] | None = None,
    origin: str = "group data",
    strict: bool | None = None,
) -> HostSettings:
    """Validate host data, raising a one-line ``ConfigError`` naming the key and its form.

    ``available`` is the set of layers that exist in ``deploys/``; a known layer that this
    checkout does not have yet is as wrong as an unknown one. ``strict=False`` accepts
    JSON-shaped data (lists for tuples), as a host's data read back from an inventory is.
    """
    _refuse_unknown_keys(data, origin)
    try:
        layers = _layers(data["layers"]) if "layers" in data else DEFAULT_LAYERS
    except ValueError as error:
        raise _invalid(origin, "layers", data["layers"], str(error)) from None
    parts = []
    for spec in SPECS.values():
        own = {key: value for key, value in data.items() if key in spec.settings.model_fields}
        try:
            parts.append(spec.settings.model_validate(own, strict=strict))
        except ValidationError as error:
            first = error.errors()[0]
            key = str(first["loc"][0]) if first["loc"] else _key_from_message(first["msg"])
            got = data.get(key, first.get("input"))
            detail = first["msg"].removeprefix("Value error, ")
            if key in spec.secret_fields:
                # A secret pasted where its reference belongs must not reach a terminal or a log.
                leaf = first.get("input")
                if isinstance(leaf, str) and leaf:
                    detail = detail.replace(leaf, "<not shown>")
                got = _SECRET_NOT_SHOWN
            raise _invalid(origin, key, got, detail) from None
    if available is not None:
        missing = [name for name in layers if name not in available]
        if missing:
            raise ConfigError(
                f"{origin}: layers = {_describe(list(data.get('layers', [])))} is invalid "
                f"(layer {missing[0]!r} has no deploys/{missing[0]}.py in this checkout); "
                f"expected a list of layer names from {', '.join(sorted(available))}"
            )
    return HostSettings(layers, tuple(parts))


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
