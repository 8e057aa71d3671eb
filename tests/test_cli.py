"""The CLI as a user meets it: bad input gets one line and a non-zero exit, never a traceback."""

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, runner_ctl


def _copy_project(tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    for part in ("deploys", "inventories", "templates"):
        shutil.copytree(PROJECT_ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _assert_one_line_error(stderr: str, *fragments: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    ("assignment", "key", "form"),
    [
        ('swap_size_mb = "big"', "swap_size_mb", "whole number of MiB"),
        ("sshd_port = 70000", "sshd_port", "TCP port number from 1 to 65535"),
        ('sshd_allow_cidrs = ["10.1.2.0/33"]', "sshd_allow_cidrs", "list of CIDRs"),
        ('layers = ["base", "nomad"]', "layers", "layer names"),
    ],
)
def test_rehearse_rejects_bad_group_data_before_touching_a_host(
    tmp_path: Path, assignment: str, key: str, form: str
) -> None:
    project = _copy_project(tmp_path)
    with (project / "inventories" / "group_data" / "all.py").open("a") as handle:
        handle.write(f"\n{assignment}\n")
    cache = tmp_path / "cache"
    done = runner_ctl(
        "rehearse",
        "--deploy",
        str(project / "deploys" / "runner_host.py"),
        "--json",
        env={"RUNNER_CTL_CACHE_DIR": str(cache)},
    )
    assert done.returncode == 2
    _assert_one_line_error(done.stderr, key, form)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ok"] is False
    assert report["failed_step"] == "validate"
    assert not (cache / "testhost").exists()  # nothing was built, booted or touched


def test_rehearse_with_a_missing_deploy_file(tmp_path: Path) -> None:
    done = runner_ctl("rehearse", "--deploy", str(tmp_path / "nope.py"))
    assert done.returncode == 2
    _assert_one_line_error(done.stderr, "no such file")


def test_testhost_needs_root(tmp_path: Path) -> None:
    done = runner_ctl(
        "testhost",
        "up",
        env={"RUNNER_CTL_CACHE_DIR": str(tmp_path)},
        as_user="65534",
    )
    assert done.returncode == 2
    _assert_one_line_error(done.stderr, "need root", "apt-get install systemd-container debootstrap")


def test_testhost_names_missing_tools(tmp_path: Path) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    done = runner_ctl("testhost", "up", env={"PATH": str(empty_bin), "RUNNER_CTL_CACHE_DIR": str(tmp_path)})
    assert done.returncode == 2
    _assert_one_line_error(done.stderr, "apt-get install systemd-container debootstrap", "missing:")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["testhost", "down"], "name exactly one test host, or pass --all"),
        (["testhost", "down", "ghost"], "no test host named 'ghost'"),
        (["testhost", "ssh", "ghost"], "no test host named 'ghost'"),
        (["testhost", "up", "--name", "Bad_Name"], "test host name 'Bad_Name' is invalid"),
        (["deploy"], "--env and --commit are required"),
        (["deploy", "--env", "prod", "--commit", "abc"], "no deploy lock token"),
        (["latency", "report"], "give exactly one source"),
    ],
)
def test_cli_usage_errors(tmp_path: Path, args: list[str], fragment: str) -> None:
    done = runner_ctl(*args, env={"RUNNER_CTL_CACHE_DIR": str(tmp_path)})
    assert done.returncode == 2
    _assert_one_line_error(done.stderr, fragment)


def test_every_command_group_exists() -> None:
    done = runner_ctl("--help")
    assert done.returncode == 0
    for group in ("rehearse", "testhost", "deploy", "lock", "latency", "runners", "tools"):
        assert group in done.stdout
