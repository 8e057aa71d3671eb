"""A loopback stand-in of the GitLab REST API v4's pipeline and job endpoints (not GitLab itself).

Payload shapes follow GitLab's API documentation:

- ``GET /api/v4/projects/:id/pipelines?updated_after=&updated_before=&ref=&order_by=id&sort=asc|desc
  &per_page=&page=``: a JSON list of pipelines; offset pagination headers (``X-Total``,
  ``X-Total-Pages``, ``X-Page``, ``X-Per-Page``, ``X-Next-Page``, ``X-Prev-Page``) and ``Link``.
- ``GET /api/v4/projects/:id/pipelines/:pipeline_id/jobs?include_retried=true&per_page=&page=``:
  a JSON list of jobs (``queued_duration``, ``tag_list``, ``runner``, ``pipeline``);
  retried jobs only with ``include_retried``.
- ``:id`` is a number or a URL-encoded path (``group%2Fproject``); tokens in
  ``PRIVATE-TOKEN`` or ``Authorization: Bearer``; 401 ``401 Unauthorized``; 404
  ``404 Project Not Found``; ``RateLimit-*`` headers; ``too_many`` queues 429s with
  ``Retry-After``.

And the runner endpoints (GitLab's "Runners API"), each call recorded in ``calls``:

- ``POST /user/runners`` (``runner_type``, ``project_id``/``group_id``, ``description``, ``tag_list``
  as a comma-separated string, ``run_untagged``): 201 ``{id, token: "glrt-…", token_expires_at}``;
  403 ``insufficient_scope`` for a token without ``create_runner``.
- ``POST /runners/verify`` (``{"token": "glrt-…"}``, no user token needed): 200 ``{id, token,
  token_expires_at}``, 403 for a token it does not know.
- ``POST /jobs/request`` (what a runner polls with its token): 204 with no job; it marks the
  runner online and sets ``contacted_at``, as GitLab does.
- ``GET/PUT/DELETE /runners/:id`` (``PUT`` takes ``tag_list`` as a list or a comma-separated
  string), ``GET /runners/:id/jobs?status=running``.
- ``GET /projects/:id/runners``, ``GET /groups/:id/runners``, ``GET /runners/all?type=``: paged
  lists of ``{id, description, ip_address, active, paused, is_shared, runner_type, name, online,
  status}``; ``GET /projects/:id`` and ``GET /groups/:id`` for the numeric ids.
"""

import itertools
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.standins.forge_api import ForgeStandIn, Reply, _handler
from tests.standins.github_api import iso, parse_iso

__all__ = ["GitLabJob", "GitLabRunner", "GitLabStandIn"]

# Every scope a personal access token can hold that the runner endpoints look at.
ALL_SCOPES = frozenset({"api", "read_api", "create_runner", "manage_runner"})


@dataclass
class GitLabJob:
    """One job of a pipeline, in seconds from the pipeline's creation."""

    name: str
    created: float = 0.0
    queued: float | None = 3.0  # seconds pending before it started; None: it never started
    run: float = 60.0
    tags: list[str] = field(default_factory=lambda: ["runner-ctl"])
    runner: str | None = "ci-host-1"
    shared: bool = False
    status: str = "success"
    retried: bool = False
    pending_after: float = 0.0  # created -> pending (waiting for earlier stages)


@dataclass
class GitLabRunner:
    """One runner as the stand-in keeps it; ``token`` is its authentication token (glrt-…)."""

    id: int
    description: str
    runner_type: str
    token: str = field(repr=False)
    tags: list[str] = field(default_factory=list)
    project_ids: list[int] = field(default_factory=list)
    group_ids: list[int] = field(default_factory=list)
    status: str = "never_contacted"  # online, offline, stale, never_contacted
    contacted_at: float | None = None
    busy: bool = False
    run_untagged: bool = False

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "description": self.description,
            "ip_address": None,
            "active": True,
            "paused": False,
            "is_shared": self.runner_type == "instance_type",
            "runner_type": self.runner_type,
            "name": "gitlab-runner" if self.contacted_at else None,
            "online": self.status == "online",
            "status": self.status,
        }

    def details(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "tag_list": list(self.tags),
            "run_untagged": self.run_untagged,
            "locked": False,
            "maximum_timeout": None,
            "access_level": "not_protected",
            "maintenance_note": None,
            "contacted_at": iso(self.contacted_at) if self.contacted_at is not None else None,
            "projects": [{"id": pid} for pid in self.project_ids],
            "groups": [{"id": gid} for gid in self.group_ids],
        }


class GitLabStandIn(ForgeStandIn):
    def __init__(
        self,
        project: str = "acme/app",
        project_id: int = 42,
        token: str = "glpat-standin-0123456789",  # noqa: S107 - a stand-in's token
        scopes: frozenset[str] = ALL_SCOPES,
    ) -> None:
        super().__init__(token)
        self.project = project
        self.project_id = project_id
        self.scopes = scopes
        self.pipelines: dict[int, dict[str, Any]] = {}
        self.jobs: dict[int, list[dict[str, Any]]] = {}
        self.remaining = 2000
        self._ids = itertools.count(500)
        self.projects: dict[str, int] = {project: project_id}
        self.groups: dict[str, int] = {}
        self.runners: dict[int, GitLabRunner] = {}
        self.calls: list[tuple[str, str, Any]] = []  # (method, path, JSON body) of every request, in order
        self._runner_ids = itertools.count(9001)
        self._bind = "127.0.0.1"

    # ---- test-facing helpers for runners ------------------------------------------------

    def add_project(self, path: str, project_id: int) -> None:
        self.projects[path] = project_id

    def add_group(self, path: str, group_id: int) -> None:
        self.groups[path] = group_id

    def add_runner(
        self,
        description: str,
        *,
        runner_type: str = "project_type",
        project: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
        status: str = "online",
        contacted_at: float | None = None,
        busy: bool = False,
    ) -> GitLabRunner:
        """A runner that exists already (as if made in GitLab's UI)."""
        with self.lock:
            return self._new_runner(
                description,
                runner_type,
                [self.projects[project]] if project else [],
                [self.groups[group]] if group else [],
                tags or [],
                status=status,
                contacted_at=contacted_at if contacted_at is not None or status == "never_contacted" else time.time(),
                busy=busy,
            )

    def set_runner(
        self, runner_id: int, *, status: str | None = None, contacted_at: float | None = None, busy: bool | None = None
    ) -> None:
        with self.lock:
            runner = self.runners[runner_id]
            if status is not None:
                runner.status = status
            if contacted_at is not None:
                runner.contacted_at = contacted_at
            if busy is not None:
                runner.busy = busy

    def runner_named(self, description: str) -> GitLabRunner | None:
        with self.lock:
            return next((r for r in self.runners.values() if r.description == description), None)

    def calls_to(self, method: str, prefix: str = "") -> list[tuple[str, str, Any]]:
        with self.lock:
            return [call for call in self.calls if call[0] == method and call[1].startswith(f"/api/v4{prefix}")]

    def _new_runner(
        self,
        description: str,
        runner_type: str,
        project_ids: list[int],
        group_ids: list[int],
        tags: list[str],
        *,
        status: str = "never_contacted",
        contacted_at: float | None = None,
        busy: bool = False,
        run_untagged: bool = False,
    ) -> GitLabRunner:
        runner_id = next(self._runner_ids)
        runner = GitLabRunner(
            id=runner_id,
            description=description,
            runner_type=runner_type,
            token=f"glrt-{secrets.token_urlsafe(15)}",
            tags=tags,
            project_ids=project_ids,
            group_ids=group_ids,
            status=status,
            contacted_at=contacted_at,
            busy=busy,
            run_untagged=run_untagged,
        )
        self.runners[runner_id] = runner
        return runner

    # ---- serving: GET through the shared handler, writes here -----------------------------

    def serve_on(self, bind_host: str) -> None:
        """Listen on ``bind_host`` (a test host's controller address) instead of 127.0.0.1."""
        self._bind = bind_host

    @property
    def url(self) -> str:
        assert self._server is not None, "the stand-in is not running"
        return f"http://{self._bind}:{self._server.server_address[1]}"

    def start(self) -> None:
        standin = self
        base = _handler(self)

        class Handler(base):  # type: ignore[valid-type,misc]
            def _write(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                headers = {key.lower(): value for key, value in self.headers.items()}
                reply = standin.answer_write(self.command, self.path, headers, raw)
                body = b"" if reply.body is None else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                if body:
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_PUT = do_DELETE = _write  # noqa: N815 - http.server's naming

        self._server = ThreadingHTTPServer((self._bind, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def answer(self, raw_path: str, headers: dict[str, str]) -> Reply:
        with self.lock:
            self.calls.append(("GET", urlsplit(raw_path).path, None))
        return super().answer(raw_path, headers)

    def answer_write(self, method: str, raw_path: str, headers: dict[str, str], raw: bytes) -> Reply:
        path = urlsplit(raw_path).path
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        with self.lock:
            self.calls.append((method, path, body))
            fault = self.faults.popleft() if self.faults else None
        if fault is not None:
            reply = fault
        elif not isinstance(body, dict):
            reply = Reply(400, {"error": "400 Bad request - body is not JSON"})
        elif path in ("/api/v4/runners/verify", "/api/v4/jobs/request"):
            reply = self._runner_auth(path, body)  # authenticated by the runner token in the body
        elif not self.authorized(headers):
            reply = self.unauthorized()
        else:
            with self.lock:
                reply = self._write_route(method, path, body)
        with self.lock:
            self.statuses[reply.status] += 1
            self.paths[path] += 1
        return Reply(reply.status, reply.body, {**self.budget_headers(paid=True), **reply.headers})

    def _runner_auth(self, path: str, body: dict[str, Any]) -> Reply:
        with self.lock:
            runner = next((r for r in self.runners.values() if r.token == body.get("token")), None)
            if runner is None:
                return Reply(403, {"message": "403 Forbidden"})
            if path.endswith("/verify"):
                return Reply(200, {"id": runner.id, "token": runner.token, "token_expires_at": None})
            runner.status, runner.contacted_at = "online", time.time()
            return Reply(204, None)

    def _insufficient(self, scope: str) -> Reply:
        return Reply(
            403,
            {
                "error": "insufficient_scope",
                "error_description": "The request requires higher privileges than provided by the access token.",
                "scope": scope,
            },
        )

    def _write_route(self, method: str, path: str, body: dict[str, Any]) -> Reply:
        parts = path.split("/")[3:]  # after /api/v4
        if method == "POST" and parts == ["user", "runners"]:
            return self._create(body)
        if len(parts) == 2 and parts[0] == "runners" and parts[1].isdigit():
            runner = self.runners.get(int(parts[1]))
            if runner is None:
                return Reply(404, {"message": "404 Runner Not Found"})
            if not self.scopes & {"api", "manage_runner"}:
                return self._insufficient("manage_runner")
            if method == "DELETE":
                del self.runners[runner.id]
                return Reply(204, None)
            if method == "PUT":
                tags = body.get("tag_list", runner.tags)
                if isinstance(tags, str):
                    tags = [tag.strip() for tag in tags.split(",") if tag.strip()]
                runner.tags = list(tags)
                if "description" in body:
                    runner.description = str(body["description"])
                return Reply(200, runner.details())
        return Reply(404, {"error": "404 Not Found"})

    def _create(self, body: dict[str, Any]) -> Reply:
        if "create_runner" not in self.scopes and "api" not in self.scopes:
            return self._insufficient("create_runner")
        runner_type = body.get("runner_type")
        projects: list[int] = []
        groups: list[int] = []
        if runner_type == "project_type":
            if body.get("project_id") not in self.projects.values():
                return Reply(403, {"message": "403 Forbidden"})
            projects = [int(body["project_id"])]
        elif runner_type == "group_type":
            if body.get("group_id") not in self.groups.values():
                return Reply(403, {"message": "403 Forbidden"})
            groups = [int(body["group_id"])]
        elif runner_type != "instance_type":
            return Reply(400, {"error": "runner_type does not have a valid value"})
        raw_tags = body.get("tag_list") or []
        tags = [t.strip() for t in raw_tags.split(",") if t.strip()] if isinstance(raw_tags, str) else list(raw_tags)
        runner = self._new_runner(
            str(body.get("description") or ""),
            runner_type,
            projects,
            groups,
            tags,
            run_untagged=bool(body.get("run_untagged", False)),
        )
        return Reply(201, {"id": runner.id, "token": runner.token, "token_expires_at": None})

    def _runner_route(self, parts: list[str], path: str, query: dict[str, str]) -> Reply | None:
        """GET routes of the runner endpoints (``parts`` after /api/v4), or None for the others."""
        with self.lock:
            runners = list(self.runners.values())
        if len(parts) == 2 and parts[0] in ("projects", "groups") and parts[1] != "":
            known = self.projects if parts[0] == "projects" else self.groups
            key = unquote(parts[1])
            found = known.get(key) or (int(key) if key.isdigit() and int(key) in known.values() else None)
            if found is None:
                return Reply(404, {"message": f"404 {parts[0][:-1].title()} Not Found"})
            return Reply(200, {"id": found, "path_with_namespace": next(p for p, i in known.items() if i == found)})
        if len(parts) == 3 and parts[0] in ("projects", "groups") and parts[2] == "runners":
            known = self.projects if parts[0] == "projects" else self.groups
            key = unquote(parts[1])
            found = known.get(key) or (int(key) if key.isdigit() and int(key) in known.values() else None)
            if found is None:
                return Reply(404, {"message": f"404 {parts[0][:-1].title()} Not Found"})
            owned = [r for r in runners if found in (r.project_ids if parts[0] == "projects" else r.group_ids)]
            return self._page(path, query, [r.summary() for r in sorted(owned, key=lambda r: r.id)])
        if parts[:2] == ["runners", "all"] and len(parts) == 2:
            wanted = query.get("type")
            chosen = [r for r in runners if wanted is None or r.runner_type == wanted]
            return self._page(path, query, [r.summary() for r in sorted(chosen, key=lambda r: r.id)])
        if parts and parts[0] == "runners" and len(parts) in (2, 3) and parts[1].isdigit():
            runner = next((r for r in runners if r.id == int(parts[1])), None)
            if runner is None:
                return Reply(404, {"message": "404 Runner Not Found"})
            if len(parts) == 2:
                return Reply(200, runner.details())
            if parts[2] == "jobs":
                running = [{"id": runner.id * 10, "status": "running"}] if runner.busy else []
                jobs = running if query.get("status", "running") == "running" else []
                return self._page(path, query, jobs)
        return None

    def add_pipeline(
        self,
        created: float,
        jobs: list[GitLabJob],
        *,
        ref: str = "main",
        status: str = "success",
        name: str | None = None,
    ) -> int:
        pipeline_id = next(self._ids)
        ends = [created + job.pending_after + (job.queued or 0) + job.run for job in jobs]
        self.pipelines[pipeline_id] = {
            "id": pipeline_id,
            "iid": pipeline_id - 499,
            "project_id": self.project_id,
            "sha": f"{pipeline_id:040x}",
            "ref": ref,
            "status": status,
            "source": "push",
            "name": name,
            "created_at": iso(created),
            "updated_at": iso(max(ends, default=created)),
            "web_url": f"https://gitlab.invalid/{self.project}/-/pipelines/{pipeline_id}",
        }
        self.jobs[pipeline_id] = [self._job(pipeline_id, created, ref, job) for job in jobs]
        return pipeline_id

    def _job(self, pipeline_id: int, created: float, ref: str, spec: GitLabJob) -> dict[str, Any]:
        job_id = next(self._ids) + 1_000_000
        started = created + spec.pending_after + spec.queued if spec.queued is not None else None
        runner = (
            {
                "id": sum(map(ord, spec.runner)),
                "description": spec.runner,
                "ip_address": None,
                "active": True,
                "paused": False,
                "is_shared": spec.shared,
                "runner_type": "instance_type" if spec.shared else "project_type",
                "name": "gitlab-runner",
                "online": True,
                "status": "online",
            }
            if spec.runner and started is not None
            else None
        )
        return {
            "id": job_id,
            "status": spec.status,
            "stage": "test",
            "name": spec.name,
            "ref": ref,
            "tag": False,
            "coverage": None,
            "allow_failure": False,
            "created_at": iso(created + spec.created),
            "started_at": iso(started) if started is not None else None,
            "finished_at": iso(started + spec.run) if started is not None else None,
            "erased_at": None,
            "duration": spec.run if started is not None else None,
            "queued_duration": spec.queued,
            "user": {"id": 1, "username": "root"},
            "commit": {"id": f"{pipeline_id:040x}", "short_id": f"{pipeline_id:08x}", "title": "change"},
            "pipeline": {
                "id": pipeline_id,
                "project_id": self.project_id,
                "ref": ref,
                "sha": f"{pipeline_id:040x}",
                "status": self.pipelines[pipeline_id]["status"],
            },
            "web_url": f"https://gitlab.invalid/{self.project}/-/jobs/{job_id}",
            "project": {"ci_job_token_scope_enabled": False},
            "artifacts": [],
            "runner": runner,
            "runner_manager": None,
            "tag_list": spec.tags,
            "retried": spec.retried,
            "archived": False,
        }

    def too_many(self, retry_after: int = 1, count: int = 1) -> None:
        reset = str(int(time.time()) + retry_after)
        for _ in range(count):
            headers = {"Retry-After": str(retry_after), "RateLimit-Remaining": "0", "RateLimit-Reset": reset}
            self.faults.append(Reply(429, {"message": "Retry later"}, headers))

    # ---- the forge side -----------------------------------------------------------------

    def authorized(self, headers: dict[str, str]) -> bool:
        return self.token in (headers.get("private-token"), headers.get("authorization", "").removeprefix("Bearer "))

    def unauthorized(self) -> Reply:
        return Reply(401, {"message": "401 Unauthorized"})

    def budget_headers(self, paid: bool) -> dict[str, str]:
        with self.lock:
            if paid:
                self.remaining = max(0, self.remaining - 1)
            return {
                "RateLimit-Limit": "2000",
                "RateLimit-Observed": str(2000 - self.remaining),
                "RateLimit-Remaining": str(self.remaining),
                "RateLimit-Reset": str(int(time.time()) + 60),
            }

    def route(self, path: str, query: dict[str, str]) -> Reply:
        parts = path.split("/")
        if parts[1:3] == ["api", "v4"] and (len(parts) < 6 or parts[5] != "pipelines"):
            runner_reply = self._runner_route(parts[3:], path, query)
            if runner_reply is not None:
                return runner_reply
        # /api/v4/projects/:id/pipelines[/:pipeline_id/jobs]
        if len(parts) < 6 or parts[1:4] != ["api", "v4", "projects"] or parts[5] != "pipelines":
            return Reply(404, {"error": "404 Not Found"})
        if unquote(parts[4]) not in (self.project, str(self.project_id)):
            return Reply(404, {"message": "404 Project Not Found"})
        if len(parts) == 6:
            return self._pipelines(path, query)
        if len(parts) == 8 and parts[7] == "jobs" and parts[6].isdigit() and int(parts[6]) in self.jobs:
            jobs = self.jobs[int(parts[6])]
            if query.get("include_retried") != "true":
                jobs = [job for job in jobs if not job["retried"]]
            return self._page(path, query, jobs)
        return Reply(404, {"message": "404 Not found"})

    def _pipelines(self, path: str, query: dict[str, str]) -> Reply:
        found = list(self.pipelines.values())
        if "updated_after" in query:
            found = [p for p in found if parse_iso(p["updated_at"]) >= parse_iso(query["updated_after"])]
        if "updated_before" in query:
            found = [p for p in found if parse_iso(p["updated_at"]) <= parse_iso(query["updated_before"])]
        if "ref" in query:
            found = [p for p in found if p["ref"] == query["ref"]]
        found.sort(key=lambda p: int(p["id"]), reverse=query.get("sort", "desc") == "desc")
        return self._page(path, query, found)

    def _page(self, path: str, query: dict[str, str], items: list[dict[str, Any]]) -> Reply:
        per_page = min(100, int(query.get("per_page", "20")))
        page = max(1, int(query.get("page", "1")))
        pages = max(1, -(-len(items) // per_page))
        headers = {
            "X-Total": str(len(items)),
            "X-Total-Pages": str(pages),
            "X-Per-Page": str(per_page),
            "X-Page": str(page),
            "X-Next-Page": str(page + 1) if page < pages else "",
            "X-Prev-Page": str(page - 1) if page > 1 else "",
        }
        rels = {"first": 1, "last": pages}
        if page < pages:
            rels["next"] = page + 1
        if page > 1:
            rels["prev"] = page - 1
        headers["Link"] = self.link(path, query, rels)
        offset = (page - 1) * per_page
        return Reply(200, items[offset : offset + per_page], headers)
