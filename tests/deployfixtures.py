"""Helpers for the deploy-flow tests: a deploy CLI watched line by line, a clone whose fetches are
slow, the lock's state as `runner-ctl lock status --json` tells it, and a relay in front of the
lock service that holds back one answer."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import PROJECT_ROOT, runner_ctl
from tests.lockfixtures import History, LockService, free_port, git, wait_for

RECORD = (
    "import json, os, sys, time\n"
    "started = time.time()\n"
    "time.sleep(float(sys.argv[2]))\n"
    "with open(sys.argv[1], 'a') as log:\n"
    "    log.write(json.dumps({'commit': os.environ['RUNNER_CTL_COMMIT'], 'started': started,"
    " 'ended': time.time()}) + '\\n')\n"
)


def record(log: Path, hold: float = 0.0) -> list[str]:
    """A COMMAND that logs when it ran (after holding the lock ``hold`` seconds)."""
    return [sys.executable, "-c", RECORD, str(log), str(hold)]


def recorded(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def slow_clone(history: History, path: Path, delay: float) -> History:
    """A depth-1 clone whose every fetch from origin first sleeps ``delay`` seconds (a slow remote)."""
    clone = ["git", "clone", "-q", "--depth", "1", f"file://{history.origin}", str(path)]
    subprocess.run(clone, check=True, timeout=60)
    git(path, "config", "remote.origin.uploadpack", f"sleep {delay:g}; git-upload-pack")
    return History(history.origin, path, history.commits)


class Deploy:
    """A `runner-ctl deploy` child process whose stderr is read as it comes."""

    def __init__(
        self, service_env: dict[str, str], repo: Path, commit: str, command: list[str], *extra: str,
        env: str = "production",
    ) -> None:  # fmt: skip
        argv = [sys.executable, "-m", "runner_ctl", "deploy", "--env", env, "--commit", commit,
                "--repo-dir", str(repo), "--json", *extra, "--", *command]  # fmt: skip
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=service_env, cwd=PROJECT_ROOT
        )
        self.lines: list[str] = []
        self._stdout: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stderr, self.lines), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stdout, self._stdout), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def saw(self, fragment: str) -> bool:
        return any(fragment in line for line in list(self.lines))

    def wait_line(self, fragment: str, seconds: float = 60) -> None:
        wait_for(lambda: self.saw(fragment) or self.process.poll() is not None, f"{fragment!r} on stderr", seconds)
        assert self.saw(fragment), "\n".join(self.lines)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.process.send_signal(sig)

    def result(self, timeout: float = 120) -> tuple[int, dict[str, Any], str]:
        """Exit code, the JSON result and stderr; on a hang, kill it (and fail)."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
            raise
        self._close()
        last = self._stdout[-1] if self._stdout else ""
        return code, (json.loads(last) if last.startswith("{") else {}), "\n".join(self.lines)

    def _close(self, wait: float = 30) -> None:
        for reader, stream in zip(self._readers, (self.process.stderr, self.process.stdout), strict=True):
            reader.join(timeout=wait)
            # A stream still read (an orphaned COMMAND holds it open) is left to its daemon reader:
            # closing it would block until that read returns.
            if stream is not None and not reader.is_alive():
                stream.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self._close(wait=5)


@contextlib.contextmanager
def deploys() -> Iterator[list[Deploy]]:
    """Collects deploy processes and kills any still running at the end of a test."""
    started: list[Deploy] = []
    try:
        yield started
    finally:
        for each in started:
            each.kill()


def lock_state(service: LockService, env: str = "production") -> dict[str, Any]:
    """The environment as `runner-ctl lock status --json` reports it (never used: free)."""
    done = runner_ctl("lock", "status", "--json", timeout=60, env=service.env())
    assert done.returncode == 0, done.stderr
    found = [state for state in json.loads(done.stdout) if state["env"] == env]
    return found[0] if found else {"env": env, "holder": None, "queue": []}


def assert_free(service: LockService, env: str = "production") -> None:
    """Nothing held and nothing queued, right now (no waiting for a lease to run out)."""
    state = lock_state(service, env)
    assert state["holder"] is None, state
    assert state["queue"] == [], state


def process_gone(pid: int) -> bool:
    """Whether a process has ended (a zombie that nobody reaped yet counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def kill_pids(*pids: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class Relay:
    """An HTTP relay on loopback in front of the lock service. ``before_answer`` runs once, after
    the service has answered the first request whose path ends with ``hold_path`` and before that
    answer is passed on: the request exists at the service, but its client does not know it yet.
    Requests whose path ends with ``refuse`` get a 404 HTML page instead, as from a proxy routing
    them nowhere."""

    def __init__(
        self, upstream: str, hold_path: str = "", before_answer: Callable[[], None] = lambda: None,
        refuse: str | None = None,
    ) -> None:  # fmt: skip
        self.port = free_port()
        self.held = threading.Event()
        self.refused = 0
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?")[0]
                if refuse is not None and path.endswith(refuse):
                    relay.refused += 1
                    self._answer(404, "text/html", b"<html><body><h1>404 Not Found</h1></body></html>")
                    return
                keep = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                answer = httpx.request(
                    self.command, upstream + self.path, headers=keep, content=body, timeout=60
                )  # fmt: skip
                if hold_path and path.endswith(hold_path) and not relay.held.is_set():
                    relay.held.set()
                    before_answer()
                self._answer(answer.status_code, answer.headers.get("content-type", "application/json"), answer.content)

            def _answer(self, status: int, content_type: str, content: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(content)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(content)
                self.close_connection = True

            do_GET = do_POST = _relay  # noqa: N815 - http.server's naming

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Relay":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=30)


def settle(seconds: float) -> None:
    """Give a signal just sent time to be delivered before the next step (ordering, not a check)."""
    time.sleep(seconds)
