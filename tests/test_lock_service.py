"""The lock service's HTTP surface and its start-up checks, against a real process."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from runner_ctl.lock.service import MAX_BODY_BYTES
from tests.lockfixtures import LockService, free_port, lock_service

__all__ = ["lock_service"]

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_unauthenticated_calls_get_401_without_detail(lock_service: LockService) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-secret-wrong-secret"}, {"Authorization": "Basic x"}):
        response = httpx.get(f"{lock_service.url}/v1/envs", headers=headers, timeout=10)
        assert response.status_code == 401
        assert response.json() == {"error": "unauthorized"}


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("POST", "/v1/envs/prod/requests", {"content": b"{not json"}, 422),
        ("POST", "/v1/envs/prod/requests", {"json": {"commit": "HEAD"}}, 422),
        ("POST", "/v1/envs/prod/requests", {"json": {"commit": COMMIT, "lease_ttl": -1}}, 422),
        ("POST", "/v1/envs/prod/requests", {"json": {"commit": COMMIT, "surprise": 1}}, 422),
        ("POST", "/v1/envs/.hidden/requests", {"json": {"commit": COMMIT}}, 422),
        ("POST", "/v1/envs/prod/requests", {"content": b"x" * (MAX_BODY_BYTES + 1)}, 413),
        ("POST", "/v1/requests/999/wait", {}, 404),
        ("POST", "/v1/requests/0/wait", {}, 422),
        ("POST", "/v1/requests/1/finish", {"json": {"fencing_token": 1, "outcome": "expired"}}, 422),
        ("GET", "/v1/envs/prod/history?limit=100000", {}, 422),
        ("POST", "/v1/envs/prod/release", {"json": {"reason": "x"}}, 403),
    ],
)
def test_bad_requests_get_4xx_json_never_5xx(
    lock_service: LockService, method: str, path: str, kwargs: dict[str, object], status: int
) -> None:
    with lock_service.api() as api:
        response = api.request(method, path, headers={"Content-Type": "application/json"}, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    assert "error" in response.json()


def test_openapi_healthz_and_metrics(lock_service: LockService) -> None:
    spec = httpx.get(f"{lock_service.url}/openapi.json", timeout=10).json()
    assert "/v1/envs/{env}/requests" in spec["paths"]
    assert httpx.get(f"{lock_service.url}/healthz", timeout=10).json()["ok"] is True
    with lock_service.api() as api:
        api.post("/v1/envs/prod/requests", json={"commit": COMMIT})
    metrics = httpx.get(f"{lock_service.url}/metrics", timeout=10).text
    for name in (
        "runner_ctl_lock_queue_depth",
        "runner_ctl_lock_wait_seconds",
        "runner_ctl_lock_deploy_duration_seconds",
        "runner_ctl_lock_outcomes",
        "runner_ctl_lock_lease_expiries",
    ):
        assert name in metrics


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner_ctl", "lock", "serve", *args],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip


def _tokens(tmp_path: Path, mode: int = 0o600, text: str = "ci:0123456789abcdef0123\n") -> Path:
    path = tmp_path / "tokens"
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        ("group_writable", "group/world writable"),
        ("short_secret", "shorter than 16 characters"),
        ("bad_line", "expected name:secret"),
        ("missing_tokens", "token file"),
        ("readonly_db", "cannot open the lock database"),
        ("port_in_use", "the port is in use"),
        ("bad_listen", "expected HOST:PORT"),
    ],
)
def test_serve_refuses_bad_input_with_one_line(tmp_path: Path, setup: str, fragment: str) -> None:
    db = tmp_path / "lock.db"
    tokens = _tokens(tmp_path)
    listen = f"127.0.0.1:{free_port()}"
    blocker = None
    if setup == "group_writable":
        tokens.chmod(0o664)
    elif setup == "short_secret":
        _tokens(tmp_path, text="ci:short\n")
    elif setup == "bad_line":
        _tokens(tmp_path, text="just-a-secret-without-a-name\n")
    elif setup == "missing_tokens":
        tokens.unlink()
    elif setup == "readonly_db":
        readonly = tmp_path / "ro"
        readonly.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(readonly)], check=True)
        db = readonly / "lock.db"
    elif setup == "port_in_use":
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        listen = f"127.0.0.1:{blocker.getsockname()[1]}"
    elif setup == "bad_listen":
        listen = "127.0.0.1:99999"
    try:
        done = _serve(tmp_path, "--db", str(db), "--token-file", str(tokens), "--listen", listen)
    finally:
        if blocker is not None:
            blocker.close()
        if setup == "readonly_db":
            subprocess.run(["umount", str(tmp_path / "ro")], check=False)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    if setup != "readonly_db":
        assert not db.exists()  # nothing written before every input checked out


def test_a_group_readable_token_file_is_accepted(tmp_path: Path) -> None:
    """Only writability by others is refused: on the runner host the runner's group reads it."""
    tokens = _tokens(tmp_path, mode=0o640)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "runner_ctl", "lock", "serve", "--db", str(tmp_path / "lock.db"),
         "--token-file", str(tokens), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=dict(os.environ),
    )  # fmt: skip
    try:
        service = LockService(tmp_path, port)
        for _ in range(200):
            try:
                if httpx.get(f"{service.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            time.sleep(0.05)
        else:
            raise AssertionError("the service did not start")
    finally:
        process.terminate()
        process.communicate(timeout=30)
