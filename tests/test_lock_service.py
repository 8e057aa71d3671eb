"""The lock service's HTTP surface and its start-up checks, against a real process."""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from runner_ctl.lock.client import LeaseLost, LockApiError, LockClient
from runner_ctl.lock.service import MAX_BODY_BYTES
from tests.lockfixtures import OLD_REQUESTS, LockService, free_port, lock_service, wait_for

__all__ = ["lock_service"]

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "89abcdef0123456789abcdef0123456789abcdef"


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


def _enqueue(client: LockClient, env: str, commit: str = COMMIT, lease_ttl: float = 30) -> dict[str, Any]:
    return client.enqueue(env, commit=commit, reason="", queue_policy="all", lease_ttl=lease_ttl)


def _finish(client: LockClient, request: dict[str, Any]) -> dict[str, Any]:
    return client.finish(
        request["id"], fencing_token=request["fencing_token"], outcome="succeeded", exit_code=0, rollback=False,
        detail="",
    )  # fmt: skip


def test_only_the_client_that_enqueued_a_request_can_act_on_it(lock_service: LockService) -> None:
    """Every CI job on a host holds the same `ci` token; the request's secret tells them apart."""
    with lock_service.client() as first, lock_service.client() as second:
        holder, queued = _enqueue(first, "prod"), _enqueue(first, "prod", OTHER)
        assert (holder["state"], queued["state"]) == ("granted", "queued")
        secrets_seen = (holder["request_secret"], queued["request_secret"])
        with lock_service.api() as api:
            for path in ("/v1/envs", "/v1/envs/prod", f"/v1/requests/{holder['id']}", "/v1/envs/prod/history"):
                text = api.get(path).text
                assert "secret" not in text and not any(secret in text for secret in secrets_seen), path
        attempts: list[Callable[[], object]] = [
            lambda: second.heartbeat(holder["id"], holder["fencing_token"]),
            lambda: _finish(second, holder),
            lambda: second.wait(queued["id"], 0),
            lambda: second.withdraw(queued["id"]),
        ]
        for attempt in attempts:
            with pytest.raises(LockApiError) as refused:
                attempt()
            assert refused.value.status == 403 and "belongs to another client" in str(refused.value)
        # Another request's secret, or an admin token without the secret, is no better.
        with lock_service.api() as api, lock_service.api(lock_service.admin_secret) as admin:
            finish = {"fencing_token": holder["fencing_token"], "outcome": "succeeded"}
            for client, headers in ((api, {"X-Request-Secret": queued["request_secret"]}), (admin, {})):
                response = client.post(f"/v1/requests/{holder['id']}/finish", json=finish, headers=headers)
                assert response.status_code == 403 and response.json()["error"] == "forbidden"
                assert not any(secret in response.text for secret in secrets_seen)
        envs = first.status("prod")
        assert envs["holder"]["id"] == holder["id"] and [r["id"] for r in envs["queue"]] == [queued["id"]]
        # The client that made them still can.
        first.heartbeat(holder["id"], holder["fencing_token"])
        assert _finish(first, holder)["outcome"] == "succeeded"
        assert first.wait(queued["id"], 5)["state"] == "granted"
        # The one override: an admin release, on the audit trail under the admin's name.
        with lock_service.api(lock_service.admin_secret) as admin:
            released = admin.post("/v1/envs/prod/release", json={"reason": "stuck"}).json()["released"]
        assert released["id"] == queued["id"] and released["outcome"] == "cancelled"
        events = [(r["actor"], r["event"], r["request_id"]) for r in first.history("prod", 50)]
        assert ("ops", "cancelled", queued["id"]) in events


def test_each_outcome_is_counted_once_whatever_arrives_late(lock_service: LockService) -> None:
    with lock_service.client() as client:
        deploy = _enqueue(client, "prod")
        _finish(client, deploy)
        with pytest.raises(LeaseLost):
            _finish(client, deploy)
        with pytest.raises(LeaseLost):
            client.heartbeat(deploy["id"], deploy["fencing_token"])
        waiter, behind = _enqueue(client, "staging"), _enqueue(client, "staging", OTHER)
        client.withdraw(behind["id"])
        client.withdraw(behind["id"])
        # A holder that stops renewing: the service expires it, then the holder comes back.
        dead = _enqueue(client, "qa", lease_ttl=3)
        wait_for(lambda: lock_service.outcomes().get("expired") == 1, "the service to expire the lease", seconds=30)
        with pytest.raises(LeaseLost):
            client.heartbeat(dead["id"], dead["fencing_token"])
        with pytest.raises(LeaseLost):
            _finish(client, dead)
        assert lock_service.outcomes() == {"succeeded": 1, "withdrawn": 1, "expired": 1}
        _finish(client, waiter)
        assert lock_service.outcomes() == {"succeeded": 2, "withdrawn": 1, "expired": 1}


def test_the_service_starts_on_a_database_from_before_request_secrets(tmp_path: Path) -> None:
    """Its requests have no secret: nobody can act on them, their lease or an admin ends them."""
    service = LockService(tmp_path / "lockd", free_port())
    service.directory.mkdir()
    with sqlite3.connect(service.db) as old:
        old.executescript(OLD_REQUESTS.replace("'queued', 1000000, 1000030", "'granted', 1000000, 9999999999"))
    service.start()
    try:
        with service.api() as api, service.api(service.admin_secret) as admin:
            refused = api.post("/v1/requests/1/heartbeat", json={}, headers={"X-Request-Secret": "x" * 43})
            assert refused.status_code == 403
            released = admin.post("/v1/envs/prod/release", json={"reason": "upgrade"}).json()["released"]
            assert released["id"] == 1 and released["outcome"] == "cancelled"
        with service.client() as client:
            assert _enqueue(client, "prod")["state"] == "granted"
    finally:
        service.kill(signal.SIGTERM)


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
        ("non_utf8_listen", "expected HOST:PORT"),
        ("unbalanced_listen", "expected HOST:PORT"),
        ("unicode_port_listen", "expected HOST:PORT"),
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
    elif setup == "non_utf8_listen":
        listen = os.fsdecode(b"\xff\xfe:7465")  # the bytes reach argv as they are
    elif setup == "unbalanced_listen":
        listen = "[::1:7465"
    elif setup == "unicode_port_listen":
        listen = "127.0.0.1:\u0667\u0664\u0666\u0665"  # Arabic-Indic digits: str.isdigit() says yes
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
