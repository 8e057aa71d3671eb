"""A real lock service process on loopback and real git repositories, for the deploy tests."""

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from runner_ctl.lock.client import LockClient

# The requests table as the first release created it, before per-request secrets.
OLD_REQUESTS = """
CREATE TABLE requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT, env TEXT NOT NULL, commit_sha TEXT NOT NULL, actor TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '', queue_policy TEXT NOT NULL, lease_ttl REAL NOT NULL, state TEXT NOT NULL,
    outcome TEXT, created_at REAL NOT NULL, granted_at REAL, finished_at REAL, lease_expires_at REAL,
    fencing_token INTEGER, previous_commit TEXT, rollback INTEGER NOT NULL DEFAULT 0, exit_code INTEGER,
    detail TEXT NOT NULL DEFAULT ''
);
INSERT INTO requests (env, commit_sha, actor, queue_policy, lease_ttl, state, created_at, lease_expires_at)
VALUES ('prod', 'old', 'ci', 'latest', 30, 'queued', 1000000, 1000030);
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class LockService:
    directory: Path
    port: int
    ci_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    admin_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    process: subprocess.Popen[bytes] | None = None
    args: tuple[str, ...] = ()  # more `lock serve` options, e.g. ("--docs",)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self) -> Path:
        return self.directory / "lock.db"

    @property
    def token_file(self) -> Path:
        return self.directory / "tokens"

    def start(self) -> None:
        if not self.token_file.exists():
            self.token_file.write_text(f"ci:{self.ci_secret}\nops:{self.admin_secret}:admin\n")
            self.token_file.chmod(0o600)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "runner_ctl", "lock", "serve", "--db", str(self.db),
             "--token-file", str(self.token_file), "--listen", f"127.0.0.1:{self.port}", *self.args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, "the lock service exited at start"
            time.sleep(0.05)
        raise AssertionError("the lock service did not answer /healthz within 30 s")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)

    def env(self, secret: str | None = None) -> dict[str, str]:
        return {
            **os.environ,
            "RUNNER_CTL_LOCK_URL": self.url,
            "RUNNER_CTL_LOCK_TOKEN": secret or self.ci_secret,
            "RUNNER_CTL_LOCK_RETRY_SECONDS": "20",
        }

    def api(self, secret: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {secret or self.ci_secret}"}, timeout=10
        )

    def client(self, secret: str | None = None) -> LockClient:
        """The project's own client, failing at once when the service is down (no retries)."""
        return LockClient(self.url, secret or self.ci_secret, retry_seconds=0)

    def outcomes(self) -> dict[str, float]:
        """``runner_ctl_lock_outcomes`` from /metrics, by status."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return {
            sample.labels["status"]: sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "runner_ctl_lock_outcomes"
            for sample in family.samples
            if sample.name.endswith("_total")
        }


@pytest.fixture
def lock_service(tmp_path: Path) -> Iterator[LockService]:
    service = LockService(tmp_path / "lockd", free_port())
    service.directory.mkdir()
    service.start()
    try:
        yield service
    finally:
        service.kill(signal.SIGTERM)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()


@dataclass
class History:
    """origin (bare) with main = c1 -> c2 -> c3 -> c4 and a branch `side` = c1 -> s1."""

    origin: Path
    clone: Path
    commits: dict[str, str]


@pytest.fixture
def history(tmp_path: Path) -> History:
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    git(work, "config", "user.email", "t@example.invalid")
    git(work, "config", "user.name", "t")
    commits = {}
    for name in ("c1", "c2", "c3", "c4"):
        git(work, "commit", "-q", "--allow-empty", "-m", name)
        commits[name] = git(work, "rev-parse", "HEAD")
    git(work, "branch", "side", commits["c1"])
    git(work, "checkout", "-q", "side")
    git(work, "commit", "-q", "--allow-empty", "-m", "s1")
    commits["s1"] = git(work, "rev-parse", "HEAD")
    git(work, "checkout", "-q", "main")  # the origin's HEAD, hence every clone's, is main
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(origin)], check=True, timeout=60)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", f"file://{origin}", str(clone)], check=True, timeout=60)
    return History(origin, clone, commits)


def wait_for(predicate: Callable[[], bool], what: str, seconds: float = 60) -> None:
    """Poll a condition of a real process (bounded: 20 checks a second, ``seconds`` at most)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
