"""inventories/production.py and inventories/digitalocean.py, loaded as pyinfra loads them.

production.py is fed a recorded ``tofu output -json`` document by a stand-in executable
(tests/standins/tofu_output.py, through RUNNER_CTL_TOFU); digitalocean.py talks to a loopback
stand-in of DigitalOcean's API (tests/standins/digitalocean_api.py, through python-digitalocean's
own DIGITALOCEAN_END_POINT). Each is checked twice: imported with runpy for its
``runner_hosts``, and run by pyinfra itself (``pyinfra INVENTORY debug-inventory``) for what
a user sees, including the one-line errors.
"""

import json
import os
import re
import runpy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner_ctl.errors import ConfigError, PrerequisiteError
from runner_ctl.inventory import (
    RunnerHost,
    discover_droplet_hosts,
    hosts_from_tofu_outputs,
    read_tofu_outputs,
    runner_hosts_group,
)
from tests.conftest import PROJECT_ROOT
from tests.standins.digitalocean_api import DigitalOceanApi, droplet, serve_digitalocean_api, volume

STANDINS = PROJECT_ROOT / "tests" / "standins"
RECORDED_OUTPUT = STANDINS / "tofu_output.json"
PYINFRA = Path(sys.executable).with_name("pyinfra")
TOKEN = "dop_v1_standin-token-0123456789"  # noqa: S105 - the stand-in API's token, not a secret

EXPECTED_PRODUCTION = [
    (
        "runner-ctl-1",
        {
            "ssh_hostname": "203.0.113.10",
            "ssh_user": "root",
            "data_device": "/dev/disk/by-id/scsi-0DO_Volume_runner-ctl-1-cache",
            "private_ipv4": "10.114.0.2",
        },
    ),
    (
        "runner-ctl-2",
        {
            "ssh_hostname": "203.0.113.11",
            "ssh_user": "root",
            "data_device": "/dev/disk/by-id/scsi-0DO_Volume_runner-ctl-2-cache",
            "private_ipv4": "10.114.0.3",
        },
    ),
]

# OpenTofu's diagnostic when `tofu output` runs before `tofu init` (as -no-color prints it).
NOT_INITIALISED = (
    '\nError: Backend initialization required, please run "tofu init"\n\n'
    'Reason: Initial configuration of the requested backend "s3"\n\n'
    'The "backend" is the interface that OpenTofu uses to store state,\n'
    "perform operations, etc.\n"
)


# ---- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def tofu(tmp_path: Path) -> Path:
    """An executable that runs the tofu stand-in with this interpreter (RUNNER_CTL_TOFU)."""
    wrapper = tmp_path / "tofu"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDINS / "tofu_output.py"}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def tofu_env(tofu: Path, *, document: Path | None = None, stderr: str = "", status: int = 0) -> dict[str, str]:
    log = tofu.with_name("calls.jsonl")
    env = {"RUNNER_CTL_TOFU": str(tofu), "TOFU_STANDIN_LOG": str(log), "TOFU_STANDIN_EXIT": str(status)}
    env["TOFU_STANDIN_STDERR"] = stderr
    if document is not None:
        env["TOFU_STANDIN_DOCUMENT"] = str(document)
    return env


def tofu_calls(tofu: Path) -> list[list[str]]:
    log = tofu.with_name("calls.jsonl")
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def load_inventory(name: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The inventory's ``runner_hosts``, read the way pyinfra reads it (running the file)."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    namespace = runpy.run_path(str(PROJECT_ROOT / "inventories" / name))
    return namespace["runner_hosts"]


def run_pyinfra(name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DIGITALOCEAN_", "RUNNER_CTL_", "TOFU_"))}
    return subprocess.run(
        [str(PYINFRA), f"inventories/{name}", "debug-inventory"],
        cwd=PROJECT_ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def debug_inventory_hosts(output: str) -> dict[str, dict[str, Any]]:
    """Host name -> host data, from pyinfra's debug-inventory report."""
    blocks = re.findall(r"^\[([^\]]+)\] *\n--> Groups: [^\n]*\n--> Data:\n(\{.*?^\})", output, re.M | re.S)
    return {name: json.loads(data) for name, data in blocks}


def assert_one_line_failure(done: subprocess.CompletedProcess[str], source: str, *needles: str) -> str:
    """pyinfra failed with a single line from the inventory, and no traceback."""
    assert done.returncode != 0, done.stderr
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith(f"inventories/{source}:")]
    assert len(lines) == 1, output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ---- inventories/production.py -------------------------------------------------------------------


def test_production_builds_runner_hosts_from_the_recorded_output(tofu: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hosts = load_inventory("production.py", tofu_env(tofu, document=RECORDED_OUTPUT), monkeypatch)
    assert hosts == EXPECTED_PRODUCTION
    # One `output -json` call, pointed at the repository's module whatever the working directory.
    assert tofu_calls(tofu) == [[f"-chdir={PROJECT_ROOT / 'tofu'}", "output", "-no-color", "-json"]]


def test_pyinfra_loads_production_hosts_with_group_data(tofu: Path) -> None:
    done = run_pyinfra("production.py", tofu_env(tofu, document=RECORDED_OUTPUT))
    assert done.returncode == 0, done.stderr
    hosts = debug_inventory_hosts(done.stdout + done.stderr)
    assert sorted(hosts) == ["runner-ctl-1", "runner-ctl-2"]
    for name, expected in EXPECTED_PRODUCTION:
        assert {key: hosts[name][key] for key in expected} == expected
        # group_data/all.py applies to every host next to the per-host data.
        assert hosts[name]["layers"] == ["base", "bazel", "buildbuddy", "github_runner", "gitlab_runner", "deploy_lock"]
    assert len(tofu_calls(tofu)) == 1


@pytest.mark.parametrize(
    ("document", "stderr", "status", "reason"),
    [
        # What `tofu output -json` really does on an empty state: {} and exit 0.
        ("{}\n", "", 0, "no pyinfra_inventory output"),
        # Before `tofu init`: exit 1 and a diagnostic.
        (None, NOT_INITIALISED, 1, 'Backend initialization required, please run "tofu init"'),
    ],
    ids=["empty-state", "not-initialised"],
)
def test_production_without_state_says_apply_first_in_one_line(
    tofu: Path, tmp_path: Path, document: str | None, stderr: str, status: int, reason: str
) -> None:
    recorded = None
    if document is not None:
        recorded = tmp_path / "output.json"
        recorded.write_text(document)
    done = run_pyinfra("production.py", tofu_env(tofu, document=recorded, stderr=stderr, status=status))
    assert_one_line_failure(done, "production.py", reason, "bin/tofu -chdir=tofu apply")


def test_production_with_an_empty_runner_list_says_apply_first(
    tofu: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = json.loads(RECORDED_OUTPUT.read_text())
    document["pyinfra_inventory"]["value"] = []
    recorded = tmp_path / "output.json"
    recorded.write_text(json.dumps(document))
    with pytest.raises(SystemExit) as raised:
        load_inventory("production.py", tofu_env(tofu, document=recorded), monkeypatch)
    message = str(raised.value.code)
    assert message.startswith("inventories/production.py: output pyinfra_inventory lists no runner hosts")
    assert "bin/tofu -chdir=tofu apply" in message


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"volume_device": "disk/by-id/x"}, "pyinfra_inventory[1] (volume_device): data_device = 'disk/by-id/x'"),
        ({"ssh_hostname": ""}, "pyinfra_inventory[1]: ssh_hostname = '' is invalid"),
        ({"name": "runner-ctl-1"}, "two runner hosts are named 'runner-ctl-1'"),
        ({"name": "bad name"}, "pyinfra_inventory[1]: name = 'bad name' is invalid"),
        # The public address where the VPC one belongs: the lock channel would leave the VPC.
        ({"private_ipv4": "203.0.113.11"}, "pyinfra_inventory[1]: private_ipv4 = '203.0.113.11' is not a private"),
        ({"private_ipv4": "10.114.0"}, "pyinfra_inventory[1]: private_ipv4 = '10.114.0' is not a private IPv4"),
        ({"private_ipv4": "10.114.0.2"}, "'runner-ctl-1' and 'runner-ctl-2' share private_ipv4 '10.114.0.2'"),
    ],
    ids=["volume-device", "ssh-hostname", "duplicate-name", "name", "public-as-private", "malformed", "shared"],
)
def test_production_refuses_a_bad_runner_entry_in_one_line(
    tofu: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict[str, str], needle: str
) -> None:
    document = json.loads(RECORDED_OUTPUT.read_text())
    document["pyinfra_inventory"]["value"][1].update(change)
    recorded = tmp_path / "output.json"
    recorded.write_text(json.dumps(document))
    with pytest.raises(SystemExit) as raised:
        load_inventory("production.py", tofu_env(tofu, document=recorded), monkeypatch)
    message = str(raised.value.code)
    assert needle in message
    assert "\n" not in message


def test_production_refuses_output_that_is_not_json(
    tofu: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = tmp_path / "output.txt"
    recorded.write_text("Outputs:\n\nipv4_addresses = []\n")  # the human view, not -json
    with pytest.raises(SystemExit) as raised:
        load_inventory("production.py", tofu_env(tofu, document=recorded), monkeypatch)
    assert str(raised.value.code).startswith(
        "inventories/production.py: `bin/tofu -chdir=tofu output -json` printed no JSON object (Expecting value"
    )


def test_production_without_an_opentofu_executable_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as raised:
        load_inventory("production.py", {"RUNNER_CTL_TOFU": str(tmp_path / "no-such-tofu")}, monkeypatch)
    assert str(raised.value.code) == (
        f"inventories/production.py: {tmp_path / 'no-such-tofu'} not found: OpenTofu runs through bin/tofu "
        "(or RUNNER_CTL_TOFU names another executable)"
    )


def test_production_never_lets_tofu_prompt(tmp_path: Path) -> None:
    """A missing TF_VAR_state_passphrase must fail with tofu's message, not wait for input."""
    script = tmp_path / "tofu"
    script.write_text(
        "#!/bin/sh\n"
        '[ "$TF_INPUT" = 0 ] || { echo "Error: would prompt for var.state_passphrase" >&2; exit 1; }\n'
        '[ -t 0 ] && { echo "Error: stdin is a terminal" >&2; exit 1; }\n'
        'echo "Error: No value for required variable" >&2\n'
        "exit 1\n"
    )
    script.chmod(0o755)
    with pytest.raises(PrerequisiteError, match="failed: No value for required variable"):
        read_tofu_outputs([str(script), "output", "-json"], timeout=30)


def test_hosts_from_tofu_outputs_reads_the_documented_shape() -> None:
    outputs = json.loads(RECORDED_OUTPUT.read_text())
    assert hosts_from_tofu_outputs(outputs)[0] == RunnerHost(
        name="runner-ctl-1",
        ssh_hostname="203.0.113.10",
        data_device="/dev/disk/by-id/scsi-0DO_Volume_runner-ctl-1-cache",
        private_ipv4="10.114.0.2",
    )
    with pytest.raises(ConfigError, match="not in `tofu output -json` form"):
        hosts_from_tofu_outputs({"pyinfra_inventory": [{"name": "x"}]})


# ---- inventories/digitalocean.py -----------------------------------------------------------------


def standin_api() -> DigitalOceanApi:
    """Three tagged runners (one without a volume, one with a second, untagged volume) and a stranger."""
    tag = ["runner-ctl"]
    return DigitalOceanApi(
        token=TOKEN,
        droplets=[
            droplet(101, "runner-ctl-2", "203.0.113.11", "10.114.0.3", tags=tag, volume_ids=["vol-2", "vol-9"]),
            droplet(100, "runner-ctl-1", "203.0.113.10", "10.114.0.2", tags=tag, volume_ids=["vol-1"]),
            droplet(102, "runner-ctl-3", "203.0.113.12", "10.114.0.4", tags=tag, volume_ids=[]),
            droplet(200, "website", "198.51.100.5", "10.114.0.9", tags=["web"], volume_ids=[]),
        ],
        volumes=[
            volume("vol-1", "runner-ctl-1-cache", [100], tags=tag),
            volume("vol-2", "runner-ctl-2-cache", [101], tags=tag),
            volume("vol-9", "scratch", [101], tags=[]),
        ],
        # Two per page, so the three tagged droplets span two pages (python-digitalocean asks
        # for 200, the real API's maximum).
        max_per_page=2,
    )


@pytest.fixture
def api() -> Iterator[DigitalOceanApi]:
    with serve_digitalocean_api(standin_api()) as served:
        yield served


EXPECTED_DIGITALOCEAN = {
    "runner-ctl-1": {
        "ssh_hostname": "203.0.113.10",
        "ssh_user": "root",
        "data_device": "/dev/disk/by-id/scsi-0DO_Volume_runner-ctl-1-cache",
        "private_ipv4": "10.114.0.2",
    },
    "runner-ctl-2": {
        "ssh_hostname": "203.0.113.11",
        "ssh_user": "root",
        "data_device": "/dev/disk/by-id/scsi-0DO_Volume_runner-ctl-2-cache",
        "private_ipv4": "10.114.0.3",
    },
    "runner-ctl-3": {"ssh_hostname": "203.0.113.12", "ssh_user": "root", "private_ipv4": "10.114.0.4"},
}


def do_env(api: DigitalOceanApi, token: str = TOKEN) -> dict[str, str]:
    return {"DIGITALOCEAN_TOKEN": token, "DIGITALOCEAN_END_POINT": api.end_point}


def test_digitalocean_builds_runner_hosts_from_tagged_droplets(
    api: DigitalOceanApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts = load_inventory("digitalocean.py", do_env(api), monkeypatch)
    assert hosts == sorted(EXPECTED_DIGITALOCEAN.items())
    # Droplets by tag across both pages, then the volume list once: no per-droplet calls.
    paths = [request.split("?")[0].rstrip("/") for request in api.requests]
    assert paths == ["GET /v2/droplets", "GET /v2/droplets", "GET /v2/volumes", "GET /v2/volumes"]
    assert all("tag_name=runner-ctl" in request for request in api.requests[:2])


def test_pyinfra_loads_digitalocean_hosts(api: DigitalOceanApi) -> None:
    done = run_pyinfra("digitalocean.py", do_env(api))
    assert done.returncode == 0, done.stderr
    hosts = debug_inventory_hosts(done.stdout + done.stderr)
    assert sorted(hosts) == sorted(EXPECTED_DIGITALOCEAN)
    for name, expected in EXPECTED_DIGITALOCEAN.items():
        assert {key: hosts[name][key] for key in expected} == expected
        assert hosts[name].get("data_device") == expected.get("data_device")
    assert TOKEN not in done.stdout + done.stderr


def test_digitalocean_with_a_refused_token_fails_in_one_line(api: DigitalOceanApi) -> None:
    done = run_pyinfra("digitalocean.py", do_env(api, token="dop_v1_wrong"))  # noqa: S106 - a wrong token
    line = assert_one_line_failure(done, "digitalocean.py", "Unable to authenticate you", "DIGITALOCEAN_TOKEN")
    assert "dop_v1_wrong" not in done.stdout + done.stderr, line


def test_digitalocean_without_a_token_fails_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIGITALOCEAN_TOKEN", raising=False)
    monkeypatch.delenv("DIGITALOCEAN_ACCESS_TOKEN", raising=False)
    with pytest.raises(SystemExit) as raised:
        runpy.run_path(str(PROJECT_ROOT / "inventories" / "digitalocean.py"))
    assert str(raised.value.code) == (
        "inventories/digitalocean.py: set DIGITALOCEAN_TOKEN to a DigitalOcean API token (read access is enough)"
    )


def test_digitalocean_with_no_tagged_droplet_says_so(api: DigitalOceanApi, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as raised:
        load_inventory("digitalocean.py", {**do_env(api), "RUNNER_CTL_DO_TAG": "nobody"}, monkeypatch)
    assert str(raised.value.code).startswith("inventories/digitalocean.py: no droplets are tagged 'nobody'")


def test_digitalocean_unreachable_api_fails_in_one_line(tmp_path: Path) -> None:
    with serve_digitalocean_api(standin_api()) as stopped:
        end_point = stopped.end_point
    # The server is gone: connection refused on loopback, reported without a traceback.
    with pytest.raises(PrerequisiteError, match="DigitalOcean API request failed: ConnectionError") as raised:
        discover_droplet_hosts(TOKEN, "runner-ctl", end_point=end_point)
    assert "\n" not in str(raised.value)


def test_digitalocean_refuses_an_ambiguous_cache_volume(api: DigitalOceanApi) -> None:
    api.volumes[2]["tags"] = ["runner-ctl"]  # now both of runner-ctl-2's volumes carry the tag
    with pytest.raises(ConfigError, match=r"droplet runner-ctl-2: several volumes tagged 'runner-ctl'"):
        discover_droplet_hosts(TOKEN, "runner-ctl", end_point=api.end_point)


def test_production_host_data_carries_each_private_ipv4_or_none(
    tofu: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """private_ipv4 is per host: null in the output (a droplet outside any VPC) leaves the key out."""
    document = json.loads(RECORDED_OUTPUT.read_text())
    document["pyinfra_inventory"]["value"][1]["private_ipv4"] = None
    recorded = tmp_path / "output.json"
    recorded.write_text(json.dumps(document))
    hosts = dict(load_inventory("production.py", tofu_env(tofu, document=recorded), monkeypatch))
    assert hosts["runner-ctl-1"]["private_ipv4"] == "10.114.0.2"
    assert "private_ipv4" not in hosts["runner-ctl-2"]


def test_digitalocean_takes_private_ipv4_from_the_private_network_entry(api: DigitalOceanApi) -> None:
    # The private entry comes first in networks.v4 (as the real API lists it); a droplet without
    # one gets no private_ipv4 rather than its public address.
    api.droplets[2] = droplet(102, "runner-ctl-3", "203.0.113.12", None, tags=["runner-ctl"], volume_ids=[])
    hosts = dict(runner_hosts_group(discover_droplet_hosts(TOKEN, "runner-ctl", end_point=api.end_point)))
    assert [hosts[name].get("private_ipv4") for name in sorted(hosts)] == ["10.114.0.2", "10.114.0.3", None]


def test_digitalocean_refuses_a_public_address_typed_private(api: DigitalOceanApi) -> None:
    api.droplets[0]["networks"]["v4"][0]["ip_address"] = "198.51.100.7"
    with pytest.raises(ConfigError, match=r"droplet runner-ctl-2: private_ipv4 = '198.51.100.7' is not a private"):
        discover_droplet_hosts(TOKEN, "runner-ctl", end_point=api.end_point)


def test_runner_hosts_group_refuses_duplicate_names() -> None:
    host = RunnerHost(name="runner-ctl-1", ssh_hostname="203.0.113.10")
    assert runner_hosts_group([host]) == [("runner-ctl-1", {"ssh_hostname": "203.0.113.10", "ssh_user": "root"})]
    with pytest.raises(ConfigError, match="two runner hosts are named 'runner-ctl-1'"):
        runner_hosts_group([host, host])
