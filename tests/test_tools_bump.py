"""`runner-ctl tools bump tofu VERSION` against a loopback stand-in of the release downloads.

The stand-in release is signed with a throwaway gpg key made here; the library is pointed
at that key to prove the happy path, and the CLI (which pins OpenTofu's real fingerprint)
must refuse it.
"""

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runner_ctl.toolbump import OPENTOFU, ReleaseSource, SignatureError, bump
from runner_ctl.tools import load_lockfile
from tests.standins.release_server import ReleaseServer, serve_releases

VERSION = "9.9.9"
BASE = "/opentofu/opentofu/releases/download"
GONAMES = ("linux_amd64", "linux_arm64", "darwin_amd64", "darwin_arm64", "windows_amd64")
OTHER_TOOL = {"binaries": [{"kind": "file", "url": "https://example.invalid/x", "sha256": "a" * 64,
                            "os": "linux", "cpu": "x86_64"}]}  # fmt: skip


def gpg(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["gpg", "--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", "", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, "GNUPGHOME": str(home)}, check=True,
    )  # fmt: skip


@dataclass
class SignedRelease:
    server: ReleaseServer
    source: ReleaseSource  # the stand-in's addresses and the throwaway key's fingerprint
    sums: dict[str, str]
    home: Path

    def sums_path(self) -> str:
        return f"{BASE}/v{VERSION}/tofu_{VERSION}_SHA256SUMS"


@pytest.fixture(scope="module")
def signing_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    gpg(home, "--quick-gen-key", "Stand-in release key <release@example.invalid>", "ed25519", "sign", "never")
    listing = gpg(home, "--with-colons", "--list-keys").stdout
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    return home, fingerprint


@pytest.fixture
def release(signing_home: tuple[Path, str]) -> Iterator[SignedRelease]:
    home, fingerprint = signing_home
    sums = {f"tofu_{VERSION}_{goname}.zip": hashlib.sha256(goname.encode()).hexdigest() for goname in GONAMES}
    text = "".join(f"{digest}  {name}\n" for name, digest in sums.items()).encode()
    sums_file = home / "SHA256SUMS"
    sums_file.write_bytes(text)
    signature = home / "SHA256SUMS.gpgsig"
    signature.unlink(missing_ok=True)
    gpg(home, "--detach-sign", "--output", str(signature), str(sums_file))
    key = gpg(home, "--armor", "--export", fingerprint).stdout.encode()
    server = ReleaseServer(
        files={
            f"{BASE}/v{VERSION}/tofu_{VERSION}_SHA256SUMS": text,
            f"{BASE}/v{VERSION}/tofu_{VERSION}_SHA256SUMS.gpgsig": signature.read_bytes(),
            "/keys/release.asc": key,
        }
    )
    with serve_releases(server):
        source = dataclasses.replace(
            OPENTOFU,
            download_base=server.url(BASE),
            gpg_key_url=server.url("/keys/release.asc"),
            gpg_fingerprint=fingerprint,
        )
        yield SignedRelease(server=server, source=source, sums=sums, home=home)


def lockfile_with_other_tool(tmp_path: Path) -> Path:
    lockfile = tmp_path / "multitool.lock.json"
    lockfile.write_text(json.dumps({"other": OTHER_TOOL}, indent=2) + "\n")
    return lockfile


def test_bump_pins_four_platforms_from_signed_sums(release: SignedRelease, tmp_path: Path) -> None:
    lockfile = lockfile_with_other_tool(tmp_path)
    result = bump(lockfile, f"v{VERSION}", source=release.source, verifier="gpg")
    assert result.verified_by == "gpg"
    tools = load_lockfile(lockfile)
    pinned = {b.platform: b for b in tools["tofu"]}
    assert sorted(pinned) == ["linux/arm64", "linux/x86_64", "macos/arm64", "macos/x86_64"]
    assert pinned["macos/arm64"].sha256 == release.sums[f"tofu_{VERSION}_darwin_arm64.zip"]
    assert pinned["linux/x86_64"].url == release.server.url(f"{BASE}/v{VERSION}/tofu_{VERSION}_linux_amd64.zip")
    assert all(b.kind == "archive" and b.type == "zip" and b.file == "tofu" for b in pinned.values())
    assert json.loads(lockfile.read_text())["other"] == OTHER_TOOL  # other tools are kept


def test_tampered_sums_are_refused_and_nothing_written(release: SignedRelease, tmp_path: Path) -> None:
    lockfile = lockfile_with_other_tool(tmp_path)
    before = lockfile.read_bytes()
    original = release.server.files[release.sums_path()]
    release.server.files[release.sums_path()] = original.replace(b"0", b"1", 1)
    with pytest.raises(SignatureError, match="nothing was written"):
        bump(lockfile, VERSION, source=release.source, verifier="gpg")
    assert lockfile.read_bytes() == before


def test_a_key_with_another_fingerprint_is_refused(release: SignedRelease, tmp_path: Path) -> None:
    lockfile = lockfile_with_other_tool(tmp_path)
    before = lockfile.read_bytes()
    pinned_elsewhere = dataclasses.replace(release.source, gpg_fingerprint="E3E6E43D84CB852EADB0051D0C0AF313E5FD9F80")
    with pytest.raises(SignatureError, match="not signed by tofu's release key E3E6E43D"):
        bump(lockfile, VERSION, source=pinned_elsewhere, verifier="gpg")
    assert lockfile.read_bytes() == before


def cli(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "runner_ctl", "tools", "bump", *args],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip


def test_cli_refuses_a_mirror_signed_by_another_key(release: SignedRelease, tmp_path: Path) -> None:
    lockfile = lockfile_with_other_tool(tmp_path)
    before = lockfile.read_bytes()
    result = cli(
        "tofu", VERSION, "--lockfile", str(lockfile),
        "--release-url", release.server.url(BASE), "--gpg-key-url", release.server.url("/keys/release.asc"),
    )  # fmt: skip
    assert result.returncode == 1
    assert "E3E6E43D84CB852EADB0051D0C0AF313E5FD9F80" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert lockfile.read_bytes() == before


def test_cli_without_cosign_or_gpg_writes_with_a_warning(release: SignedRelease, tmp_path: Path) -> None:
    lockfile = lockfile_with_other_tool(tmp_path)
    result = cli(
        "tofu", VERSION, "--lockfile", str(lockfile), "--release-url", release.server.url(BASE), path="/nonexistent"
    )
    assert result.returncode == 0, result.stderr
    assert "signature was NOT verified" in result.stderr
    assert "4 binaries pinned" in result.stdout
    assert len(load_lockfile(lockfile)["tofu"]) == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("terraform", "1.9.0"), "knows only 'tofu'"),
        (("tofu", "latest"), "is not a release version"),
        (("tofu", "8.8.8"), "not found at"),
    ],
)
def test_cli_bad_input_exits_2(release: SignedRelease, tmp_path: Path, args: tuple[str, str], message: str) -> None:
    lockfile = lockfile_with_other_tool(tmp_path)
    result = cli(*args, "--lockfile", str(lockfile), "--release-url", release.server.url(BASE))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
