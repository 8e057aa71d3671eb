"""The shared part of the loopback stand-ins of the GitHub and GitLab REST APIs.

A real HTTP server (``ThreadingHTTPServer``) on 127.0.0.1 and a free port. It checks the
token, answers JSON with weak ETags and honours ``If-None-Match`` with 304, builds ``Link``
headers that point back at itself, counts every request by status, and can be told to
answer the next requests with something else (a rate limit, a server error) to test how
a client copes. The forge-specific parts (routes, payload shapes, rate-limit headers) live
in ``github_api.py`` and ``gitlab_api.py``. These are stand-ins, not GitHub or GitLab:
they serve only the data a test put in.
"""

import contextlib
import hashlib
import json
import threading
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

__all__ = ["ForgeStandIn", "Reply"]


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class ForgeStandIn:
    """Subclasses implement ``authorized``, ``unauthorized``, ``route`` and ``budget_headers``."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.statuses: Counter[int] = Counter()
        self.paths: Counter[str] = Counter()
        self.faults: deque[Reply] = deque()
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- what subclasses provide --------------------------------------------------------

    def authorized(self, headers: dict[str, str]) -> bool:
        raise NotImplementedError

    def unauthorized(self) -> Reply:
        raise NotImplementedError

    def route(self, path: str, query: dict[str, str]) -> Reply:
        raise NotImplementedError

    def budget_headers(self, paid: bool) -> dict[str, str]:
        """Rate-limit headers of a response; ``paid`` when it counts against the limit."""
        return {}

    # ---- lifecycle ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "the stand-in is not running"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @contextlib.contextmanager
    def running(self) -> Iterator["ForgeStandIn"]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    # ---- counting -----------------------------------------------------------------------

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def paid(self) -> int:
        """Requests that count against the rate limit (everything but 304)."""
        return self.requests - self.statuses[304]

    def reset_counts(self) -> None:
        with self.lock:
            self.statuses.clear()
            self.paths.clear()

    # ---- helpers for routes -------------------------------------------------------------

    def link(self, path: str, query: dict[str, str], rels: dict[str, int]) -> str:
        return ", ".join(
            f'<{self.url}{path}?{urlencode({**query, "page": str(page)})}>; rel="{rel}"' for rel, page in rels.items()
        )

    def answer(self, raw_path: str, headers: dict[str, str]) -> Reply:
        split = urlsplit(raw_path)
        query = {key: values[-1] for key, values in parse_qs(split.query).items()}
        with self.lock:
            fault = self.faults.popleft() if self.faults else None
        if fault is not None:
            reply = fault
        elif not self.authorized(headers):
            reply = self.unauthorized()
        else:
            reply = self.route(split.path, query)
        if reply.status == 200 and reply.body is not None:
            tag = 'W/"' + hashlib.sha256(json.dumps(reply.body, sort_keys=True).encode()).hexdigest()[:32] + '"'
            reply = Reply(200, reply.body, {**reply.headers, "ETag": tag})
            if headers.get("if-none-match") == tag:
                reply = Reply(304, None, {"ETag": tag})
        budget = self.budget_headers(paid=reply.status != 304)
        reply = Reply(reply.status, reply.body, {**budget, **reply.headers})
        with self.lock:
            self.statuses[reply.status] += 1
            self.paths[split.path] += 1
        return reply


def _handler(state: ForgeStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without this, Nagle's algorithm and delayed
        # ACKs hold every keep-alive response back by ~40 ms.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            headers = {key.lower(): value for key, value in self.headers.items()}
            reply = state.answer(self.path, headers)
            body = b"" if reply.body is None else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            if reply.status != 304:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: pytest shows what matters

    return Handler
