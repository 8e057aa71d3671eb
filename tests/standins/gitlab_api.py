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
"""

import itertools
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from tests.standins.forge_api import ForgeStandIn, Reply
from tests.standins.github_api import iso, parse_iso

__all__ = ["GitLabJob", "GitLabStandIn"]


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


class GitLabStandIn(ForgeStandIn):
    def __init__(
        self,
        project: str = "acme/app",
        project_id: int = 42,
        token: str = "glpat-standin-0123456789",  # noqa: S107 - a stand-in's token
    ) -> None:
        super().__init__(token)
        self.project = project
        self.project_id = project_id
        self.pipelines: dict[int, dict[str, Any]] = {}
        self.jobs: dict[int, list[dict[str, Any]]] = {}
        self.remaining = 2000
        self._ids = itertools.count(500)

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
