"""Pinned tools from ``multitool.lock.json`` (rules_multitool's schema): choose, fetch, verify, cache.

Standard library only, on purpose: ``bin/tofu`` runs this file directly with the system
``python3`` on a fresh clone, before any virtualenv exists. ``bin/tofu`` resolves an
already-cached binary in bash alone; it comes here only for the first run (or to report a
problem precisely), so Python start-up is never on the cached path.

Cache layout: ``<cache>/tools/<sha256 of the download>/<file>``, where ``<cache>`` is
``$RUNNER_CTL_CACHE_DIR``, else ``$XDG_CACHE_HOME/runner-ctl``, else ``~/.cache/runner-ctl``.
A directory appears there only complete and verified (it is renamed into place), so its
existence is the whole cache check.

    python3 src/runner_ctl/tools.py fetch --lockfile multitool.lock.json tofu   # prints the path
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = [
    "ARCHIVE_TYPES",
    "Binary",
    "DigestMismatchError",
    "LockfileError",
    "ToolError",
    "UnsupportedPlatformError",
    "current_platform",
    "ensure_cached",
    "load_lockfile",
    "select_binary",
    "tools_cache_dir",
]

KINDS = ("file", "archive")
ARCHIVE_TYPES = ("zip", "tar.gz", "tgz", "tar.xz", "tar")
OSES = ("linux", "macos", "windows")
CPUS = ("x86_64", "arm64")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
DOWNLOAD_TIMEOUT_S = 60.0
CHUNK = 1 << 16
# How long a first run waits for another that is downloading the same file (each of the
# holder's reads is bounded by DOWNLOAD_TIMEOUT_S; a big release on a slow link takes minutes).
LOCK_WAIT_S = 1800.0
# A download or extraction killed mid-way leaves a uniquely named temporary; any older than
# this is swept by the next first run (a live one is never that old and holds the lock).
STALE_TEMP_S = 3600.0


class ToolError(Exception):
    """A problem a user can fix; its message is one line that says how. ``exit_code`` for the CLI."""

    exit_code = 2


class LockfileError(ToolError):
    pass


class UnsupportedPlatformError(ToolError):
    pass


class DigestMismatchError(ToolError):
    exit_code = 1


class DownloadError(ToolError):
    exit_code = 1


@dataclass(frozen=True)
class Binary:
    """One lockfile entry: a download for one OS/CPU."""

    tool: str
    kind: str
    url: str
    sha256: str
    os: str
    cpu: str
    file: str  # inside the archive; for kind "file", the name it is cached under
    type: str  # archive type, "" for kind "file"

    @property
    def platform(self) -> str:
        return f"{self.os}/{self.cpu}"


def current_platform() -> tuple[str, str]:
    """This machine as rules_multitool names it: (os, cpu)."""
    system = platform.system().lower()
    os_name = {"darwin": "macos"}.get(system, system)
    machine = platform.machine().lower()
    cpu = {"amd64": "x86_64", "aarch64": "arm64"}.get(machine, machine)
    return os_name, cpu


def _field(entry: dict[str, Any], name: str, where: str) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value:
        raise LockfileError(f"{where}: field {name!r} is missing or not a non-empty string")
    return value


def _check_url(url: str, where: str) -> None:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("https", "http") or not parsed.hostname or not parsed.path.strip("/"):
        raise LockfileError(f"{where}: url {url!r} is not an http(s) URL of a file")


def parse_binary(tool: str, index: int, entry: object, lockfile: Path) -> Binary:
    where = f"{lockfile}: {tool}.binaries[{index}]"
    if not isinstance(entry, dict):
        raise LockfileError(f"{where} is not an object")
    kind = _field(entry, "kind", where)
    if kind not in KINDS:
        raise LockfileError(f"{where}: kind {kind!r} is not supported; use one of {', '.join(KINDS)}")
    url = _field(entry, "url", where)
    _check_url(url, where)
    sha256 = _field(entry, "sha256", where).lower()
    if not SHA256_PATTERN.match(sha256):
        raise LockfileError(f"{where}: sha256 {sha256!r} is not 64 hex digits")
    os_name = _field(entry, "os", where)
    cpu = _field(entry, "cpu", where)
    if os_name not in OSES or cpu not in CPUS:
        raise LockfileError(f"{where}: os/cpu {os_name}/{cpu} unknown; os is one of {OSES}, cpu one of {CPUS}")
    if kind == "archive":
        file = _field(entry, "file", where)
        archive_type = _field(entry, "type", where)
        if archive_type not in ARCHIVE_TYPES:
            raise LockfileError(f"{where}: type {archive_type!r} unknown; use one of {', '.join(ARCHIVE_TYPES)}")
    else:
        file = entry.get("file") or Path(urllib.parse.urlsplit(url).path).name
        archive_type = ""
    if not isinstance(file, str) or file.startswith("/") or ".." in Path(file).parts:
        raise LockfileError(f"{where}: file {file!r} must be a relative path inside the archive")
    return Binary(tool, kind, url, sha256, os_name, cpu, file, archive_type)


def _read_text(lockfile: Path) -> str:
    """The lockfile's text. Opened non-blocking and checked on the open descriptor, so a FIFO
    or a device named as the lockfile is refused at once instead of waited on.

    (runner_ctl.paths.open_regular does the same for the package; this file may import
    nothing from it: bin/tofu runs it with the system python3, outside any virtualenv.)
    """
    try:
        fd = os.open(lockfile, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as error:
        raise LockfileError(f"cannot read {lockfile}: {error.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LockfileError(f"{lockfile} is not a regular file; it must be the multitool.lock.json file")
    with open(fd, "rb") as handle:  # noqa: PTH123 - a descriptor, not a path
        try:
            return handle.read().decode("utf-8")
        except OSError as error:
            raise LockfileError(f"cannot read {lockfile}: {error.strerror}") from None
        except UnicodeDecodeError as error:
            raise LockfileError(f"{lockfile} is not UTF-8 text (byte {error.start}); fix or restore it") from None


def load_lockfile(lockfile: Path) -> dict[str, list[Binary]]:
    """Every tool's binaries, validated; a LockfileError names the first problem."""
    text = _read_text(lockfile)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise LockfileError(f"{lockfile} is not valid JSON (line {error.lineno}: {error.msg})") from None
    if not isinstance(document, dict):
        raise LockfileError(f"{lockfile}: expected an object of tools at the top level")
    tools: dict[str, list[Binary]] = {}
    for tool, spec in document.items():
        if tool.startswith("$"):  # "$schema"
            continue
        binaries = spec.get("binaries") if isinstance(spec, dict) else None
        if not isinstance(binaries, list) or not binaries:
            raise LockfileError(f"{lockfile}: {tool} has no 'binaries' list")
        tools[tool] = [parse_binary(tool, index, entry, lockfile) for index, entry in enumerate(binaries)]
    return tools


def select_binary(tools: dict[str, list[Binary]], tool: str, os_name: str, cpu: str, lockfile: Path) -> Binary:
    if tool not in tools:
        known = ", ".join(sorted(tools)) or "none"
        raise LockfileError(f"{lockfile} has no tool {tool!r} (tools: {known})")
    for binary in tools[tool]:
        if binary.os == os_name and binary.cpu == cpu:
            return binary
    available = ", ".join(binary.platform for binary in tools[tool])
    raise UnsupportedPlatformError(
        f"{lockfile} has no {tool} binary for {os_name}/{cpu}; entries exist for: {available}"
    )


def tools_cache_dir() -> Path:
    override = os.environ.get("RUNNER_CTL_CACHE_DIR")
    if override:
        base = Path(override).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "runner-ctl"
    return base.absolute() / "tools"


def cached_path(binary: Binary, cache: Path) -> Path:
    return cache / binary.sha256 / binary.file


@contextlib.contextmanager
def _exclusive(cache: Path, digest: str) -> Iterator[None]:
    """One first run per download at a time; others wait here, then find it cached.

    Creating the lock file is also the check that the cache is writable.
    """
    try:
        cache.mkdir(parents=True, exist_ok=True)
        handle = (cache / f".{digest}.lock").open("a")
    except OSError as error:
        raise ToolError(
            f"the tool cache {cache} is not writable ({error.strerror}); "
            "set RUNNER_CTL_CACHE_DIR to a writable directory"
        ) from None
    with handle:  # closing the file releases the lock
        _wait_for_lock(handle, cache)
        yield


def _wait_for_lock(handle: IO[str], cache: Path) -> None:
    """Take the lock without ever blocking the process in ``flock``: poll, sleeping between tries.

    pyinfra runs the hosts of a deploy as gevent greenlets in one process. A blocking flock
    in one host's greenlet would stop the whole process, the greenlet holding the lock
    included, and the deploy would hang for good; ``time.sleep`` lets the holder run (gevent
    patches it). The wait is bounded: a holder that never finishes is named, not waited on.
    """
    deadline = time.monotonic() + LOCK_WAIT_S
    pause = 0.02
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise ToolError(
                    f"another download into {cache} has held its lock for {LOCK_WAIT_S:.0f} s; "
                    "let it finish (or stop it) and run again"
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.5)


def _sweep_stale(cache: Path) -> None:
    now = time.time()
    for leftover in cache.glob(".partial-*"):
        with contextlib.suppress(OSError):
            if now - leftover.stat().st_mtime > STALE_TEMP_S:
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink()


def _download(binary: Binary, target: Path) -> str:
    """Stream ``binary.url`` into ``target``; return the sha256 of what arrived."""
    digest = hashlib.sha256()
    request = urllib.request.Request(binary.url, headers={"User-Agent": "runner-ctl-multitool"})  # noqa: S310 - scheme checked in parse_binary
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response, target.open("wb") as out:  # noqa: S310
            for _ in range(1 << 20):  # at most 64 GiB in 64 KiB chunks: bounded
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                out.write(chunk)
    except urllib.error.HTTPError as error:
        raise DownloadError(f"downloading {binary.url} failed: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, EOFError) as error:
        reason = getattr(error, "reason", None) or error
        raise DownloadError(f"downloading {binary.url} failed ({reason}); check the network and run again") from None
    except Exception as error:  # http.client.IncompleteRead and friends: a connection cut mid-body
        raise DownloadError(
            f"downloading {binary.url} was interrupted ({type(error).__name__}); run again to retry"
        ) from None
    return digest.hexdigest()


def _extract(binary: Binary, archive: Path, into: Path) -> None:
    """Take only ``binary.file`` out of the archive (no other member is ever written)."""
    destination = into / binary.file
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        if binary.type == "zip":
            with zipfile.ZipFile(archive) as bundle, bundle.open(binary.file) as member, destination.open("wb") as out:
                shutil.copyfileobj(member, out)
        else:
            with tarfile.open(archive, "r:*") as tarball:
                packed = tarball.extractfile(binary.file)
                if packed is None:
                    raise KeyError(binary.file)
                with packed, destination.open("wb") as out:
                    shutil.copyfileobj(packed, out)
    except KeyError:
        raise DownloadError(f"{binary.url} holds no {binary.file!r}; fix 'file' in the lockfile") from None
    except (zipfile.BadZipFile, tarfile.TarError) as error:
        raise DownloadError(f"{binary.url} is not a readable {binary.type} archive ({error})") from None
    destination.chmod(0o755)


def ensure_cached(binary: Binary, cache: Path | None = None) -> Path:
    """The path of ``binary`` in the cache, downloading and verifying it first if needed."""
    cache = cache or tools_cache_dir()
    path = cached_path(binary, cache)
    if path.is_file():
        return path
    with _exclusive(cache, binary.sha256):
        if path.is_file():  # another first run finished while this one waited
            return path
        _sweep_stale(cache)
        staging = Path(tempfile.mkdtemp(dir=cache, prefix=f".partial-{binary.sha256[:12]}-"))
        try:
            download = staging / "download"
            actual = _download(binary, download)
            if actual != binary.sha256:
                raise DigestMismatchError(
                    f"sha256 mismatch for {binary.url}: expected {binary.sha256}, got {actual}; nothing was cached"
                )
            unpacked = staging / "unpacked"
            if binary.kind == "archive":
                _extract(binary, download, unpacked)
            else:
                (unpacked / binary.file).parent.mkdir(parents=True)
                download.rename(unpacked / binary.file)
                (unpacked / binary.file).chmod(0o755)
            # The rename is the commit: before it nothing is visible under the digest.
            unpacked.rename(cache / binary.sha256)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return path


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="multitool", description="Fetch a pinned tool; print its cached path.")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="ensure the tool for this OS/CPU is cached; print its path")
    fetch.add_argument("--lockfile", type=Path, required=True)
    fetch.add_argument("tool")
    args = parser.parse_args(argv)
    try:
        tools = load_lockfile(args.lockfile)
        binary = select_binary(tools, args.tool, *current_platform(), args.lockfile)
        print(ensure_cached(binary))
    except ToolError as error:
        print(f"{args.tool}: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
