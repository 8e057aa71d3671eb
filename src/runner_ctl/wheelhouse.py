"""A wheelhouse for the runner host, built on the operator's machine.

The host installs runner-ctl (the lock service and the deploy client) from these wheels
with ``pip --no-index``: it needs no access to PyPI. The wheels are for the host's
platform (manylinux, CPython 3.11: Debian 12's Python), whatever the operator runs on, and
only the core requirements (the ``operator`` extra, pyinfra and pytest, stays home).
Cached by a digest of the project's sources and the target, so an unchanged checkout never
rebuilds and a changed one always does.
"""

import hashlib
import os
import shutil
import sys
import tomllib
import uuid
from pathlib import Path

from runner_ctl._proc import last_line, run_unchecked
from runner_ctl.errors import RunnerCtlError
from runner_ctl.paths import cache_dir

__all__ = ["PLATFORMS", "build_wheelhouse", "core_requirements", "source_digest"]

# pip --platform tags per host CPU (Debian 12 has glibc 2.36: manylinux_2_17 and newer fit).
PLATFORMS: dict[str, tuple[str, ...]] = {
    "x86_64": ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"),
    "aarch64": ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"),
}
PYTHON_VERSION = "3.11"


def core_requirements(project_root: Path) -> list[str]:
    data = tomllib.loads((project_root / "pyproject.toml").read_text())
    return list(data["project"]["dependencies"])


def source_digest(project_root: Path, arch: str) -> str:
    digest = hashlib.sha256(f"{arch} {PYTHON_VERSION}".encode())
    # Only what goes into the wheel: building it rewrites src/*.egg-info, which must not count.
    package = project_root / "src" / "runner_ctl"
    files = [project_root / "pyproject.toml", *sorted(package.rglob("*.py")), package / "py.typed"]
    for path in files:
        if path.is_file():
            digest.update(str(path.relative_to(project_root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _pip(*args: str, what: str) -> None:
    done = run_unchecked(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], what=what, timeout=1800
    )
    if done.returncode != 0:
        raise RunnerCtlError(f"{what} failed: {last_line(done)}")


def build_wheelhouse(project_root: Path, arch: str) -> Path:
    """The directory of wheels for a host with CPU ``arch`` (``uname -m``)."""
    if arch not in PLATFORMS:
        raise RunnerCtlError(f"no wheels for a {arch} host; runner hosts are one of: {', '.join(PLATFORMS)}")
    final = cache_dir() / "wheelhouse" / source_digest(project_root, arch)
    if (final / ".complete").is_file():
        return final
    # A staging directory per build: pyinfra prepares hosts in parallel (greenlets), so two
    # hosts of one deploy may build the same wheelhouse at once; the first rename wins.
    staging = final.with_name(f"{final.name}.building-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    _pip("wheel", "--no-deps", "--wheel-dir", str(staging), str(project_root), what="building the runner-ctl wheel")
    platform_args = [arg for tag in PLATFORMS[arch] for arg in ("--platform", tag)]
    _pip(
        "download", "--dest", str(staging), "--only-binary=:all:", *platform_args,
        "--python-version", PYTHON_VERSION, "--implementation", "cp",
        *core_requirements(project_root),
        what="downloading runner-ctl's requirements for the host",
    )  # fmt: skip
    (staging / ".complete").write_text("")
    try:
        staging.rename(final)
    except OSError:  # another build finished first; its wheels are the same
        shutil.rmtree(staging, ignore_errors=True)
    return final
