"""Stand-in ``gitlab-runner`` packages and a signed apt repository of them, served over HTTP.

GitLab's real packages cannot be downloaded here, so this builds, with ``dpkg-deb``, two
packages of a pinned version (``STANDIN_VERSION``) with the layout the layer relies on:

- ``gitlab-runner``: ``/usr/bin/gitlab-runner``, and a postinst that, like the real one,
  creates the ``gitlab-runner`` user and runs ``gitlab-runner install``, which writes
  ``/etc/systemd/system/gitlab-runner.service`` (the real unit's ExecStart, Restart=always),
  then starts it. Its ``run --config FILE`` reads config.toml and refuses (exit 1) a config
  that is not mode 0600 or has a ``[[runners]]`` without a ``glrt-`` token; otherwise it
  stays running: it verifies each token (``POST /api/v4/runners/verify``), polls
  ``POST /api/v4/jobs/request`` every ``check_interval`` (never taking a job), serves
  ``/metrics`` on ``listen_address``, and ends on SIGQUIT (graceful) or SIGTERM. It never
  prints a token. It needs no internet: it only talks to the ``url`` in its config.
- ``gitlab-runner-helper-images``: ``/usr/lib/gitlab-runner/helper-images/`` (a placeholder).

The repository is laid out as GitLab's (``dists/bookworm/main/binary-<arch>/Packages``,
``pool/``), its ``Release`` signed by a throwaway ed25519 key into ``InRelease`` and
``Release.gpg``; the armored public key is served at ``/gpg.key`` as GitLab serves its own.
These are stand-ins, not GitLab's packages.
"""

import contextlib
import gzip
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["STANDIN_VERSION", "SUITE", "AptRepo", "build_apt_repo", "serve_apt_repo"]

STANDIN_VERSION = "17.7.1"
PACKAGE_REVISION = "1"  # GitLab's packages are versioned X.Y.Z-1
SUITE = "bookworm"

# The real package's postinst runs `gitlab-runner install`, which writes this unit.
_RUNNER = r'''#!/usr/bin/python3
"""gitlab-runner STAND-IN (runner-ctl tests): not GitLab Runner. See the runner-ctl repository."""
import http.server, json, os, signal, stat, sys, threading, time, tomllib, urllib.request

VERSION = "@VERSION@"
UNIT = """[Unit]
Description=GitLab Runner
ConditionFileIsExecutable=/usr/bin/gitlab-runner
After=syslog.target network.target

[Service]
StartLimitInterval=5
StartLimitBurst=10
ExecStart=/usr/bin/gitlab-runner "run" "--config" "{config}" "--working-directory" "{workdir}" \\
  "--service" "{service}" "--user" "{user}"
Restart=always
RestartSec=120
EnvironmentFile=-/etc/sysconfig/gitlab-runner

[Install]
WantedBy=multi-user.target
"""


def say(text):
    print(text, file=sys.stderr, flush=True)


def option(args, name, default=None):
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


def post(url, body, timeout=10):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return answer.status


def load(path):
    info = os.stat(path)
    if stat.S_IMODE(info.st_mode) != 0o600:
        say(f"FATAL: {path} has mode {stat.S_IMODE(info.st_mode):o}; the config holds runner tokens and must be 0600")
        sys.exit(1)
    with open(path, "rb") as handle:
        config = tomllib.load(handle)
    for n, runner in enumerate(config.get("runners", [])):
        token = runner.get("token", "")
        if not isinstance(token, str) or not token.startswith("glrt-"):
            say(f"FATAL: runner {runner.get('name', n)!r} in {path} has no runner authentication token (glrt-)")
            sys.exit(1)
        if runner.get("executor") != "shell":
            say(f"FATAL: runner {runner.get('name', n)!r}: this stand-in runs the shell executor only")
            sys.exit(1)
    return config


def metrics(address, config):
    host, _, port = address.rpartition(":")
    body = (f'gitlab_runner_version_info{{version="{VERSION}"}} 1\n'
            f"gitlab_runner_concurrent {config.get('concurrent', 1)}\n"
            f"gitlab_runner_runners {len(config.get('runners', []))}\n").encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/metrics":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((host.strip("[]") or "127.0.0.1", int(port)), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def run(args):
    path = option(args, "--config", "/etc/gitlab-runner/config.toml")
    stop = threading.Event()
    signal.signal(signal.SIGQUIT, lambda *_: (say("Graceful shutdown (SIGQUIT): no job runs, stopping"), stop.set()))
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    waited = 0
    while not os.path.exists(path):
        if stop.wait(5):
            return 0
        waited += 5
        if waited % 60 == 5:
            say(f"WARNING: {path} does not exist yet; waiting for it")
    config = load(path)
    runners = config.get("runners", [])
    concurrent = config.get("concurrent", 1)
    say(f"Starting gitlab-runner {VERSION} (stand-in) with {len(runners)} runner(s), concurrent={concurrent}")
    if config.get("listen_address"):
        metrics(config["listen_address"], config)
    for runner in runners:
        try:
            post(runner["url"].rstrip("/") + "/api/v4/runners/verify", {"token": runner["token"]})
            say(f"Runner {runner.get('name')!r} verified")
        except Exception as error:  # the forge may be away for a while; keep trying, as the real one does
            say(f"WARNING: runner {runner.get('name')!r}: verifying failed ({type(error).__name__})")
    interval = max(1, int(config.get("check_interval", 3) or 3))
    while not stop.wait(interval):
        for runner in runners:
            try:
                post(runner["url"].rstrip("/") + "/api/v4/jobs/request",
                     {"token": runner["token"], "info": {"name": "gitlab-runner", "version": VERSION}})
            except Exception as error:
                say(f"WARNING: runner {runner.get('name')!r}: checking for jobs failed ({type(error).__name__})")
    return 0


def install(args):
    service = option(args, "--service", "gitlab-runner")
    unit = UNIT.format(config=option(args, "--config", "/etc/gitlab-runner/config.toml"),
                       workdir=option(args, "--working-directory", "/home/gitlab-runner"),
                       service=service, user=option(args, "--user", "gitlab-runner"))
    with open(f"/etc/systemd/system/{service}.service", "w") as out:
        out.write(unit)
    return 0


def uninstall(args):
    try:
        os.remove(f"/etc/systemd/system/{option(args, '--service', 'gitlab-runner')}.service")
    except FileNotFoundError:
        pass
    return 0


def main():
    args = sys.argv[1:]
    command = args[0] if args else "--help"
    if command in ("--version", "-v", "version"):
        print(f"Version:      {VERSION}\nGit revision: standin\nOS/Arch:      linux/amd64")
        return 0
    if command == "run":
        return run(args[1:])
    if command == "install":
        return install(args[1:])
    if command == "uninstall":
        return uninstall(args[1:])
    say("gitlab-runner stand-in: commands run, install, uninstall, --version")
    return 0 if command == "--help" else 1


sys.exit(main())
'''

_POSTINST = """#!/bin/sh
set -e
# As GitLab's post-install: a gitlab-runner user, the service unit, the service started.
if ! getent passwd gitlab-runner >/dev/null; then
  useradd --system --comment 'GitLab Runner' --create-home --home-dir /home/gitlab-runner \\
    --shell /bin/bash gitlab-runner
fi
/usr/bin/gitlab-runner install --user=gitlab-runner --working-directory=/home/gitlab-runner
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable gitlab-runner.service >/dev/null 2>&1 || true
  systemctl restart gitlab-runner.service || true
fi
exit 0
"""

_PRERM = """#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl stop gitlab-runner.service || true; fi
if [ "$1" = remove ]; then
  if [ -d /run/systemd/system ]; then systemctl disable gitlab-runner.service >/dev/null 2>&1 || true; fi
  /usr/bin/gitlab-runner uninstall || true
fi
exit 0
"""


def _arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], check=True, capture_output=True, text=True).stdout.strip()


def _build_deb(root: Path, name: str, control: dict[str, str], files: dict[str, tuple[bytes, int]], out: Path) -> Path:
    tree = root / name
    (tree / "DEBIAN").mkdir(parents=True)
    for path, (content, mode) in files.items():
        target = tree / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)
    lines = [f"{key}: {value}" for key, value in control.items()]
    (tree / "DEBIAN" / "control").write_text("\n".join(lines) + "\n")
    if name == "gitlab-runner":
        for script, text in (("postinst", _POSTINST), ("prerm", _PRERM)):
            (tree / "DEBIAN" / script).write_text(text)
            (tree / "DEBIAN" / script).chmod(0o755)
    deb = out / f"{name}_{control['Version']}_{control['Architecture']}.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(tree), str(deb)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return deb


def build_packages(out: Path, version: str = STANDIN_VERSION) -> list[Path]:
    """The two stand-in .debs of ``version`` in ``out``."""
    arch = _arch()
    package_version = f"{version}-{PACKAGE_REVISION}"
    with tempfile.TemporaryDirectory(prefix="gitlab-runner-standin-") as scratch:
        common = {"Version": package_version, "Architecture": arch, "Maintainer": "runner-ctl tests <standin@invalid>"}
        helper = _build_deb(
            Path(scratch),
            "gitlab-runner-helper-images",
            {
                "Package": "gitlab-runner-helper-images",
                **common,
                "Description": "GitLab Runner helper images (STAND-IN)",
            },
            {"/usr/lib/gitlab-runner/helper-images/README.standin": (b"stand-in: no helper images\n", 0o644)},
            out,
        )
        runner = _build_deb(
            Path(scratch),
            "gitlab-runner",
            {
                "Package": "gitlab-runner",
                **common,
                # python3: what the stand-in is written in (the real one is a Go binary).
                "Depends": f"python3, gitlab-runner-helper-images (= {package_version})",
                "Description": "GitLab Runner (STAND-IN for runner-ctl tests)",
            },
            {"/usr/bin/gitlab-runner": (_RUNNER.replace("@VERSION@", version).encode(), 0o755)},
            out,
        )
    return [runner, helper]


@dataclass(frozen=True)
class AptRepo:
    root: Path  # served as is: dists/, pool/, gpg.key
    fingerprint: str  # of the key that signs Release (40 hex digits, upper case)
    arch: str

    def key(self) -> bytes:
        return (self.root / "gpg.key").read_bytes()


def _gpg(home: Path, *args: str, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(
        ["gpg", "--batch", "--quiet", "--no-tty", "--homedir", str(home), *args],
        input=stdin,
        capture_output=True,
        check=True,
        timeout=120,
    )
    return done.stdout


def _release(dists: Path, arch: str) -> str:
    entries = []
    for path in sorted(p for p in dists.rglob("*") if p.is_file()):
        data = path.read_bytes()
        entries.append((str(path.relative_to(dists)), len(data), hashlib.sha256(data).hexdigest(),
                        hashlib.md5(data, usedforsecurity=False).hexdigest()))  # fmt: skip
    head = [
        "Origin: runner-ctl stand-in",
        "Label: gitlab-runner stand-in",
        f"Suite: {SUITE}",
        f"Codename: {SUITE}",
        "Date: Mon, 01 Jan 2024 00:00:00 UTC",
        f"Architectures: {arch}",
        "Components: main",
        "Description: STAND-IN of GitLab's gitlab-runner repository (runner-ctl tests)",
        "MD5Sum:",
        *(f" {md5} {size:>8} {name}" for name, size, _, md5 in entries),
        "SHA256:",
        *(f" {sha} {size:>8} {name}" for name, size, sha, _ in entries),
    ]
    return "\n".join(head) + "\n"


def build_apt_repo(workdir: Path, version: str = STANDIN_VERSION) -> AptRepo:
    """A signed repository of the stand-in packages under ``workdir/repo`` (a new throwaway key each time)."""
    root = workdir / "repo"
    pool = root / "pool" / "main" / "g" / "gitlab-runner"
    pool.mkdir(parents=True)
    build_packages(pool, version)
    arch = _arch()
    binary = root / "dists" / SUITE / "main" / f"binary-{arch}"
    binary.mkdir(parents=True)
    packages = subprocess.run(
        ["dpkg-scanpackages", "--multiversion", "pool", "/dev/null"],
        cwd=root,
        check=True,
        capture_output=True,
        timeout=120,
    ).stdout
    (binary / "Packages").write_bytes(packages)
    (binary / "Packages.gz").write_bytes(gzip.compress(packages, mtime=0))
    release = _release(root / "dists" / SUITE, arch)
    (root / "dists" / SUITE / "Release").write_text(release)
    home = Path(tempfile.mkdtemp(prefix="gnupg-", dir=workdir))
    home.chmod(0o700)
    try:
        _gpg(home, "--passphrase", "", "--quick-generate-key", "runner-ctl stand-in repository key <standin@invalid>",
             "ed25519", "sign", "never")  # fmt: skip
        colons = _gpg(home, "--with-colons", "--fingerprint").decode()
        fingerprint = next(line.split(":")[9] for line in colons.splitlines() if line.startswith("fpr:"))
        (root / "gpg.key").write_bytes(_gpg(home, "--armor", "--export", fingerprint))
        suite = root / "dists" / SUITE
        (suite / "InRelease").write_bytes(_gpg(home, "--clearsign", "--digest-algo", "SHA256", stdin=release.encode()))
        (suite / "Release.gpg").write_bytes(_gpg(home, "--armor", "--detach-sign", stdin=release.encode()))
    finally:
        # gpg started an agent for this home: end it, and only it.
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, timeout=30, check=False
        )
        shutil.rmtree(home, ignore_errors=True)
    return AptRepo(root=root, fingerprint=fingerprint.upper(), arch=arch)


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_apt_repo(repo: AptRepo, bind_host: str = "127.0.0.1") -> Iterator[str]:
    """Serve the repository read-only on ``bind_host`` and a free port; yields its base URL."""
    server = ThreadingHTTPServer((bind_host, 0), partial(_Quiet, directory=os.fspath(repo.root)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://{bind_host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
