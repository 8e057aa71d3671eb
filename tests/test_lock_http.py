"""The lock service's HTTP edge against a real process: authentication before anything else,
body limits however the body arrives, no docs unless asked, and malformed requests of every
kind answered 4xx, never 5xx or a traceback."""

import json
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from runner_ctl.lock.service import MAX_BODY_BYTES, ErrorBody
from tests.lockfixtures import LockService, free_port, lock_service

__all__ = ["lock_service"]

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("method", "path", "content"),
    [
        ("POST", "/v1/envs/prod/requests", b"{not json"),
        ("POST", "/v1/envs/prod/requests", b"\xff\xfe"),
        ("POST", "/v1/envs/.hidden/requests", b'{"commit": "HEAD"}'),
        ("POST", "/v1/envs/prod/requests", b"x" * (MAX_BODY_BYTES + 1)),
        ("POST", "/v1/requests/1/finish", b'{"fencing_token": "x"}'),
        ("POST", "/v1/requests/0/wait?timeout=nan", b""),
        ("GET", "/v1/envs/prod/history?limit=-1", b""),
        ("GET", "/v1/no-such-thing", b""),
        ("DELETE", "/v1/envs", b""),
    ],
)
def test_without_a_valid_token_the_answer_is_401_and_nothing_else(
    lock_service: LockService, method: str, path: str, content: bytes
) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token-not-a-token"}):
        response = httpx.request(
            method, f"{lock_service.url}{path}", content=content,
            headers={**headers, "Content-Type": "application/json"}, timeout=10,
        )  # fmt: skip
        assert (response.status_code, response.json()) == (401, {"error": "unauthorized"})


def _chunks(total: int) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        piece = min(8192, total - sent)
        sent += piece
        yield b"x" * piece


def test_a_chunked_body_over_the_limit_gets_413(lock_service: LockService) -> None:
    with lock_service.api() as api:
        too_large = api.post("/v1/envs/prod/requests", content=_chunks(MAX_BODY_BYTES + 1))
        assert too_large.request.headers.get("transfer-encoding") == "chunked"
        assert too_large.status_code == 413 and too_large.json()["error"] == "body_too_large"
        body = json.dumps({"commit": COMMIT}).encode()
        fits = api.post(
            "/v1/envs/prod/requests",
            content=iter([body[:10], body[10:]]),
            headers={"Content-Type": "application/json"},
        )
        assert fits.status_code == 201, fits.text


DOCS = ("/docs", "/redoc", "/docs/oauth2-redirect")


def test_docs_are_off_unless_enabled(lock_service: LockService, tmp_path: Path) -> None:
    with lock_service.api() as api:
        for path in DOCS:
            assert httpx.get(f"{lock_service.url}{path}", timeout=10).status_code == 401
            assert api.get(path).status_code == 404
        assert "/v1/envs" in api.get("/openapi.json").json()["paths"]
    enabled = LockService(tmp_path / "with-docs", free_port(), args=("--docs",))
    enabled.directory.mkdir()
    enabled.start()
    try:
        for path in DOCS:
            response = httpx.get(f"{enabled.url}{path}", timeout=10)
            assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    finally:
        enabled.kill(signal.SIGTERM)


# (method, path, headers, body): requests that a careless or hostile client sends with a
# valid token. Each must get a 4xx with a JSON error, never a 5xx.
MALFORMED: list[tuple[str, str, dict[str, str], bytes]] = [
    ("POST", "/v1/envs/prod/requests", {}, b"{not json"),
    ("POST", "/v1/envs/prod/requests", {}, b"\xff\xfe\xfd"),
    ("POST", "/v1/envs/prod/requests", {}, b"[" * 20000 + b"]" * 20000),
    ("POST", "/v1/envs/prod/requests", {}, b"[]"),
    ("POST", "/v1/envs/prod/requests", {}, b"null"),
    ("POST", "/v1/envs/prod/requests", {}, json.dumps({"commit": COMMIT, "lease_ttl": "ten"}).encode()),
    ("POST", "/v1/envs/prod/requests", {}, b'{"commit": "' + COMMIT.encode() + b'", "lease_ttl": NaN}'),
    ("POST", "/v1/envs/prod/requests", {}, b'{"commit": "' + COMMIT.encode() + b'", "lease_ttl": Infinity}'),
    ("POST", "/v1/envs/prod/requests", {}, b'{"commit": "' + COMMIT.encode() + b'", "lease_ttl": 1e999}'),
    ("POST", "/v1/envs/prod/requests", {}, json.dumps({"commit": COMMIT, "queue_policy": ["all"]}).encode()),
    ("POST", "/v1/envs/prod/requests", {}, json.dumps({"commit": COMMIT, "reason": "x" * 501}).encode()),
    ("POST", "/v1/envs/prod/requests", {}, json.dumps({"commit": 12345}).encode()),
    ("POST", "/v1/envs/prod/requests", {}, json.dumps({"commit": "\u00e9" * 40}).encode()),
    ("POST", "/v1/envs/prod/requests", {}, b'{"commit": "' + b"9" * 5000 + b'"}'),
    ("POST", "/v1/envs/prod/requests", {}, b'{"commit": ' + b"9" * 5000 + b"}"),
    ("POST", "/v1/envs/%ff%fe/requests", {}, json.dumps({"commit": COMMIT}).encode()),
    ("POST", "/v1/envs/a%00b/requests", {}, json.dumps({"commit": COMMIT}).encode()),
    ("POST", "/v1/envs/" + "a" * 5000 + "/requests", {}, json.dumps({"commit": COMMIT}).encode()),
    ("POST", "/v1/requests/1/wait?timeout=nan", {}, b""),
    ("POST", "/v1/requests/1/wait?timeout=inf", {}, b""),
    ("POST", "/v1/requests/1/wait?timeout=-1", {}, b""),
    ("POST", "/v1/requests/1/wait?timeout=1e999", {}, b""),
    ("POST", "/v1/requests/1/wait?timeout=%ff", {}, b""),
    ("POST", "/v1/requests/99999999999999999999999999/wait", {}, b""),
    ("POST", "/v1/requests/-1/wait", {}, b""),
    ("POST", "/v1/requests/1e3/wait", {}, b""),
    ("POST", "/v1/requests/1/wait", {"X-Request-Secret": "\u00ff\u00fe"}, b""),
    ("POST", "/v1/requests/1/heartbeat", {"X-Request-Secret": "x"}, json.dumps({"fencing_token": 10**30}).encode()),
    ("POST", "/v1/requests/1/heartbeat", {"X-Request-Secret": "x"}, json.dumps({"fencing_token": True}).encode()),
    ("POST", "/v1/requests/1/finish", {}, json.dumps({"fencing_token": 1, "outcome": "expired"}).encode()),
    ("POST", "/v1/requests/1/finish", {}, json.dumps({"fencing_token": 1, "exit_code": 2**70}).encode()),
    ("POST", "/v1/requests/1/withdraw", {}, json.dumps({"outcome": "succeeded"}).encode()),
    ("GET", "/v1/envs/prod/history?limit=1e3", {}, b""),
    ("GET", "/v1/envs/prod/history?limit=99999999999999999999999", {}, b""),
    ("GET", "/v1/envs/prod/history?limit=", {}, b""),
    ("GET", "/v1/envs/nowhere", {}, b""),
    ("POST", "/v1/envs/prod/release", {}, json.dumps({"reason": ""}).encode()),
    ("PUT", "/v1/envs/prod/requests", {}, b""),
]


def _raw(port: int, request: bytes) -> tuple[int, bytes, bytes]:
    """Send bytes as they are (httpx would refuse or fix them); return status, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        received = b""
        for _ in range(1000):  # bounded: the server closes after one answer (Connection: close)
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


def test_malformed_requests_get_4xx_json_never_5xx(lock_service: LockService) -> None:
    token = f"Authorization: Bearer {lock_service.ci_secret}\r\n".encode()
    problems = []
    for method, path, headers, body in MALFORMED:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", "Content-Type: application/json"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if "Content-Length" not in headers:
            lines.append(f"Content-Length: {len(body)}")
        request = "\r\n".join(lines).encode("latin-1") + b"\r\n" + token + b"\r\n" + body
        status, _, answer = _raw(lock_service.port, request)
        try:
            ErrorBody.model_validate_json(answer)  # the error shape the OpenAPI document declares
            documented = True
        except ValidationError:
            documented = False
        if not 400 <= status < 500 or not documented or b"Traceback" in answer:
            problems.append(f"{method} {path[:60]} {headers} {body[:40]!r}: {status} {answer[:200]!r}")
    assert not problems, "\n".join(problems)


# Bytes that the HTTP parser itself refuses, before the application sees a request.
UNPARSABLE = [
    b"GET /v1/envs/\xff\xfe HTTP/1.1\r\nHost: x\r\n",
    b"GET /v1/envs/prod/history?limit=\xff HTTP/1.1\r\nHost: x\r\n",
    b"GET /v1/envs HTTP/1.1\r\nHost: x\r\nBad Header\x00: y\r\n",
    b"POST /v1/envs/prod/requests HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n",
    b"POST /v1/envs/prod/requests HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n",
]


def test_unparsable_requests_get_400_and_the_service_lives_on(lock_service: LockService) -> None:
    token = f"Authorization: Bearer {lock_service.ci_secret}\r\n".encode()
    for request in UNPARSABLE:
        status, _, answer = _raw(lock_service.port, request + token + b"Connection: close\r\n\r\n")
        assert status == 400 and b"Traceback" not in answer
    assert httpx.get(f"{lock_service.url}/healthz", timeout=10).status_code == 200
