"""A stand-in for a GitHub release download server, on 127.0.0.1 only.

Serves fixed files under paths like ``/opentofu/opentofu/releases/download/v1.12.6/...``
with plain HTTP GETs, as release downloads are (status, Content-Length, body). It counts
requests per path, can slow a body down (so concurrent first runs overlap), and can cut a
body short (an interrupted download). It is not GitHub: it only serves what a test put in.
"""

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.standins.loopback import serve_loopback

__all__ = ["ReleaseServer", "serve_releases"]


@dataclass
class ReleaseServer:
    files: dict[str, bytes] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    delay_s: float = 0.0  # before sending a body: lets concurrent clients overlap
    truncate: set[str] = field(default_factory=set)  # paths whose body stops half-way
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _handler(state: ReleaseServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            state.hits[path] += 1
            body = state.files.get(path)
            if body is None:
                self.send_error(404, "Not Found")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.delay_s:
                time.sleep(state.delay_s)
            if path in state.truncate:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextlib.contextmanager
def serve_releases(state: ReleaseServer) -> Iterator[ReleaseServer]:
    with serve_loopback(_handler(state)) as port:
        state.port = port
        yield state
