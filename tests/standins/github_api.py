"""A loopback stand-in of the GitHub REST API's Actions endpoints (not GitHub itself).

Payload shapes follow GitHub's REST documentation (API version 2022-11-28):

- ``GET /repos/{owner}/{repo}/actions/runs?created=A..B&branch=&per_page=&page=``:
  ``{"total_count", "workflow_runs": [...]}``, newest first, ``Link`` with ``rel="next"``
  and ``rel="last"``; a query with a filter such as ``created`` returns at most 1,000 runs
  (``total_count`` still says how many matched; pages past the cap are empty).
- ``GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs?filter=latest|all&per_page=&page=``:
  ``{"total_count", "jobs": [...]}``; ``filter=all`` lists every attempt's jobs.
- ``Authorization: Bearer|token``; 401 ``Bad credentials``; 404 ``Not Found`` for an
  unknown repository or run; ``x-ratelimit-*`` headers on every answer (a 304 costs
  nothing); ``secondary_limit``/``too_many``/``exhausted`` queue the rate-limit answers.
"""

import itertools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.standins.forge_api import ForgeStandIn, Reply

__all__ = ["GitHubStandIn", "JobSpec", "iso", "parse_iso"]

RESULT_CAP = 1000
DOCS = "https://docs.github.com/rest"


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> float:
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@dataclass
class JobSpec:
    """One job of a run attempt, in seconds from the run's creation."""

    name: str
    created: float = 0.0
    started: float | None = 5.0
    completed: float | None = 65.0
    labels: list[str] = field(default_factory=lambda: ["self-hosted", "linux"])
    runner: str | None = "runner-1"
    conclusion: str | None = "success"
    attempt: int = 1
    hosted: bool = False


class GitHubStandIn(ForgeStandIn):
    def __init__(self, repo: str = "acme/app", token: str = "ghs_standin_token_0123456789") -> None:  # noqa: S107 - a stand-in's token
        super().__init__(token)
        self.repo = repo
        self.runs: dict[int, dict[str, Any]] = {}
        self.jobs: dict[int, list[dict[str, Any]]] = {}
        self.remaining = 5000
        self.reset_at = int(time.time()) + 3600
        self._ids = itertools.count(1000)

    # ---- data ---------------------------------------------------------------------------

    def add_run(
        self,
        created: float,
        jobs: list[JobSpec],
        *,
        name: str = "CI",
        branch: str = "main",
        status: str = "completed",
    ) -> int:
        run_id = next(self._ids)
        attempts = max((job.attempt for job in jobs), default=1)
        self.runs[run_id] = {
            "id": run_id,
            "name": name,
            "node_id": f"WFR_{run_id}",
            "head_branch": branch,
            "head_sha": f"{run_id:040x}",
            "path": ".github/workflows/ci.yml",
            "display_title": f"change {run_id}",
            "run_number": run_id - 999,
            "event": "push",
            "status": status,
            "conclusion": "success" if status == "completed" else None,
            "workflow_id": 161335,
            "check_suite_id": run_id * 10,
            "url": f"{self.url}/repos/{self.repo}/actions/runs/{run_id}",
            "html_url": f"https://github.invalid/{self.repo}/actions/runs/{run_id}",
            "created_at": iso(created),
            "updated_at": iso(created + 600),
            "run_attempt": attempts,
            "run_started_at": iso(created),
            "jobs_url": f"{self.url}/repos/{self.repo}/actions/runs/{run_id}/jobs",
            "actor": {"login": "octocat", "id": 1, "type": "User"},
            "repository": {"id": 1296269, "full_name": self.repo, "private": True},
        }
        self.jobs[run_id] = [self._job(run_id, created, name, branch, spec) for spec in jobs]
        return run_id

    def _job(self, run_id: int, created: float, workflow: str, branch: str, spec: JobSpec) -> dict[str, Any]:
        job_id = next(self._ids) + 10_000_000
        started = iso(created + spec.started) if spec.started is not None else None
        completed = iso(created + spec.completed) if spec.completed is not None else None
        ran = spec.runner is not None
        return {
            "id": job_id,
            "run_id": run_id,
            "workflow_name": workflow,
            "head_branch": branch,
            "run_url": f"{self.url}/repos/{self.repo}/actions/runs/{run_id}",
            "run_attempt": spec.attempt,
            "node_id": f"CR_{job_id}",
            "head_sha": f"{run_id:040x}",
            "url": f"{self.url}/repos/{self.repo}/actions/jobs/{job_id}",
            "html_url": f"https://github.invalid/{self.repo}/actions/runs/{run_id}/job/{job_id}",
            "status": "completed" if completed else ("in_progress" if started else "queued"),
            "conclusion": spec.conclusion if completed else None,
            "created_at": iso(created + spec.created),
            "started_at": started,
            "completed_at": completed,
            "name": spec.name,
            "steps": [{"name": "Set up job", "status": "completed", "conclusion": "success", "number": 1}],
            "check_run_url": f"{self.url}/repos/{self.repo}/check-runs/{job_id}",
            "labels": spec.labels,
            "runner_id": sum(map(ord, spec.runner or "")) if ran else None,
            "runner_name": spec.runner if ran else None,
            "runner_group_id": (0 if spec.hosted else 1) if ran else None,
            "runner_group_name": ("GitHub Actions" if spec.hosted else "Default") if ran else None,
        }

    # ---- rate limits ----------------------------------------------------------------------

    def secondary_limit(self, retry_after: int = 1, count: int = 1) -> None:
        message = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
        for _ in range(count):
            self.faults.append(
                Reply(403, {"message": message, "documentation_url": DOCS}, {"retry-after": str(retry_after)})
            )

    def too_many(self, retry_after: int = 1, count: int = 1) -> None:
        for _ in range(count):
            self.faults.append(Reply(429, {"message": "Too Many Requests"}, {"retry-after": str(retry_after)}))

    def exhausted(self, reset_in: float = 0.0) -> None:
        """The primary limit used up: 403 with ``x-ratelimit-remaining: 0`` and the reset time."""
        reset = int(time.time() + reset_in)
        headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset), "x-ratelimit-limit": "5000"}
        message = "API rate limit exceeded for installation ID 1."
        self.faults.append(Reply(403, {"message": message, "documentation_url": DOCS}, headers))

    # ---- the forge side -----------------------------------------------------------------

    def authorized(self, headers: dict[str, str]) -> bool:
        return headers.get("authorization") in (f"Bearer {self.token}", f"token {self.token}")

    def unauthorized(self) -> Reply:
        return Reply(401, {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"})

    def budget_headers(self, paid: bool) -> dict[str, str]:
        with self.lock:
            if paid:
                self.remaining = max(0, self.remaining - 1)
            return {
                "x-ratelimit-limit": "5000",
                "x-ratelimit-remaining": str(self.remaining),
                "x-ratelimit-reset": str(self.reset_at),
                "x-ratelimit-used": str(5000 - self.remaining),
                "x-ratelimit-resource": "core",
            }

    def route(self, path: str, query: dict[str, str]) -> Reply:
        prefix = f"/repos/{self.repo}/actions/runs"
        if not path.startswith(prefix):
            return Reply(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})
        rest = path[len(prefix) :].strip("/")
        if not rest:
            return self._runs(path, query)
        parts = rest.split("/")
        if len(parts) == 2 and parts[1] == "jobs" and parts[0].isdigit() and int(parts[0]) in self.jobs:
            return self._jobs(path, query, int(parts[0]))
        return Reply(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})

    @staticmethod
    def _paging(query: dict[str, str]) -> tuple[int, int]:
        return min(100, int(query.get("per_page", "30"))), max(1, int(query.get("page", "1")))

    def _runs(self, path: str, query: dict[str, str]) -> Reply:
        low, high = float("-inf"), float("inf")
        created = query.get("created")
        if created:
            if ".." in created:
                start, end = created.split("..")
                low, high = parse_iso(start), parse_iso(end)
            elif created.startswith(">="):
                low = parse_iso(created[2:])
        matching = [
            run
            for run in self.runs.values()
            if low <= parse_iso(run["created_at"]) <= high
            and ("branch" not in query or run["head_branch"] == query["branch"])
        ]
        matching.sort(key=lambda run: (run["created_at"], run["id"]), reverse=True)
        per_page, page = self._paging(query)
        reachable = min(len(matching), RESULT_CAP) if created or "branch" in query else len(matching)
        offset = (page - 1) * per_page
        items = matching[offset : min(offset + per_page, reachable)]
        headers = {}
        last = max(1, -(-reachable // per_page))
        rels = {"next": page + 1, "last": last} if page < last else {"prev": page - 1, "first": 1} if page > 1 else {}
        if rels:
            headers["Link"] = self.link(path, query, rels)
        return Reply(200, {"total_count": len(matching), "workflow_runs": items}, headers)

    def _jobs(self, path: str, query: dict[str, str], run_id: int) -> Reply:
        jobs = self.jobs[run_id]
        if query.get("filter", "latest") == "latest":
            latest = self.runs[run_id]["run_attempt"]
            jobs = [job for job in jobs if job["run_attempt"] == latest]
        per_page, page = self._paging(query)
        offset = (page - 1) * per_page
        headers = {}
        if offset + per_page < len(jobs):
            headers["Link"] = self.link(path, query, {"next": page + 1, "last": -(-len(jobs) // per_page)})
        return Reply(200, {"total_count": len(jobs), "jobs": jobs[offset : offset + per_page]}, headers)
