"""Stand-in for BuildBuddy's remote cache: Bazel's HTTP caching protocol, in memory.

The protocol Bazel speaks with ``--remote_cache=http://HOST:PORT`` (bazel.build/remote/caching,
"HTTP caching protocol"): ``PUT``/``GET``/``HEAD`` on ``/ac/<sha256>`` (action results, keyed
by the action's digest) and ``/cas/<sha256>`` (content, keyed by its own digest), optionally
under an instance-name prefix. A missing entry is a 404. As real caches do, a CAS upload
whose content does not hash to its key is refused.

It counts what it served, so a test can compare with what Bazel reports. It listens on the
address it is given (a test host's veth peer on the controller, or loopback) and nowhere else.
"""

import contextlib
import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["CacheCounts", "RemoteCache", "serve_remote_cache"]

_PATH = re.compile(r"^(?:/[A-Za-z0-9._-]+)*/(ac|cas)/([0-9a-f]{64})$")
MAX_BLOB = 256 * 1024 * 1024  # enough for a test workspace; refuses a runaway upload


@dataclass
class CacheCounts:
    ac_hits: int = 0
    ac_misses: int = 0
    cas_hits: int = 0
    cas_misses: int = 0
    puts: int = 0
    refused: int = 0


@dataclass
class RemoteCache:
    blobs: dict[tuple[str, str], bytes] = field(default_factory=dict)
    counts: CacheCounts = field(default_factory=CacheCounts)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    def url(self, address: str) -> str:
        return f"http://{address}:{self.port}"


def _handler(cache: RemoteCache) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Bazel's client expects

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _reply(self, status: int, body: bytes = b"", *, send_body: bool = True) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if send_body and body:
                self.wfile.write(body)

        def _key(self) -> tuple[str, str] | None:
            match = _PATH.fullmatch(self.path.split("?", 1)[0])
            return (match.group(1), match.group(2)) if match else None

        def _lookup(self, *, send_body: bool) -> None:
            key = self._key()
            if key is None:
                self._reply(404)
                return
            with cache.lock:
                blob = cache.blobs.get(key)
                hit = blob is not None
                kind = key[0]
                if kind == "ac":
                    cache.counts.ac_hits += hit
                    cache.counts.ac_misses += not hit
                else:
                    cache.counts.cas_hits += hit
                    cache.counts.cas_misses += not hit
            if blob is None:
                self._reply(404)
            else:
                self._reply(200, blob, send_body=send_body)

        def do_GET(self) -> None:
            self._lookup(send_body=True)

        def do_HEAD(self) -> None:
            self._lookup(send_body=False)

        def _body(self) -> bytes | None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks: list[bytes] = []
                total = 0
                for _ in range(1_000_000):  # bounded: one chunk per iteration
                    size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    total += size
                    if total > MAX_BLOB:
                        return None
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return None
            length = int(self.headers.get("Content-Length", "0"))
            return self.rfile.read(length) if 0 <= length <= MAX_BLOB else None

        def do_PUT(self) -> None:
            key = self._key()
            body = self._body()
            if key is None or body is None or (key[0] == "cas" and hashlib.sha256(body).hexdigest() != key[1]):
                with cache.lock:
                    cache.counts.refused += 1
                self.close_connection = True
                self._reply(400)
                return
            with cache.lock:
                cache.blobs[key] = body
                cache.counts.puts += 1
            self._reply(200)

    return Handler


@contextlib.contextmanager
def serve_remote_cache(address: str = "127.0.0.1") -> Iterator[RemoteCache]:
    """Serve an empty cache on ``address`` and a free port until the block ends (stopping is bounded)."""
    cache = RemoteCache()
    server = ThreadingHTTPServer((address, 0), _handler(cache))
    server.daemon_threads = True
    cache.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield cache
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
