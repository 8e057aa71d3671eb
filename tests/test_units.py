"""Small pure pieces: pyinfra result parsing, JUnit parsing, address slots, cache keys."""

import subprocess
import sys
from pathlib import Path

import pytest

from runner_ctl.errors import ConfigError
from runner_ctl.hostchecks import parse_junit
from runner_ctl.hostdata import LAYER_APT_PACKAGES
from runner_ctl.paths import cache_dir
from runner_ctl.pyinfra_run import parse_results
from runner_ctl.testhost._images import apt_repo_key, repo_packages, rootfs_key
from runner_ctl.testhost._network import slot_network


def test_parse_pyinfra_json_results() -> None:
    document = {
        "plan": [],
        "results": {
            "operations": [
                {"name": "base | A", "success": ["h1"], "error": [], "no_change": ["h2"]},
                {"name": "base | B", "success": [], "error": [], "no_change": ["h1", "h2"]},
            ],
            "totals": {"hosts": 4, "success": 1, "error": 0, "no_change": 3},
            "failed_hosts": [],
        },
    }
    assert parse_results(document) == (4, 1, 0, ("base | A",))


def test_parse_pyinfra_dry_run_is_refused() -> None:
    with pytest.raises(ValueError, match="no results"):
        parse_results({"plan": [], "results": None})


def test_parse_junit_from_a_real_pytest_run(tmp_path: Path) -> None:
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n"
        "def test_ok(): pass\n"
        "def test_also_ok(): pass\n"
        "def test_bad(): assert False\n"
        "@pytest.mark.skip(reason='demo')\n"
        "def test_skipped(): pass\n"
    )
    report = tmp_path / "report.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        check=False,
    )
    assert parse_junit(report) == (2, 1, ("test_bad",))


def test_slots_are_disjoint_slash_30s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNNER_CTL_TESTHOST_SUBNET", raising=False)
    first, second = slot_network(0, "rh1"), slot_network(1, "rh2")
    assert (first.controller_address, first.host_address) == ("10.213.0.1", "10.213.0.2")
    assert (second.controller_address, second.host_address) == ("10.213.0.5", "10.213.0.6")
    assert len(slot_network(63, "rh64").veth) <= 15  # Linux interface names


def test_the_address_range_can_be_moved_and_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_CTL_TESTHOST_SUBNET", "10.99.0.0/29")
    assert slot_network(1, "x").host_address == "10.99.0.6"
    with pytest.raises(ConfigError, match="no free test host address"):
        slot_network(2, "x")
    monkeypatch.setenv("RUNNER_CTL_TESTHOST_SUBNET", "not-a-network")
    with pytest.raises(ConfigError, match="RUNNER_CTL_TESTHOST_SUBNET"):
        slot_network(0, "x")


def test_cache_keys_follow_the_package_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    rootfs, repo = rootfs_key(), apt_repo_key()
    assert set(repo_packages()) == {p for ps in LAYER_APT_PACKAGES.values() for p in ps}
    monkeypatch.setitem(LAYER_APT_PACKAGES, "extra", ("hello",))
    assert "hello" in repo_packages()
    assert apt_repo_key() != repo
    assert rootfs_key() == rootfs


def test_cache_dir_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RUNNER_CTL_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("RUNNER_CTL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x" / "runner-ctl"
