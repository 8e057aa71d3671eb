"""Run a stand-in's HTTP handler on 127.0.0.1 and a free port, for one ``with`` block.

Shared by the stand-ins so that each holds only its wire format; a stand-in never listens
beyond loopback.
"""

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["serve_loopback"]


@contextlib.contextmanager
def serve_loopback(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """Serve ``handler`` until the block ends; yields the port. Stopping is bounded (10 s)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
