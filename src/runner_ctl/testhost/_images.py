"""The cached pieces every test host is made from: a Debian 12 rootfs and a local apt repository.

Both are built once and reused; each lives in a directory named by a key derived from
what went into it, so changing a package set builds a new one and never mutates an old one.
Builds happen in a temporary directory that is renamed into place, under a file lock, so
concurrent ``testhost up`` calls build once and never see half a tree.
"""

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from runner_ctl._proc import run
from runner_ctl.hostdata import LAYER_APT_PACKAGES

__all__ = [
    "APT_REPO_MOUNT",
    "APT_SOURCE_LINE",
    "ROOTFS_PACKAGES",
    "SUITE",
    "apt_repo_key",
    "build_lock",
    "ensure_apt_repo",
    "ensure_rootfs",
    "repo_packages",
    "rootfs_key",
]

SUITE = "bookworm"
# Only what boots and is reachable over SSH; everything the layers install comes from the
# local apt repository, so the deploys' apt operations are really exercised.
ROOTFS_PACKAGES: tuple[str, ...] = (
    "dbus",
    "iproute2",
    "openssh-server",
    "procps",
    "systemd",
    "systemd-sysv",
)
# Where the local apt repository appears inside every test host (bind-mounted read-only).
APT_REPO_MOUNT = "/srv/runner-ctl-apt"
# The apt source line that points a test host at that repository (unsigned: it is built on
# this controller from packages apt verified when it downloaded them).
APT_SOURCE_LINE = f"deb [trusted=yes] file:{APT_REPO_MOUNT} ./"
_FORMAT = 1  # bump when the way a rootfs or repository is prepared changes


def _mirror() -> str:
    return os.environ.get("RUNNER_CTL_DEBIAN_MIRROR", "http://deb.debian.org/debian").rstrip("/")


def _security_mirror() -> str:
    return os.environ.get("RUNNER_CTL_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security").rstrip("/")


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def rootfs_key() -> str:
    return _digest(_FORMAT, SUITE, "minbase", sorted(ROOTFS_PACKAGES))


def repo_packages() -> tuple[str, ...]:
    """Every package any layer installs: the union of the layers' apt package lists."""
    return tuple(sorted({pkg for pkgs in LAYER_APT_PACKAGES.values() for pkg in pkgs}))


def apt_repo_key() -> str:
    return _digest(_FORMAT, rootfs_key(), repo_packages())


@contextlib.contextmanager
def build_lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with (root / "build.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sources_list() -> str:
    return (
        f"deb {_mirror()} {SUITE} main\n"
        f"deb {_mirror()} {SUITE}-updates main\n"
        f"deb {_security_mirror()} {SUITE}-security main\n"
    )


def ensure_rootfs(harness_dir: Path) -> Path:
    """The cached Debian 12 rootfs, built with debootstrap on first use (about a minute)."""
    final = harness_dir / "rootfs" / rootfs_key()
    if (final / ".runner-ctl-rootfs.json").is_file():
        return final
    with build_lock(harness_dir):
        if (final / ".runner-ctl-rootfs.json").is_file():
            return final
        staging = final.with_name(f"{final.name}.building")
        shutil.rmtree(staging, ignore_errors=True)
        staging.parent.mkdir(parents=True, exist_ok=True)
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(ROOTFS_PACKAGES)}",
                SUITE,
                staging,
                _mirror(),
            ],
            what="building the test host rootfs with debootstrap",
            timeout=1800,
        )
        _prepare_rootfs(staging)
        (staging / ".runner-ctl-rootfs.json").write_text(
            json.dumps({"suite": SUITE, "packages": sorted(ROOTFS_PACKAGES), "format": _FORMAT})
        )
        staging.rename(final)
    return final


def _prepare_rootfs(root: Path) -> None:
    # Every host gets its own SSH host keys and machine id at creation/boot time.
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc" / "machine-id").write_text("")
    (root / "etc" / "apt" / "sources.list").write_text(_sources_list())
    for deb in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()


def ensure_apt_repo(harness_dir: Path, rootfs: Path) -> Path:
    """The cached local apt repository holding every package the layers install.

    The package closure is resolved by apt inside a throwaway overlay of the rootfs itself,
    so it holds exactly what a fresh test host lacks, at the versions Debian serves today.
    """
    final = harness_dir / "apt" / apt_repo_key()
    if (final / "Release").is_file():
        return final
    with build_lock(harness_dir):
        if (final / "Release").is_file():
            return final
        staging = final.with_name(f"{final.name}.building")
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "partial").mkdir(parents=True)
        packages = " ".join(repo_packages())
        run(
            [
                "systemd-nspawn",
                "--quiet",
                "--register=no",
                "--keep-unit",
                f"--directory={rootfs}",
                "--volatile=overlay",
                "--resolv-conf=replace-host",
                f"--bind={staging}:/var/cache/apt/archives",
                "--",
                "/bin/sh",
                "-c",
                "apt-get -q update && apt-get -q -y -o APT::Sandbox::User=root "
                f"--no-install-recommends --download-only install {packages}",
            ],
            what="downloading the layers' packages for the test host apt repository",
            timeout=1800,
        )
        shutil.rmtree(staging / "partial", ignore_errors=True)
        (staging / "lock").unlink(missing_ok=True)
        _write_index(staging)
        staging.rename(final)
    return final


def _write_index(repo: Path) -> None:
    """A flat repository: Packages, Packages.gz and a Release file listing their digests."""
    packages = run(
        ["dpkg-scanpackages", "--multiversion", "."],
        what="indexing the test host apt repository",
        cwd=repo,
    )
    (repo / "Packages").write_text(packages)
    with gzip.open(repo / "Packages.gz", "wt") as handle:
        handle.write(packages)
    lines = [
        "Origin: runner-ctl",
        "Label: runner-ctl test host packages",
        f"Date: {datetime.now(UTC).strftime('%a, %d %b %Y %H:%M:%S UTC')}",
        "SHA256:",
    ]
    for name in ("Packages", "Packages.gz"):
        data = (repo / name).read_bytes()
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}")
    (repo / "Release").write_text("\n".join(lines) + "\n")
