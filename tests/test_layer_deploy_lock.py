"""The deploy lock layer's fleet: which host serves the lock, the forward key, lock.json, the defaults on a host.

The fleet checks run the whole host deploy ``--dry`` over an inventory of pyinfra's ``@fake``
hosts: a bad fleet must stop on the operator's machine with one line, before any operation.
"""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from runner_ctl.cli import app
from runner_ctl.errors import ConfigError
from runner_ctl.layers.deploy_lock import DeployLockSettings, fleet_lock_host
from runner_ctl.lock import access
from runner_ctl.lock.fleet import FORWARD_KEY_NAME, LockConfig, forward_key, read_lock_config
from tests.conftest import PROJECT_ROOT
from tests.lockfixtures import free_port
from tests.test_layer_buildbuddy import write_group_data

# ---- which host serves the lock -----------------------------------------------------------------


def test_the_first_host_serves_by_default() -> None:
    assert fleet_lock_host([("rh1", None), ("rh2", None)]) == "rh1"
    assert fleet_lock_host([("only", None)]) == "only"


def test_a_named_host_serves_when_every_host_agrees() -> None:
    assert fleet_lock_host([("rh1", "rh2"), ("rh2", "rh2")]) == "rh2"
    # None on the first host means the first host: the same choice.
    assert fleet_lock_host([("rh1", None), ("rh2", "rh1")]) == "rh1"


@pytest.mark.parametrize(
    ("hosts", "words"),
    [
        ([("rh1", "rh9"), ("rh2", "rh9")], "'rh9' is no host of the inventory; expected one of rh1, rh2"),
        ([("rh1", "rh1"), ("rh2", "rh2")], "the hosts disagree (rh1: rh1, rh2: rh2)"),
        ([("rh1", None), ("rh2", "rh2")], "the hosts disagree"),
        ([], "no runner host"),
    ],
)
def test_a_bad_fleet_is_one_line(hosts: list[tuple[str, str | None]], words: str) -> None:
    with pytest.raises(ValueError, match="deploy_lock_host") as raised:
        fleet_lock_host(hosts)
    assert words in str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_lock_host_key_is_a_host_name() -> None:
    assert DeployLockSettings(deploy_lock_host="runner-1.example.com").deploy_lock_host == "runner-1.example.com"
    with pytest.raises(ValueError, match="deploy_lock_host"):
        DeployLockSettings(deploy_lock_host="two words")


# ---- the whole deploy over a fake fleet ---------------------------------------------------------


def dry_fleet_deploy(tmp_path: Path, hosts: dict[str, dict[str, Any]], data: dict[str, Any] | None = None) -> str:
    """The host deploy, dry, over @fake hosts with this data; returns its output (it must fail)."""
    inventory = tmp_path / "inventory.py"
    entries = [(f"@fake/{name}", {"fake_delay": 0, "fake_delay_jitter": 0, **extra}) for name, extra in hosts.items()]
    inventory.write_text(f"runner_hosts = {entries!r}\n")
    group_data = write_group_data(tmp_path, {"layers": ["base", "deploy_lock"], **(data or {})})
    done = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "--dry", "--group-data", str(group_data), str(inventory),
         str(PROJECT_ROOT / "deploys" / "runner_host.py")],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYINFRA_PROGRESS": "off", "RUNNER_CTL_CONFIG_DIR": str(tmp_path / "config")},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output
    assert "Starting operation" not in output
    return output


@pytest.mark.parametrize(
    ("hosts", "data", "words"),
    [
        ({"rh1": {}, "rh2": {}}, {"deploy_lock_host": "rh3"}, "deploy_lock_host 'rh3' is no host of the inventory"),
        ({"rh1": {"deploy_lock_host": "rh1"}, "rh2": {"deploy_lock_host": "rh2"}}, {}, "the hosts disagree"),
        ({"rh1": {}, "rh2": {"private_ipv4": "10.0.0.2"}}, {}, "rh1 has no private_ipv4"),
        (
            {"rh1": {"private_ipv4": "10.0.0.1; drop"}, "rh2": {"private_ipv4": "10.0.0.2"}},
            {},
            "private_ipv4 '10.0.0.1; drop' is not a private IPv4 address",
        ),
    ],
    ids=["unknown host", "disagreeing hosts", "no private address", "bad private address"],
)
def test_a_bad_fleet_stops_before_any_operation(
    tmp_path: Path, hosts: dict[str, dict[str, Any]], data: dict[str, Any], words: str
) -> None:
    output = dry_fleet_deploy(tmp_path, hosts, data)
    assert len([line for line in output.splitlines() if words in line]) >= 1, output


# ---- the forward key ----------------------------------------------------------------------------


def test_the_forward_key_is_made_once_private_and_read_back(tmp_path: Path) -> None:
    first = forward_key(tmp_path / "secrets")
    path = tmp_path / "secrets" / FORWARD_KEY_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert forward_key(tmp_path / "secrets") == first
    assert first.public_line.startswith("ssh-ed25519 ") and first.public_line.endswith(" runner-ctl-fwd")
    loaded = serialization.load_ssh_private_key(first.private_openssh.encode(), password=None)
    public = loaded.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert first.public_line.split()[1] == public.decode().split()[1]


def test_a_broken_forward_key_is_one_line_without_its_content(tmp_path: Path) -> None:
    (tmp_path / FORWARD_KEY_NAME).write_text("PlantedNotAKey0123456789\n")
    with pytest.raises(ConfigError, match="not an unencrypted OpenSSH private key; remove it") as raised:
        forward_key(tmp_path)
    assert "Planted" not in str(raised.value)


# ---- lock.json and the defaults of runner-ctl deploy on a host ----------------------------------


def test_lock_json_is_read_or_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "lock.json"
    assert read_lock_config(path) is None
    path.write_text(json.dumps({"url": "http://127.0.0.1:7465", "lock_host": "rh1"}))
    assert read_lock_config(path) == LockConfig("http://127.0.0.1:7465", "rh1")
    for bad in ("[]", "{", json.dumps({"url": "http://127.0.0.1:7465"})):
        path.write_text(bad)
        with pytest.raises(ConfigError, match=r"lock\.json is not"):
            read_lock_config(path)


@pytest.fixture
def on_a_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, int]:
    """This machine as a fleet host sees it: lock.json naming lock host rh1, the CI token file."""
    port = free_port()  # nothing listens there: the lock host is down
    config, token = tmp_path / "lock.json", tmp_path / "lock-client.token"
    config.write_text(json.dumps({"url": f"http://127.0.0.1:{port}", "lock_host": "rh1"}))
    token.write_text("ci-token-0123456789abcdef\n")
    token.chmod(0o600)
    monkeypatch.setattr(access, "LOCK_CONFIG_FILE", config)
    monkeypatch.setattr(access, "CLIENT_TOKEN_FILE", token)
    for name in ("RUNNER_CTL_LOCK_URL", "RUNNER_CTL_LOCK_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RUNNER_CTL_LOCK_RETRY_SECONDS", "0")
    return token, port


def test_a_host_needs_no_lock_flags(on_a_host: tuple[Path, int]) -> None:
    _, port = on_a_host
    url, secret, config = access._lock_access(None, None)
    assert (url, secret) == (f"http://127.0.0.1:{port}", "ci-token-0123456789abcdef")
    assert config is not None and config.lock_host == "rh1"


def test_flags_and_variables_still_win_on_a_host(on_a_host: tuple[Path, int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_CTL_LOCK_TOKEN", "from-the-environment-0123")
    url, secret, config = access._lock_access("http://127.0.0.1:9", None)
    assert (url, secret, config) == ("http://127.0.0.1:9", "from-the-environment-0123", None)


def test_an_unreachable_lock_host_is_exit_6_naming_it(on_a_host: tuple[Path, int], tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    result = CliRunner().invoke(
        app,
        ["deploy", "--env", "production", "--commit", "HEAD", "--repo-dir", str(PROJECT_ROOT), "--",
         "touch", str(ran)],
    )  # fmt: skip
    assert result.exit_code == 6, result.output
    lines = [line for line in result.output.splitlines() if "unreachable" in line]
    assert len(lines) == 1, result.output
    assert "on lock host rh1 is unreachable" in lines[0]
    assert "check runner-ctl-lockd on rh1" in lines[0]
    assert not ran.exists()
