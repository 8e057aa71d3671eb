"""Group data: an unknown key is an error, and no value can smuggle shell syntax into a command."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api.arguments import all_global_arguments
from pyinfra.api.connectors import get_all_connectors

from runner_ctl.errors import ConfigError
from runner_ctl.hostdata import PYINFRA_DATA_KEYS, BaseLayerSettings, validate_host_data
from tests.conftest import PROJECT_ROOT, runner_ctl


def test_a_misspelled_key_is_refused_with_the_closest_known_key() -> None:
    with pytest.raises(ConfigError) as caught:
        validate_host_data({"sshd_allow_cidr": ["203.0.113.0/24"]})
    message = str(caught.value)
    assert "\n" not in message
    assert "unknown key 'sshd_allow_cidr'" in message
    assert "did you mean 'sshd_allow_cidrs'?" in message


def test_an_unknown_key_without_a_close_match_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'kubernetes_context' \(remove it\)"):
        validate_host_data({"kubernetes_context": "prod"})


def test_pyinfra_and_inventory_keys_are_not_layer_settings_but_allowed() -> None:
    data: dict[str, Any] = {
        "ssh_hostname": "203.0.113.5",
        "ssh_user": "root",
        "ssh_port": 2222,
        "ssh_key": "/home/op/.ssh/id_ed25519",
        "_sudo": True,
        "private_ipv4": "10.114.0.2",
        "secret_standins": "/tmp/standins",
        "sshd_port": 2222,
    }
    assert validate_host_data(data).of(BaseLayerSettings).sshd_port == 2222


def test_the_pyinfra_key_list_matches_the_installed_pyinfra() -> None:
    """pyinfra's connectors' data keys and its global arguments: a new pyinfra must not be refused."""
    connectors = get_all_connectors()  # type: ignore[no-untyped-call]
    connector_keys = {key for connector in connectors.values() for key in getattr(connector, "data_meta", {})}
    global_arguments = {name for name, _ in all_global_arguments() if name.startswith("_")}
    assert connector_keys | global_arguments == PYINFRA_DATA_KEYS


def test_the_pyinfra_deploy_refuses_an_unknown_key_before_any_operation(tmp_path: Path) -> None:
    """The layers see all of the host's data keys, not only the ones they know."""
    group_data = tmp_path / "group_data"
    group_data.mkdir()
    (group_data / "all.py").write_text('sshd_allow_cidr = ["203.0.113.0/24"]\n')
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyinfra",
            "-y",
            "--dry",
            "--group-data",
            str(group_data),
            "@local",
            "deploys/runner_host.py",
        ],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYINFRA_PROGRESS": "off"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if "unknown key" in line]
    assert len(errors) == 1, output
    assert "did you mean 'sshd_allow_cidrs'?" in errors[0]
    assert "Starting operation" not in output


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("data_dir", "/var/lib/ci; touch /tmp/x #"),
        ("data_dir", "/var/lib/ci dir"),
        ("data_dir", "/var/lib/ci\n/etc"),
        ("data_dir", "/var/lib/ci\n"),
        ("data_dir", "/var/lib/$(reboot)"),
        ("data_dir", "/var/lib/`id`"),
        ("data_dir", "/var/lib/'ci'"),
        ("data_dir", "/var/lib/../../etc"),
        ("data_device", "/dev/sdb; reboot"),
        ("data_device", "/dev/disk/by-id/x y"),
        ("data_device", "/dev/sdb\tz"),
        ("data_device", "/dev/sdb|cat"),
        ("data_device", "/dev/sdb\n"),
    ],
)
def test_paths_and_devices_refuse_shell_syntax(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_host_data({key: value})
    message = str(caught.value)
    assert "\n" not in message
    assert f"{key} = " in message
    assert "not allowed in a path" in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("data_dir", "/var/lib/ci"),
        ("data_dir", "/srv/ci-cache_2/build.d"),
        ("data_device", "/dev/disk/by-id/scsi-0DO_Volume_ci-cache"),
        ("data_device", "/dev/mapper/vg0-ci+cache@1"),
    ],
)
def test_ordinary_paths_and_devices_are_accepted(key: str, value: str) -> None:
    assert getattr(validate_host_data({key: value}).of(BaseLayerSettings), key) == value


def test_a_sysctl_key_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ConfigError, match="sysctl = "):
        validate_host_data({"sysctl": {"fs.inotify.max_user_watches\n": 1}})


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('sshd_allow_cidr = ["203.0.113.0/24"]\n', "unknown key 'sshd_allow_cidr' (did you mean 'sshd_allow_cidrs'?)"),
        ('data_dir = "/var/lib/ci; touch /tmp/x #"\n', "data_dir = '/var/lib/ci; touch /tmp/x #' is invalid"),
    ],
    ids=["unknown-key", "shell-in-path"],
)
def test_rehearse_stops_on_bad_group_data_in_one_line_before_booting(tmp_path: Path, extra: str, expected: str) -> None:
    root = _checkout(tmp_path, extra)
    done = runner_ctl("rehearse", "--json", "--deploy", str(root / "deploys" / "runner_host.py"), timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["failed_step"] == "validate"
    assert expected in " ".join(done.stderr.split())
    assert "booting" not in done.stderr


def test_rehearse_with_real_secrets_checks_them_before_booting(tmp_path: Path) -> None:
    tokens = 'deploy_lock_tokens = [{"name": "ci", "secret": "env:RC_TEST_SHORT_SECRET", "admin": False}]\n'
    root = _checkout(tmp_path, tokens)
    argv = ("rehearse", "--real-secrets", "--deploy", str(root / "deploys" / "runner_host.py"))
    done = runner_ctl(*argv, timeout=120, env={"RC_TEST_SHORT_SECRET": "short-secret"})
    assert done.returncode != 0
    assert "deploy_lock_tokens ci: the secret is shorter than 16 characters" in " ".join(done.stderr.split())
    assert "short-secret" not in done.stdout + done.stderr
    assert "booting" not in done.stderr


def _checkout(tmp_path: Path, group_data: str) -> Path:
    """A checkout with this project's layers and the given group data."""
    root = tmp_path / "checkout"
    (root / "inventories" / "group_data").mkdir(parents=True)
    (root / "inventories" / "group_data" / "all.py").write_text(group_data)
    (root / "deploys").mkdir()
    for deploy in (PROJECT_ROOT / "deploys").glob("*.py"):
        (root / "deploys" / deploy.name).write_text(deploy.read_text())
    return root
