"""The bazel layer off the host: its settings, its rendered files, and its scripts run for real.

The wrapper and the prune script are rendered from the layer's templates and run here as
real processes (the prune script against real directories and a real process posing as a
Bazel server); the host checks (tests/host/test_bazel.py) repeat the essentials with the
real Bazel.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from runner_ctl.bazelflags import SUPPORTED_MAJORS, flags_for
from runner_ctl.errors import ConfigError
from runner_ctl.hostdata import validate_host_data
from runner_ctl.layerkit import render_template
from runner_ctl.layers.bazel import APT_BAZEL_VERSION, TESTHOST_DATA, BazelSettings

TEMPLATES = Path(__file__).resolve().parents[1] / "templates" / "bazel"
DAY = 86400


def _script(tmp_path: Path, template: str, **values: Any) -> Path:
    path = tmp_path / template.removesuffix(".j2")
    path.write_text(render_template(TEMPLATES / template, **values))
    path.chmod(0o755)
    return path


# ---- settings --------------------------------------------------------------------------


def test_defaults_are_valid_and_pin_bazelisk() -> None:
    settings = BazelSettings()
    assert settings.bazel_source == "bazelisk"
    assert settings.bazelisk_url("x86_64").endswith(f"/v{settings.bazel_bazelisk_version}/bazelisk-linux-amd64")
    assert set(settings.bazel_bazelisk_sha256) == {"x86_64", "aarch64"}
    assert BazelSettings.model_validate(TESTHOST_DATA).bazel_version == APT_BAZEL_VERSION


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"bazel_version": "9.0.0"}, "bazel_version"),
        ({"bazel_version": "3.7.2"}, "bazel_version"),
        ({"bazel_version": "7.4"}, "bazel_version"),
        ({"bazel_bazelisk_sha256": {"x86_64": "abc123"}}, "bazel_bazelisk_sha256"),
        ({"bazel_bazelisk_sha256": {"x86_64": "Z" * 64}}, "bazel_bazelisk_sha256"),
        ({"bazel_bazelisk_sha256": {"riscv64": "a" * 64}}, "bazel_bazelisk_sha256"),
        ({"bazel_prune_threshold_percent": 0}, "bazel_prune_threshold_percent"),
        ({"bazel_prune_threshold_percent": 100}, "bazel_prune_threshold_percent"),
        ({"bazel_bazelisk_url": "ftp://mirror/bazelisk"}, "bazel_bazelisk_url"),
        ({"bazel_bazelisk_url": "https://mirror/{os}/bazelisk"}, "bazel_bazelisk_url"),
    ],
)
def test_bad_values_are_refused_naming_the_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ValidationError) as caught:
        BazelSettings.model_validate(data)
    assert caught.value.errors()[0]["loc"] == (key,)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"bazel_version": "9.1.0"}, "bazel_version = '9.1.0' is invalid (Bazel 9.1.0: major 9 is not supported"),
        ({"bazel_version": "7.4"}, "bazel_version = '7.4' is invalid (not a Bazel release X.Y.Z"),
        ({"bazel_source": "apt"}, "bazel_version = '7.4.1' is invalid (Debian's bazel-bootstrap is 4.2.3"),
        ({"bazel_bazelisk_sha256": {"x86_64": "abc"}}, "bazel_bazelisk_sha256 = {'x86_64': 'abc'} is invalid"),
        ({"bazel_prune_threshold_percent": 100}, "bazel_prune_threshold_percent = 100 is invalid"),
        ({"bazel_prune_threshold_percent": 0}, "expected a whole percentage from 1 to 99"),
    ],
)
def test_bad_group_data_is_one_line_naming_the_key(data: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_host_data(data)
    message = str(caught.value)
    assert says in message
    assert "\n" not in message


# ---- /etc/bazel.bazelrc ------------------------------------------------------------------


def _bazelrc(version: str, *, disk_cache: bool) -> str:
    return render_template(
        TEMPLATES / "bazel.bazelrc.j2",
        version=version,
        flags=flags_for(version),
        output_user_root="/var/lib/ci/bazel/output",
        max_idle_secs=86400,
        repository_cache="/var/lib/ci/bazel/repository-cache",
        disk_cache="/var/lib/ci/bazel/disk-cache" if disk_cache else "",
        disk_cache_max_size_gb=20,
        disk_cache_max_age_days=14,
    )


@pytest.mark.parametrize("major", SUPPORTED_MAJORS)
def test_bazelrc_writes_only_flags_the_version_has(major: int) -> None:
    version = f"{major}.{4 if major == 7 else 0}.0"
    known = set(flags_for(version).values())
    lines = [line for line in _bazelrc(version, disk_cache=True).splitlines() if line and not line.startswith("#")]
    for line in lines:
        command, _, rest = line.partition(" ")
        if command == "try-import":
            continue
        assert command in ("startup", "build", "fetch", "query"), line
        assert rest.split("=", 1)[0] in known, line
    assert "try-import /etc/bazel.d/buildbuddy.bazelrc" in lines
    assert "try-import /etc/bazel.d/local.bazelrc" in lines
    assert "startup --output_user_root=/var/lib/ci/bazel/output" in lines
    assert "startup --max_idle_secs=86400" in lines


@pytest.mark.parametrize(("version", "gc"), [("4.2.3", False), ("7.3.1", False), ("7.4.1", True), ("8.0.0", True)])
def test_disk_cache_gc_flags_follow_the_version(version: str, gc: bool) -> None:
    text = _bazelrc(version, disk_cache=True)
    assert "build --disk_cache=/var/lib/ci/bazel/disk-cache" in text
    assert ("--experimental_disk_cache_gc_max_size=20G" in text) is gc
    assert ("--experimental_disk_cache_gc_max_age=14d" in text) is gc
    assert "disk_cache" not in _bazelrc(version, disk_cache=False)


# ---- the wrapper -------------------------------------------------------------------------

_REPORT = "import json, os, sys; print(json.dumps({'argv': sys.argv[1:], 'env': dict(os.environ)}))"


@pytest.mark.parametrize("source", ["apt", "bazelisk"])
def test_wrapper_drops_only_the_tracking_id_and_passes_everything_else(tmp_path: Path, source: str) -> None:
    real = tmp_path / "real-bazel"
    real.write_text(f"#!{sys.executable}\n{_REPORT}\n")
    real.chmod(0o755)
    wrapper = _script(
        tmp_path, "bazel-wrapper.sh.j2", source=source, real_bazel=real, bazelisk_home="/data/bazelisk", version="7.4.1"
    )
    # LC_CTYPE set, so the reporting Python adds none of its own (PEP 538).
    env = {
        "PATH": "/usr/bin:/bin",
        "LC_CTYPE": "C.UTF-8",
        "RUNNER_TRACKING_ID": "job1",
        "KEEP": "a b  c",
        "BAZELISK_HOME": "/mine",
    }
    done = subprocess.run(
        [str(wrapper), "build", "//...", "--define=x=a b", ""], env=env, capture_output=True, text=True, check=True
    )
    report = json.loads(done.stdout)
    assert report["argv"] == ["build", "//...", "--define=x=a b", ""]
    assert "RUNNER_TRACKING_ID" not in report["env"]
    assert report["env"]["KEEP"] == "a b  c"
    assert report["env"]["BAZELISK_HOME"] == "/mine"  # the caller's own value wins
    if source == "bazelisk":
        assert report["env"]["USE_BAZEL_FALLBACK_VERSION"] == "silent:7.4.1"
        unset = {k: v for k, v in env.items() if k != "BAZELISK_HOME"}
        again = json.loads(subprocess.run([str(wrapper)], env=unset, capture_output=True, text=True, check=True).stdout)
        assert again["env"]["BAZELISK_HOME"] == "/data/bazelisk"
    else:
        assert set(report["env"]) - {"PWD", "SHLVL", "_"} == set(env) - {"RUNNER_TRACKING_ID"}


# ---- the prune script --------------------------------------------------------------------


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for sub in ("bazel/output", "bazel/repository-cache/content_addressable/sha256/aa", "bazel/disk-cache/ac"):
        (root / sub).mkdir(parents=True)
    return root


def _output_base(volume: Path, name: str, age_days: float) -> Path:
    base = volume / "bazel" / "output" / name
    (base / "server").mkdir(parents=True)
    (base / "execroot" / "ws").mkdir(parents=True)
    (base / "execroot" / "ws" / "out.txt").write_bytes(b"x" * 4096)
    (base / "command.log").write_text("log")
    past = time.time() - age_days * DAY
    for path in (base / "execroot" / "ws" / "out.txt", base / "command.log", base / "server", base / "execroot", base):
        os.utime(path, (past, past))
    return base


@pytest.fixture
def live_server(volume: Path) -> Iterator[Path]:
    """A real process that names its output base on its command line, as a Bazel server does."""
    base = _output_base(volume, "b" * 32, age_days=40)
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", f"--output_base={base}"],
    )
    (base / "server" / "server.pid.txt").write_text(str(process.pid))
    past = time.time() - 40 * DAY
    for path in (base / "server", base):
        os.utime(path, (past, past))
    try:
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def _prune(tmp_path: Path, volume: Path, *, threshold: int, disk_cache: bool = True) -> str:
    script = _script(
        tmp_path,
        "bazel-prune.sh.j2",
        output_user_root=volume / "bazel" / "output",
        repository_cache=volume / "bazel" / "repository-cache",
        disk_cache=volume / "bazel" / "disk-cache" if disk_cache else "",
        data_dir=volume,
        unused_days=14,
        threshold=threshold,
    )
    done = subprocess.run(["/bin/sh", str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _cache_entry(volume: Path) -> Path:
    entry = volume / "bazel" / "repository-cache" / "content_addressable" / "sha256" / "aa" / "file"
    entry.write_bytes(b"y" * 8192)
    return entry


def test_prune_frees_old_output_bases_and_keeps_recent_and_live_ones(
    tmp_path: Path, volume: Path, live_server: Path
) -> None:
    old = _output_base(volume, "a" * 32, age_days=30)
    recent = _output_base(volume, "c" * 32, age_days=2)
    dead = _output_base(volume, "d" * 32, age_days=30)
    (dead / "server" / "server.pid.txt").write_text("999999999")  # a server long gone
    os.utime(dead / "server", (time.time() - 30 * DAY,) * 2)
    install = volume / "bazel" / "output" / "install"
    install.mkdir()
    log = _prune(tmp_path, volume, threshold=99)
    assert not old.exists()
    assert not dead.exists()
    assert recent.is_dir()
    assert live_server.is_dir()
    assert install.is_dir()  # not an output base: never touched
    assert f"freed output base {old}: " in log
    assert f"kept output base {live_server}: its Bazel server (PID " in log
    assert "caches left as they are" in log


def test_prune_trims_caches_above_the_threshold_only_without_a_live_server(
    tmp_path: Path, volume: Path, live_server: Path
) -> None:
    entry = _cache_entry(volume)
    # This machine's disk is more than 1 % used: the threshold is exceeded.
    log = _prune(tmp_path, volume, threshold=1)
    assert entry.is_file(), log
    assert "caches not trimmed" in log
    (live_server / "server" / "server.pid.txt").unlink()
    log = _prune(tmp_path, volume, threshold=1)
    assert not entry.exists()
    assert f"trimmed {volume}/bazel/repository-cache: freed " in log
    assert f"trimmed {volume}/bazel/disk-cache: freed " in log


def test_prune_leaves_caches_below_the_threshold(tmp_path: Path, volume: Path) -> None:
    entry = _cache_entry(volume)
    log = _prune(tmp_path, volume, threshold=99, disk_cache=False)
    assert entry.is_file()
    assert "caches left as they are" in log


def test_prune_with_no_output_root_yet(tmp_path: Path, volume: Path) -> None:
    shutil.rmtree(volume / "bazel" / "output")
    assert "caches left as they are" in _prune(tmp_path, volume, threshold=99)
