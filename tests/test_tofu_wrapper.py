"""bin/tofu: pinned, verified, cached, against a loopback stand-in of the release server.

Each test copies the wrapper and its standard-library helper into a scratch checkout, so
the wrapper finds "its" lockfile relative to its own location exactly as in a clone.
"""

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from runner_ctl.tools import current_platform, load_lockfile, select_binary
from tests.standins.release_server import ReleaseServer, serve_releases

ROOT = Path(__file__).resolve().parents[1]
RELEASE_PATH = "/opentofu/opentofu/releases/download/v9.9.9/tofu_9.9.9_{}.zip"
# The stand-in "tofu": prints each argument in brackets, so quoting problems show.
FAKE_TOFU = b'#!/bin/sh\nfor arg in "$@"; do printf "<%s>\\n" "$arg"; done\n'


def fake_archive(script: bytes = FAKE_TOFU) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("LICENSE", "stand-in\n")
        bundle.writestr("tofu", script)
    return buffer.getvalue()


@dataclass
class Checkout:
    root: Path
    cache: Path
    server: ReleaseServer
    archive: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.archive).hexdigest()

    @property
    def wrapper(self) -> Path:
        return self.root / "bin" / "tofu"

    def write_lockfile(self, entries: list[dict[str, str]]) -> None:
        document = {"tofu": {"binaries": entries}}
        (self.root / "multitool.lock.json").write_text(json.dumps(document, indent=2) + "\n")

    def entry(self, os_name: str, cpu: str, sha256: str | None = None, url: str | None = None) -> dict[str, str]:
        return {
            "kind": "archive",
            "url": url or self.server.url(RELEASE_PATH.format(f"{os_name}_{cpu}")),
            "file": "tofu",
            "sha256": sha256 or self.digest,
            "os": os_name,
            "cpu": cpu,
            "type": "zip",
        }

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {"PATH": os.environ["PATH"], "HOME": str(self.root), "RUNNER_CTL_CACHE_DIR": str(self.cache)}
        full_env.update(env or {})
        return subprocess.run(
            [str(self.wrapper), *args], capture_output=True, text=True, timeout=60, env=full_env, check=False
        )

    def cached_digests(self) -> list[str]:
        tools = self.cache / "tools"
        return sorted(p.name for p in tools.iterdir() if p.is_dir()) if tools.is_dir() else []


@pytest.fixture
def checkout(tmp_path: Path) -> Iterator[Checkout]:
    root = tmp_path / "clone"
    (root / "bin").mkdir(parents=True)
    (root / "src" / "runner_ctl").mkdir(parents=True)
    shutil.copy2(ROOT / "bin" / "tofu", root / "bin" / "tofu")
    shutil.copy2(ROOT / "src" / "runner_ctl" / "tools.py", root / "src" / "runner_ctl" / "tools.py")
    archive = fake_archive()
    os_name, cpu = current_platform()
    server = ReleaseServer(files={RELEASE_PATH.format(f"{os_name}_{cpu}"): archive})
    with serve_releases(server):
        made = Checkout(root=root, cache=tmp_path / "cache", server=server, archive=archive)
        made.write_lockfile([made.entry("macos", "arm64", sha256="0" * 64), made.entry(os_name, cpu)])
        yield made


def this_path(checkout: Checkout) -> str:
    return RELEASE_PATH.format("_".join(current_platform()))


def test_first_run_downloads_verifies_and_caches(checkout: Checkout) -> None:
    result = checkout.run("version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "<version>\n"
    assert checkout.server.hits[this_path(checkout)] == 1
    cached = checkout.cache / "tools" / checkout.digest / "tofu"
    assert cached.read_bytes() == FAKE_TOFU
    assert os.access(cached, os.X_OK)
    # Only the verified directory and its lock file: no temporaries left behind.
    leftovers = [p.name for p in (checkout.cache / "tools").iterdir() if p.name.startswith(".partial")]
    assert leftovers == []


def test_second_run_works_offline_and_without_python(checkout: Checkout) -> None:
    assert checkout.run("init").returncode == 0
    checkout.server.files.clear()  # the "server" has nothing any more
    # No python3 on PATH: the cached path is bash alone.
    result = subprocess.run(
        ["/bin/bash", str(checkout.wrapper), "plan"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/nonexistent", "HOME": str(checkout.root), "RUNNER_CTL_CACHE_DIR": str(checkout.cache)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "<plan>\n"
    assert checkout.server.hits[this_path(checkout)] == 1


def test_arguments_pass_through_untouched(checkout: Checkout) -> None:
    args = ["plan", "-var", "name=two words", "", "*", "$HOME", "-chdir=tofu dir", 'quote\'d "x"']
    for _ in range(2):  # first (download) and cached runs alike
        result = checkout.run(*args)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [f"<{arg}>" for arg in args]


def test_tampered_archive_is_refused_and_nothing_cached(checkout: Checkout) -> None:
    checkout.server.files[this_path(checkout)] = fake_archive(b"#!/bin/sh\necho evil\n")
    actual = hashlib.sha256(checkout.server.files[this_path(checkout)]).hexdigest()
    result = checkout.run("version")
    assert result.returncode != 0
    assert "evil" not in result.stdout
    assert len(result.stderr.strip().splitlines()) == 1
    assert checkout.digest in result.stderr and actual in result.stderr
    assert "sha256 mismatch" in result.stderr
    assert checkout.cached_digests() == []


def test_four_concurrent_first_runs_download_once(checkout: Checkout) -> None:
    checkout.server.delay_s = 0.5  # all four are in flight before the first finishes
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda n: checkout.run("apply", f"run-{n}"), range(4)))
    for n, result in enumerate(results):
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"<apply>\n<run-{n}>\n"
    assert checkout.server.hits[this_path(checkout)] == 1
    assert checkout.cached_digests() == [checkout.digest]


def test_interrupted_download_caches_nothing_and_next_run_recovers(checkout: Checkout) -> None:
    checkout.server.truncate.add(this_path(checkout))
    result = checkout.run("version")
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert checkout.cached_digests() == []
    checkout.server.truncate.clear()
    again = checkout.run("version")
    assert again.returncode == 0, again.stderr
    assert again.stdout == "<version>\n"


def test_unsupported_platform_lists_the_entries(checkout: Checkout) -> None:
    checkout.write_lockfile([checkout.entry("macos", "arm64"), checkout.entry("windows", "x86_64")])
    result = checkout.run("version")
    assert result.returncode == 2
    assert "no tofu binary for " + "/".join(current_platform()) in result.stderr
    assert "macos/arm64, windows/x86_64" in result.stderr


@pytest.mark.parametrize(
    ("lockfile_text", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('{"tofu": {"binaries": [{"kind": "archive"}]}}', "field 'url' is missing"),
        ('{"tofu": {}}', "has no 'binaries' list"),
    ],
)
def test_broken_lockfile_gets_one_line(checkout: Checkout, lockfile_text: str, message: str) -> None:
    (checkout.root / "multitool.lock.json").write_text(lockfile_text)
    result = checkout.run("version")
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_malformed_url_and_digest_are_refused(checkout: Checkout) -> None:
    os_name, cpu = current_platform()
    checkout.write_lockfile([checkout.entry(os_name, cpu, url="ftp:/nowhere")])
    result = checkout.run("version")
    assert result.returncode == 2
    assert "is not an http(s) URL" in result.stderr
    checkout.write_lockfile([checkout.entry(os_name, cpu, sha256="abc")])
    result = checkout.run("version")
    assert result.returncode == 2
    assert "is not 64 hex digits" in result.stderr


def test_unwritable_cache_dir_gets_one_line(checkout: Checkout, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    result = checkout.run("version", env={"RUNNER_CTL_CACHE_DIR": str(blocker / "cache")})
    assert result.returncode == 2
    assert "is not writable" in result.stderr and "RUNNER_CTL_CACHE_DIR" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_repository_lockfile_pins_a_current_release_for_four_platforms() -> None:
    lockfile = ROOT / "multitool.lock.json"
    tools = load_lockfile(lockfile)
    binaries = tools["tofu"]
    assert sorted(b.platform for b in binaries) == ["linux/arm64", "linux/x86_64", "macos/arm64", "macos/x86_64"]
    versions = set()
    for binary in binaries:
        match = re.fullmatch(
            r"https://github\.com/opentofu/opentofu/releases/download/v(\d+)\.(\d+)\.(\d+)/"
            r"tofu_\1\.\2\.\3_(linux|darwin)_(amd64|arm64)\.zip",
            binary.url,
        )
        assert match, binary.url
        versions.add(tuple(int(part) for part in match.groups()[:3]))
        goos = {"linux": "linux", "macos": "darwin"}[binary.os]
        goarch = {"x86_64": "amd64", "arm64": "arm64"}[binary.cpu]
        assert binary.url.endswith(f"_{goos}_{goarch}.zip")
        assert binary.kind == "archive" and binary.type == "zip" and binary.file == "tofu"
    assert len(versions) == 1 and versions.pop() >= (1, 10, 0)
    assert len({b.sha256 for b in binaries}) == 4
    assert select_binary(tools, "tofu", "linux", "x86_64", lockfile).cpu == "x86_64"
