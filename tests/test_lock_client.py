"""The lock client's failures: every one a one-line RunnerCtlError that names what to fix and
never shows a token or a request secret, whatever the URL, the token or the answer."""

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from runner_ctl.errors import ConfigError, RunnerCtlError, UsageError
from runner_ctl.lock.client import (
    LockClient,
    NotLockServiceError,
    ServiceUnreachableError,
    TokenRejectedError,
)
from tests.lockfixtures import LockService, free_port, lock_service

__all__ = ["lock_service"]

TOKEN = "0123456789abcdef0123-token"  # noqa: S105 - a test token for a stand-in
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Answer:
    """What the stand-in answers every request with, and the last Authorization it got."""

    def __init__(self) -> None:
        self.status = 200
        self.content_type = "application/json"
        self.body = b"{}"
        self.echo_token = False
        self.seen_authorization = ""


@pytest.fixture
def stand_in() -> Iterator[tuple[str, Answer]]:
    """A real HTTP server on loopback that is not the lock service (a wrong --lock-url)."""
    answer = Answer()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            answer.seen_authorization = self.headers.get("Authorization", "")
            body = answer.body
            if answer.echo_token:  # a service that quotes the request back in its error
                body = json.dumps({"error": "bad", "detail": f"got {answer.seen_authorization}"}).encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer  # noqa: N815 - the names http.server dispatches to

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", answer
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _one_line_without(error: BaseException, *secrets: str) -> str:
    message = str(error)
    assert "\n" not in message and message.strip() == message
    for secret in secrets:
        assert secret not in message
    assert "Illegal header" not in message
    return message


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        (TOKEN + "\n", "whitespace or a line break"),
        (TOKEN + " ", "whitespace or a line break"),
        ("s\u00e9cret-" + TOKEN, "non-ASCII"),
        (TOKEN + "\x00", "control character"),
        (TOKEN + "\x7f", "control character"),
        ("", "is empty"),
    ],
)
def test_a_malformed_token_is_refused_before_use_without_showing_it(
    stand_in: tuple[str, Answer], token: str, problem: str
) -> None:
    url, answer = stand_in
    with pytest.raises(ConfigError) as refused, LockClient(url, token, retry_seconds=0) as client:
        client.status()
    message = _one_line_without(refused.value, TOKEN)
    assert problem in message and "RUNNER_CTL_LOCK_TOKEN" in message
    assert answer.seen_authorization == ""  # nothing was sent


@pytest.mark.parametrize("url", ["http://[::1", "http://", "ftp://127.0.0.1:7465", "127.0.0.1:7465", "", "http://a b"])
def test_a_malformed_url_is_a_usage_error_from_the_constructor(url: str) -> None:
    with pytest.raises(UsageError) as refused:
        LockClient(url, TOKEN)
    assert "is invalid; expected http://HOST:PORT" in _one_line_without(refused.value, TOKEN)


Call = Callable[[LockClient], object]
ENQUEUE: Call = lambda c: c.enqueue("prod", commit=COMMIT, reason="", queue_policy="all", lease_ttl=30)  # noqa: E731
STATUS_ALL: Call = lambda c: c.status()  # noqa: E731
STATUS_ONE: Call = lambda c: c.status("prod")  # noqa: E731
HISTORY: Call = lambda c: c.history("prod", 10)  # noqa: E731


@pytest.mark.parametrize(
    ("status", "content_type", "body", "call"),
    [
        (404, "text/html", b"<html><body>Not Found</body></html>", STATUS_ALL),
        (404, "text/html", b"<html><body>Not Found</body></html>", ENQUEUE),
        (200, "text/html", b"<html>a wiki</html>", STATUS_ONE),
        (200, "application/json", b"\xff\xfe not json", HISTORY),
        (200, "application/json", b"[1, 2]", STATUS_ONE),
        (200, "application/json", b"[1, 2]", HISTORY),
        (200, "application/json", b'{"envs": []}', STATUS_ALL),
        (200, "application/json", b'"granted"', ENQUEUE),
        (200, "application/json", b'{"id": 1, "state": "granted"}', ENQUEUE),  # no request_secret
        (201, "application/json", b'{"id": 1, "state": "granted", "request_secret": "a\\nb"}', ENQUEUE),
        (200, "application/json", b'{"id": "1", "state": "granted"}', ENQUEUE),
        (403, "application/json", b'{"detail": "Forbidden"}', ENQUEUE),
        (302, "text/html", b"", STATUS_ALL),
    ],
)
def test_a_url_that_is_not_the_lock_service_says_so_in_one_line(
    stand_in: tuple[str, Answer], status: int, content_type: str, body: bytes, call: Call
) -> None:
    url, answer = stand_in
    answer.status, answer.content_type, answer.body = status, content_type, body
    with LockClient(url, TOKEN, retry_seconds=0) as client, pytest.raises(NotLockServiceError) as wrong:
        call(client)
    message = _one_line_without(wrong.value, TOKEN)
    assert url in message and "does not look like the runner-ctl lock service" in message


def test_answers_that_map_to_their_own_errors(stand_in: tuple[str, Answer]) -> None:
    url, answer = stand_in
    with LockClient(url, TOKEN, retry_seconds=0) as client:
        answer.status, answer.body = 401, b'{"error": "unauthorized"}'
        with pytest.raises(TokenRejectedError) as rejected:
            client.status()
        assert "rejected the token" in _one_line_without(rejected.value, TOKEN)
        answer.status, answer.content_type, answer.body = 502, "text/html", b"<html>Bad Gateway</html>"
        with pytest.raises(ServiceUnreachableError) as unreachable:
            client.status()
        assert "unreachable (HTTP 502)" in _one_line_without(unreachable.value, TOKEN)
        answer.status, answer.echo_token = 400, True
        with pytest.raises(RunnerCtlError) as echoed:
            client.status()
        assert "[redacted]" in _one_line_without(echoed.value, TOKEN)


def test_credentials_in_the_url_are_never_shown() -> None:
    port = free_port()  # nothing listens there
    client = LockClient(f"http://user:hunter2hunter2@127.0.0.1:{port}", TOKEN, retry_seconds=0)
    with client, pytest.raises(ServiceUnreachableError) as unreachable:
        client.status()
    message = _one_line_without(unreachable.value, TOKEN, "hunter2")
    assert f"http://127.0.0.1:{port}" in message


def test_bad_arguments_are_usage_errors_before_any_request(lock_service: LockService) -> None:
    with lock_service.client() as client:
        for call in (
            lambda: client.status(""),
            lambda: client.history("a\nb", 10),
            lambda: client.enqueue("../x", commit=COMMIT, reason="", queue_policy="all", lease_ttl=30),
            lambda: client.wait(1, float("nan")),
            lambda: client.heartbeat(0, 1),
        ):
            with pytest.raises(UsageError) as refused:
                call()
            _one_line_without(refused.value, lock_service.ci_secret)
