"""A stand-in for the parts of DigitalOcean's API v2 that inventories/digitalocean.py reads.

On 127.0.0.1 only. It serves, in the shapes of DigitalOcean's API reference:

- ``GET /v2/droplets?tag_name=&page=&per_page=``: ``{"droplets": [...], "links": {"pages":
  {...}}, "meta": {"total": N}}``, droplets with ``networks.v4`` entries typed ``public`` or
  ``private``, ``volume_ids`` and ``tags``; ``next``/``last`` page links are absolute URLs;
- ``GET /v2/volumes`` (same paging) and ``GET /v2/volumes/{id}``;
- ``401 {"id": "Unauthorized", "message": "Unable to authenticate you"}`` unless the request
  carries ``Authorization: Bearer <token>``; ``404 {"id": "not_found", ...}`` otherwise.

It is not DigitalOcean: it holds only what a test put in, and ``max_per_page`` (200 in the
real API, which is also python-digitalocean's page size) can be lowered so that a handful of
droplets spans several pages.
"""

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.standins.loopback import serve_loopback

__all__ = ["DigitalOceanApi", "droplet", "serve_digitalocean_api", "volume"]


@dataclass
class DigitalOceanApi:
    token: str
    droplets: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    max_per_page: int = 200
    requests: list[str] = field(default_factory=list)  # "METHOD path?query", in order
    port: int = 0

    @property
    def end_point(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2/"


def droplet(
    droplet_id: int, name: str, public_ipv4: str, private_ipv4: str | None, *, tags: list[str], volume_ids: list[str]
) -> dict[str, Any]:
    """A droplet object as GET /v2/droplets lists it (fields trimmed to the documented core).

    ``private_ipv4`` None: a droplet from before VPCs, whose ``networks.v4`` lists only its
    public address (the API omits the private entry then).
    """
    private = [{"ip_address": private_ipv4, "netmask": "255.255.240.0", "gateway": "10.114.0.1", "type": "private"}]
    region = {"name": "Frankfurt 1", "slug": "fra1", "features": ["metadata"], "available": True, "sizes": []}
    return {
        "id": droplet_id,
        "name": name,
        "memory": 8192,
        "vcpus": 4,
        "disk": 160,
        "locked": False,
        "status": "active",
        "kernel": None,
        "created_at": "2025-01-06T10:00:00Z",
        "features": ["monitoring", "ipv6", "private_networking"],
        "backup_ids": [],
        "next_backup_window": None,
        "snapshot_ids": [],
        "image": {"id": 170000000, "name": "12 x64", "distribution": "Debian", "slug": "debian-12-x64"},
        "volume_ids": volume_ids,
        "size": {"slug": "s-4vcpu-8gb", "memory": 8192, "vcpus": 4, "disk": 160},
        "size_slug": "s-4vcpu-8gb",
        "networks": {
            "v4": [
                *(private if private_ipv4 is not None else []),
                {"ip_address": public_ipv4, "netmask": "255.255.240.0", "gateway": "203.0.113.1", "type": "public"},
            ],
            "v6": [{"ip_address": "2001:db8::10", "netmask": 64, "gateway": "2001:db8::1", "type": "public"}],
        },
        "region": region,
        "tags": tags,
        "vpc_uuid": "5a4981aa-9653-4bd1-bef5-d6bff52042e4",
    }


def volume(volume_id: str, name: str, droplet_ids: list[int], *, tags: list[str]) -> dict[str, Any]:
    """A volume object as GET /v2/volumes lists it."""
    return {
        "id": volume_id,
        "region": {"name": "Frankfurt 1", "slug": "fra1", "features": [], "available": True, "sizes": []},
        "droplet_ids": droplet_ids,
        "name": name,
        "description": "Bazel caches",
        "size_gigabytes": 100,
        "created_at": "2025-01-06T10:00:00Z",
        "filesystem_type": "ext4",
        "filesystem_label": "",
        "tags": tags,
    }


def _page(api: DigitalOceanApi, path: str, query: dict[str, list[str]], key: str, items: list[Any]) -> dict[str, Any]:
    per_page = min(int(query.get("per_page", ["20"])[0]), api.max_per_page)
    page = int(query.get("page", ["1"])[0])
    last = max(1, -(-len(items) // per_page))
    pages: dict[str, str] = {}

    def link(number: int) -> str:
        params = {name: values[0] for name, values in query.items()}
        params.update(page=str(number), per_page=str(per_page))
        return f"http://127.0.0.1:{api.port}{path}?{urlencode(sorted(params.items()))}"

    if page > 1:
        pages.update(first=link(1), prev=link(page - 1))
    if page < last:
        pages.update(next=link(page + 1), last=link(last))
    start = (page - 1) * per_page
    return {key: items[start : start + per_page], "links": {"pages": pages}, "meta": {"total": len(items)}}


def _handler(api: DigitalOceanApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            api.requests.append(f"GET {self.path}")
            if self.headers.get("Authorization") != f"Bearer {api.token}":
                self._reply(401, {"id": "Unauthorized", "message": "Unable to authenticate you"})
                return
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            # The API answers with and without a trailing slash (python-digitalocean sends one).
            path = url.path.rstrip("/")
            if path == "/v2/droplets":
                tag = query.get("tag_name", [None])[0]
                chosen = [d for d in api.droplets if tag is None or tag in d["tags"]]
                self._reply(200, _page(api, path, query, "droplets", chosen))
            elif path == "/v2/volumes":
                self._reply(200, _page(api, path, query, "volumes", api.volumes))
            elif path.startswith("/v2/volumes/"):
                wanted = path.removeprefix("/v2/volumes/")
                found = [v for v in api.volumes if v["id"] == wanted]
                if found:
                    self._reply(200, {"volume": found[0]})
                else:
                    self._not_found()
            else:
                self._not_found()

        def _not_found(self) -> None:
            self._reply(404, {"id": "not_found", "message": "The resource you were accessing could not be found."})

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextlib.contextmanager
def serve_digitalocean_api(api: DigitalOceanApi) -> Iterator[DigitalOceanApi]:
    """Serve ``api`` on a free loopback port for the duration of the ``with`` block."""
    with serve_loopback(_handler(api)) as port:
        api.port = port
        yield api
