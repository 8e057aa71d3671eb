"""The BuildBuddy layer: its rc file per Bazel major, its key file, its bad input.

The rc checks render the layer's real template for each supported major and hold every
flag written against the version table (``runner_ctl.bazelflags``). The file checks run
the layer's real operations through pyinfra's ``@local`` connector into a temporary
directory (as tests/test_layer_secrets.py does for ``put_secret``); the bad-input checks
run the whole host deploy ``--dry`` and must stop before any operation.
"""

import grp
import hashlib
import json
import stat
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from deploys.buildbuddy import render_auth, render_rc

from runner_ctl.bazelflags import SUPPORTED_MAJORS, flags_for
from runner_ctl.layers.buildbuddy import BuildBuddySettings
from tests.conftest import PROJECT_ROOT
from tests.standins.remote_cache import serve_remote_cache
from tests.test_layer_secrets import pyinfra_local

# A late release of each supported major, and the first release where a spelling changes.
VERSIONS = ("4.2.3", "5.0.0", "5.4.1", "6.5.0", "7.0.0", "7.4.1", "8.0.0", "8.3.1")
PLANTED = "PlantedBuildBuddyKey0123"
FULL = BuildBuddySettings(
    buildbuddy_api_key="env:RC_TEST_BUILDBUDDY_KEY",
    buildbuddy_remote_execution=True,
    buildbuddy_instance_name="ci/linux",
    buildbuddy_build_metadata={"ROLE": "CI", "REPO_URL": "https://example.com/repo.git"},
)


def rc_flags(text: str) -> list[str]:
    """The flag names (without value) that an rc file's ``build`` lines carry."""
    names = []
    for line in text.splitlines():
        if not line or line.startswith("#") or line.startswith("try-import "):
            continue
        command, flag = line.split(" ", 1)
        assert command == "build", line
        assert " " not in flag, f"one flag per line: {line!r}"
        names.append(flag.split("=", 1)[0])
    return names


def test_every_supported_major_is_covered() -> None:
    assert {int(version.split(".")[0]) for version in VERSIONS} == set(SUPPORTED_MAJORS)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_rc_holds_only_flags_this_bazel_accepts(version: str) -> None:
    accepted = set(flags_for(version).values())
    written = rc_flags(render_rc(FULL, bazel_version=version, runner_group="runner"))
    written += rc_flags(render_auth(PLANTED, bazel_version=version))
    assert set(written) <= accepted, set(written) - accepted
    # Every setting of FULL reached the file.
    for flag in ("--bes_backend", "--bes_results_url", "--remote_cache", "--remote_executor", "--jobs"):
        assert flag in written
    for flag in ("--remote_instance_name", "--remote_timeout", "--remote_download_outputs", "--remote_header"):
        assert flag in written


@pytest.mark.parametrize(
    ("version", "compression", "legacy_outputs_off"),
    [
        ("4.2.3", None, True),
        ("5.0.0", "--experimental_remote_cache_compression", True),
        ("6.5.0", "--experimental_remote_cache_compression", True),
        ("7.0.0", "--remote_cache_compression", True),
        ("7.4.1", "--remote_cache_compression", True),
        ("8.0.0", "--remote_cache_compression", False),
    ],
)
def test_version_dependent_flags(version: str, compression: str | None, legacy_outputs_off: bool) -> None:
    written = rc_flags(render_rc(FULL, bazel_version=version, runner_group="runner"))
    compressions = [flag for flag in written if flag.endswith("remote_cache_compression")]
    assert compressions == ([compression] if compression else [])
    assert ("--nolegacy_important_outputs" in written) is legacy_outputs_off


@pytest.mark.parametrize(("version", "needed"), [("4.2.3", True), ("5.4.1", True), ("6.0.0", False), ("8.0.0", False)])
@pytest.mark.parametrize("outputs", ["all", "toplevel", "minimal"])
def test_build_without_the_bytes_gets_the_in_memory_flags_bazel_before_6_requires(
    version: str, needed: bool, outputs: str
) -> None:
    settings = FULL.model_copy(update={"buildbuddy_download_outputs": outputs})
    written = rc_flags(render_rc(settings, bazel_version=version, runner_group="runner"))
    wanted = ["--experimental_inmemory_jdeps_files", "--experimental_inmemory_dotd_files"]
    assert [flag for flag in written if "inmemory" in flag] == (wanted if needed and outputs != "all" else [])


def test_the_rc_carries_every_setting_and_no_key() -> None:
    text = render_rc(FULL, bazel_version="7.4.1", runner_group="runner")
    lines = set(text.splitlines())
    for line in (
        "build --bes_backend=grpcs://remote.buildbuddy.io",
        "build --bes_results_url=https://app.buildbuddy.io/invocation/",
        "build --remote_cache=grpcs://remote.buildbuddy.io",
        "build --remote_executor=grpcs://remote.buildbuddy.io",
        "build --jobs=50",
        "build --remote_instance_name=ci/linux",
        "build --remote_timeout=600",
        "build --remote_download_outputs=toplevel",
        "build --build_metadata=ROLE=CI",
        "build --build_metadata=REPO_URL=https://example.com/repo.git",
        "try-import /etc/bazel.d/buildbuddy-auth.bazelrc",
    ):
        assert line in lines, line
    assert "x-buildbuddy-api-key" not in text
    assert render_auth(PLANTED, bazel_version="7.4.1").splitlines()[-1] == (
        f"build --remote_header=x-buildbuddy-api-key={PLANTED}"
    )


def test_a_self_hosted_http_cache_gets_no_bes_no_compression_and_no_key_import() -> None:
    settings = BuildBuddySettings(
        buildbuddy_unauthenticated=True,
        buildbuddy_endpoint="http://10.0.0.5:8080",
        buildbuddy_bes=False,
        buildbuddy_results_url=None,
        buildbuddy_download_outputs="all",
    )
    text = render_rc(settings, bazel_version="7.4.1", runner_group="runner")
    written = rc_flags(text)
    assert "build --remote_cache=http://10.0.0.5:8080" in text.splitlines()
    assert "--remote_cache_compression" not in written  # Bazel compresses gRPC transfers only
    assert not [flag for flag in written if flag.startswith("--bes_") or "legacy" in flag]
    assert "try-import" not in text
    assert "build --remote_download_outputs=all" in text.splitlines()


def test_the_layer_is_off_by_default() -> None:
    assert not BuildBuddySettings().enabled
    assert BuildBuddySettings(buildbuddy_api_key="env:X").enabled


# ---- the layer's operations, for real, into a temporary directory ---------------------------

# The layer's own operations (deploys.buildbuddy.apply) on validated group data, with its
# files in RC_TEST_RC_DIR instead of /etc/bazel.d.
LAYER_INTO_DIR = """
import os
from deploys.buildbuddy import apply
from runner_ctl.layerkit import host_settings
apply(host_settings(), rc_dir=os.environ["RC_TEST_RC_DIR"])
"""
# An existing group other than ours, so that the key file's group is seen to be set.
KEY_GROUP = "daemon"


def layer_locally(
    tmp_path: Path, data: dict[str, Any], *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    deploy = tmp_path / "buildbuddy_into_dir.py"
    deploy.write_text(LAYER_INTO_DIR)
    group_data = write_group_data(tmp_path, data)
    env = {"RC_TEST_RC_DIR": str(tmp_path / "bazel.d"), **(env or {})}
    return pyinfra_local(deploy, *extra, "--group-data", str(group_data), env=env)


def write_group_data(tmp_path: Path, data: dict[str, Any]) -> Path:
    group_data = tmp_path / "group_data"
    group_data.mkdir(exist_ok=True)
    (group_data / "all.py").write_text("".join(f"{key} = {value!r}\n" for key, value in data.items()))
    return group_data


def changed(done: subprocess.CompletedProcess[str]) -> int:
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout)["results"]["totals"]["success"])


WITH_KEY = {"runner_user": KEY_GROUP, "bazel_version": "7.4.1", "buildbuddy_api_key": "env:RC_TEST_BUILDBUDDY_KEY"}


def test_the_key_file_is_0640_root_runner_group_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    env = {"RC_TEST_BUILDBUDDY_KEY": PLANTED}
    assert changed(layer_locally(tmp_path, WITH_KEY, "--json", env=env)) > 0
    rc_dir = tmp_path / "bazel.d"
    key_file, rc_file = rc_dir / "buildbuddy-auth.bazelrc", rc_dir / "buildbuddy.bazelrc"
    status = key_file.stat()
    assert stat.S_IMODE(status.st_mode) == 0o640
    assert (status.st_uid, grp.getgrgid(status.st_gid).gr_name) == (0, KEY_GROUP)
    assert f"--remote_header=x-buildbuddy-api-key={PLANTED}" in key_file.read_text()
    assert stat.S_IMODE(rc_file.stat().st_mode) == 0o644
    assert PLANTED not in rc_file.read_text()
    assert f"try-import {key_file}" in rc_file.read_text().splitlines()
    # The key is in that one file only.
    holding = [path for path in tmp_path.rglob("*") if path.is_file() and PLANTED in path.read_text(errors="replace")]
    assert holding == [key_file]
    assert changed(layer_locally(tmp_path, WITH_KEY, "--json", env=env)) == 0


def test_diff_never_shows_the_key(tmp_path: Path) -> None:
    first = layer_locally(tmp_path, WITH_KEY, "--diff", "-vvv", env={"RC_TEST_BUILDBUDDY_KEY": PLANTED + "old"})
    rotated = layer_locally(tmp_path, WITH_KEY, "--diff", "-vvv", env={"RC_TEST_BUILDBUDDY_KEY": PLANTED + "new"})
    for done in (first, rotated):
        assert done.returncode == 0, done.stderr
        assert PLANTED not in done.stdout + done.stderr
        assert "content not shown" in done.stderr
    assert PLANTED + "new" in (tmp_path / "bazel.d" / "buildbuddy-auth.bazelrc").read_text()


def test_no_key_removes_the_config_says_so_and_stays_removed(tmp_path: Path) -> None:
    env = {"RC_TEST_BUILDBUDDY_KEY": PLANTED}
    assert changed(layer_locally(tmp_path, WITH_KEY, "--json", env=env)) > 0
    without = {key: value for key, value in WITH_KEY.items() if key != "buildbuddy_api_key"}
    removed = layer_locally(tmp_path, without)
    assert removed.returncode == 0, removed.stderr
    assert "BuildBuddy off (no buildbuddy_api_key)" in removed.stdout + removed.stderr
    assert list((tmp_path / "bazel.d").iterdir()) == []
    assert changed(layer_locally(tmp_path, without, "--json")) == 0


def test_a_self_hosted_endpoint_without_auth_writes_no_key_file(tmp_path: Path) -> None:
    data = {
        "runner_user": KEY_GROUP,
        "bazel_version": "4.2.3",
        "buildbuddy_unauthenticated": True,
        "buildbuddy_endpoint": "grpc://buildbuddy.internal:1985",
        "buildbuddy_results_url": "http://buildbuddy.internal:8080/invocation/",
    }
    assert changed(layer_locally(tmp_path, data, "--json")) > 0
    rc_dir = tmp_path / "bazel.d"
    assert sorted(path.name for path in rc_dir.iterdir()) == ["buildbuddy.bazelrc"]
    text = (rc_dir / "buildbuddy.bazelrc").read_text()
    assert "build --bes_backend=grpc://buildbuddy.internal:1985" in text.splitlines()
    assert "try-import" not in text
    assert changed(layer_locally(tmp_path, data, "--json")) == 0


# ---- bad input: one line naming the key, before any operation --------------------------------


def dry_host_deploy(tmp_path: Path, data: dict[str, Any], env: dict[str, str] | None = None) -> str:
    """The whole host deploy, dry, with this group data; it must stop before any operation."""
    # Bazel from apt: the Bazel layer would otherwise fetch Bazelisk on this machine first.
    layers = {"layers": ["base", "bazel", "buildbuddy"], "bazel_source": "apt", "bazel_version": "4.2.3"}
    group_data = write_group_data(tmp_path, {**layers, **data})
    done = pyinfra_local(PROJECT_ROOT / "deploys" / "runner_host.py", "--dry", "--group-data", str(group_data), env=env)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output
    assert "Starting operation" not in output
    return output


@pytest.mark.parametrize(
    ("data", "env", "key", "problem"),
    [
        ({"buildbuddy_endpoint": "ftp://cache.example.com"}, {}, "buildbuddy_endpoint", "grpc://, grpcs://"),
        ({"buildbuddy_endpoint": "remote.buildbuddy.io"}, {}, "buildbuddy_endpoint", "grpc://, grpcs://"),
        ({"buildbuddy_endpoint": "grpcs://host:99999"}, {}, "buildbuddy_endpoint", "port"),
        ({"buildbuddy_endpoint": "grpcs://ho st"}, {}, "buildbuddy_endpoint", "whitespace"),
        ({"buildbuddy_results_url": "grpcs://app.buildbuddy.io"}, {}, "buildbuddy_results_url", "http://"),
        (
            {"buildbuddy_endpoint": "http://cache.example.com", "buildbuddy_api_key": "env:RC_TEST_BB"},
            {"RC_TEST_BB": PLANTED},
            "buildbuddy_endpoint",
            "buildbuddy_bes needs gRPC",
        ),
        ({"buildbuddy_unauthenticated": True}, {}, "buildbuddy_unauthenticated", "BuildBuddy cloud"),
        ({"buildbuddy_build_metadata": {"ROLE": "two words"}}, {}, "buildbuddy_build_metadata", "one-word"),
        ({"buildbuddy_jobs": 0}, {}, "buildbuddy_jobs", "1 to 5000"),
        (
            {"buildbuddy_api_key": "env:RC_TEST_UNSET_BB_KEY"},
            {},
            "buildbuddy_api_key",
            "RC_TEST_UNSET_BB_KEY is not set",
        ),
        (
            {"buildbuddy_api_key": "file:/nonexistent/bb.key"},
            {},
            "buildbuddy_api_key",
            "cannot read /nonexistent/bb.key",
        ),
        ({"buildbuddy_api_key": PLANTED}, {}, "buildbuddy_api_key", "not a secret reference"),
        ({"buildbuddy_api_key": "generated:bb"}, {}, "buildbuddy_api_key", "BuildBuddy issued"),
        (
            {"buildbuddy_api_key": "env:RC_TEST_BB"},
            {"RC_TEST_BB": PLANTED + " x"},
            "buildbuddy_api_key",
            "letters, digits",
        ),
    ],
    ids=lambda value: None if isinstance(value, (dict, str)) else str(value),
)
def test_bad_input_is_one_line_naming_the_key(
    tmp_path: Path, data: dict[str, Any], env: dict[str, str], key: str, problem: str
) -> None:
    output = dry_host_deploy(tmp_path, data, {"RC_TEST_UNSET_BB_KEY": "", **env})
    errors = [line for line in output.splitlines() if key in line and problem in line]
    assert len(errors) == 1, output
    assert PLANTED not in output


def test_the_cache_stand_in_speaks_bazels_http_protocol() -> None:
    blob = b"an output"
    digest = hashlib.sha256(blob).hexdigest()
    with serve_remote_cache() as cache, httpx.Client(base_url=cache.url("127.0.0.1"), timeout=10) as client:
        assert client.get(f"/cas/{digest}").status_code == 404
        assert client.put(f"/cas/{digest}", content=blob).status_code == 200
        assert client.put(f"/cas/{'0' * 64}", content=blob).status_code == 400  # content must match its key
        assert client.head(f"/ci/cas/{digest}").status_code == 200  # under an instance name too
        assert client.get(f"/cas/{digest}").content == blob
        assert client.put(f"/ac/{'a' * 64}", content=b"result").status_code == 200
        assert client.get(f"/ac/{'a' * 64}").content == b"result"
        assert client.get("/ac/not-a-digest").status_code == 404
    assert (cache.counts.cas_hits, cache.counts.cas_misses, cache.counts.ac_hits) == (2, 1, 1)
    assert (cache.counts.puts, cache.counts.refused) == (2, 1)
