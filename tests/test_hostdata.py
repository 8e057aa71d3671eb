"""Group data validation: defaults, the documented group data file, and bad input."""

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner_ctl.errors import ConfigError
from runner_ctl.hostdata import (
    KEY_OWNERS,
    LAYER_APT_PACKAGES,
    LAYER_ORDER,
    BaseLayerSettings,
    DeployLockSettings,
    available_layers,
    claimed_keys,
    default_host_settings,
    load_group_data,
    validate_host_data,
)
from runner_ctl.layers import SPECS, LayerSettings, LayerSpec, expected_form

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_documented_group_data_equals_the_model_defaults() -> None:
    """inventories/group_data/all.py documents the defaults: it must not drift from them."""
    documented = validate_host_data(load_group_data(PROJECT_ROOT / "inventories" / "group_data"))
    assert documented == default_host_settings()


def test_every_layer_in_this_checkout_is_known_and_lists_its_packages() -> None:
    layers = available_layers(PROJECT_ROOT)
    assert "base" in layers
    assert layers <= set(LAYER_ORDER)
    assert all(layer in LAYER_APT_PACKAGES for layer in layers)


@pytest.mark.parametrize(
    ("key", "value", "expected_words"),
    [
        ("swap_size_mb", "big", "whole number of MiB"),
        ("swap_size_mb", -1, "whole number of MiB"),
        ("sshd_port", 70000, "TCP port number from 1 to 65535"),
        ("sshd_port", "22", "TCP port number"),
        ("sshd_allow_cidrs", ["10.0.0.300/8"], "list of CIDRs"),
        ("sshd_allow_cidrs", [], "non-empty list of CIDRs"),
        ("sshd_allow_cidrs", "0.0.0.0/0", "list of CIDRs"),
        ("layers", ["base", "kubernetes"], "layer names from base"),
        ("layers", ["bazel"], "layer names"),
        ("sshd_permit_root_login", "yes", "'prohibit-password'"),
        ("runner_user", "Runner User", "Unix user name"),
        ("journald_max_use", "lots", "size with an optional"),
        ("sysctl", {"not a key": 1}, "mapping of sysctl key"),
        ("data_dir", "relative/path", "absolute path"),
        ("data_device", "sdb", "device path"),
        ("apt_sources", ["http://example.invalid"], "one-line apt sources"),
        ("unattended_upgrades", "yes", "True or False"),
    ],
)
def test_bad_group_data_gets_one_line_naming_key_and_form(key: str, value: Any, expected_words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_host_data({key: value})
    message = str(caught.value)
    assert "\n" not in message
    assert f"{key} = " in message
    assert expected_words in message


def test_a_known_layer_missing_from_the_checkout_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"layer 'bazel' has no deploys/bazel.py"):
        validate_host_data({"layers": ["base", "bazel"]}, available=frozenset({"base"}))


def test_layers_come_back_in_canonical_order() -> None:
    settings = validate_host_data({"layers": ["deploy_lock", "base", "bazel"]})
    assert settings.layers == ("base", "bazel", "deploy_lock")


@given(st.integers(min_value=1, max_value=65535))
def test_every_valid_port_is_accepted(port: int) -> None:
    assert validate_host_data({"sshd_port": port}).of(BaseLayerSettings).sshd_port == port


@given(st.integers().filter(lambda n: not 1 <= n <= 65535))
def test_every_invalid_port_is_rejected(port: int) -> None:
    with pytest.raises(ConfigError, match="sshd_port"):
        validate_host_data({"sshd_port": port})


def test_cidrs_are_normalised_and_split_by_family() -> None:
    settings = validate_host_data({"sshd_allow_cidrs": ["192.0.2.7/24", "2001:db8::1/32"]}).of(BaseLayerSettings)
    assert settings.sshd_allow_ipv4 == ["192.0.2.0/24"]
    assert settings.sshd_allow_ipv6 == ["2001:db8::/32"]


def test_a_broken_group_data_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "all.py").write_text("swap_size_mb = (\n")
    with pytest.raises(ConfigError, match="cannot be loaded"):
        load_group_data(tmp_path)


def test_group_precedence_runner_hosts_over_all(tmp_path: Path) -> None:
    (tmp_path / "all.py").write_text("swap_size_mb = 1\nsshd_port = 2222\n")
    (tmp_path / "runner_hosts.py").write_text("swap_size_mb = 2\n")
    assert load_group_data(tmp_path) == {"swap_size_mb": 2, "sshd_port": 2222}


def test_a_key_claimed_by_two_layers_is_refused() -> None:
    """Composing specs never merges two layers' same-named keys silently."""

    class Clash(LayerSettings):
        swap_size_mb: int = 1

    with pytest.raises(ValueError, match="'swap_size_mb' is claimed by both base and clash"):
        claimed_keys([*SPECS.values(), LayerSpec(name="clash", settings=Clash)])


def test_every_key_documents_itself() -> None:
    """Each field carries the description and expected form the errors and the group-data reference show."""
    for key, spec in KEY_OWNERS.items():
        field = spec.settings.model_fields[key]
        assert field.description, f"{spec.name}.{key} has no description"
        assert expected_form(spec.settings, key), f"{spec.name}.{key} has no expected form"


def test_each_layer_sees_only_its_own_keys() -> None:
    settings = validate_host_data({"swap_size_mb": 0, "deploy_lock_ci_token": "ops"})
    assert settings.of(BaseLayerSettings).swap_size_mb == 0
    assert settings.of(DeployLockSettings).deploy_lock_ci_token == "ops"  # noqa: S105 - a token name
    assert settings.dump()["swap_size_mb"] == 0


@pytest.mark.parametrize(
    "tokens",
    [
        [{"name": "ci", "secret": "hunter2-plain-secret-abc"}],  # a secret pasted for its reference
        [{"name": "ci", "secret": "env:X", "extra": "hunter2-plain-secret-abc"}],
    ],
)
def test_an_invalid_secret_field_is_never_shown(tokens: list[dict[str, str]]) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_host_data({"deploy_lock_tokens": tokens})
    assert "hunter2" not in str(caught.value)
    assert "deploy_lock_tokens = <not shown: a secret field> is invalid" in str(caught.value)
