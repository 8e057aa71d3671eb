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

Self-hosted runners, under ``/repos/{owner}/{repo}``, ``/orgs/{org}`` and
``/enterprises/{enterprise}`` (each scope must be added with ``add_scope``):

- ``GET .../actions/runners?per_page=&page=``: ``{"total_count", "runners": [{id, name, os,
  status, busy, labels: [{id, name, type}]}]}``, ``Link`` paging; ``GET``/``DELETE
  .../actions/runners/{id}`` (204); ``PUT .../actions/runners/{id}/labels`` with ``{"labels"}``
  sets the custom labels and answers ``{"total_count", "labels"}``;
- ``POST .../actions/runners/registration-token`` and ``.../remove-token``: 201 ``{"token",
  "expires_at"}``, tokens good for one hour and for that scope only.

Every route is also served under ``/api/v3`` (GitHub Enterprise Server's API prefix): the
stand-in runner's ``config.sh`` derives the API from its ``--url`` as the real runner does for
a GHES URL. ``POST /api/v3/actions/runner-registration`` with ``Authorization: RemoteAuth
<token>`` is this stand-in's version of the runner's own registration handshake (the real one
continues against the Actions service, which this does not model): ``{"url", "runner_event":
"register", "name", "labels", "runner_group", "replace"}`` creates (or, with ``replace``,
replaces) the runner and answers it; ``{"url", "runner_event": "remove", "runner_id"}`` with a
remove token deletes it. ``calls`` records every request as (method, path, JSON body).
"""

import itertools
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

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


ENTERPRISE_PREFIX = "/api/v3"
HANDSHAKE = "/actions/runner-registration"
TOKEN_LIFETIME_S = 3600
READ_ONLY_LABELS = ("self-hosted", "Linux", "X64")


def _not_found() -> Reply:
    return Reply(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})


@dataclass
class _IssuedToken:
    scope: str
    kind: str  # "registration-token" or "remove-token"
    expires: float


class GitHubStandIn(ForgeStandIn):
    """``bind``: the address to listen on (a test host reaches the controller's end of its veth)."""

    def __init__(
        self,
        repo: str = "acme/app",
        token: str = "ghs_standin_token_0123456789",  # noqa: S107 - a stand-in's token
        *,
        bind: str = "127.0.0.1",
    ) -> None:
        super().__init__(token)
        self.bind = bind
        self.repo = repo
        # Runners by scope prefix ("/repos/o/r", "/orgs/o", "/enterprises/e"), then by id.
        self.scopes: dict[str, dict[int, dict[str, Any]]] = {f"/repos/{repo}": {}}
        self.runner_groups: dict[str, set[str]] = {}
        self.calls: list[tuple[str, str, Any]] = []
        self.write_faults: deque[Reply] = deque()  # answers for the next POST/PUT/DELETE only
        self.issued: dict[str, _IssuedToken] = {}
        self._runner_ids = itertools.count(1)
        self._label_ids = itertools.count(1)
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
        found = self._runner_route(path)
        if found is not None:
            return self._runners_get(path, query, *found)
        prefix = f"/repos/{self.repo}/actions/runs"
        if not path.startswith(prefix):
            return _not_found()
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

    # ---- self-hosted runners: data ---------------------------------------------------------

    def add_scope(self, scope: str, runner_groups: tuple[str, ...] = ()) -> str:
        """Make ``OWNER/REPO``, ``ORG`` or ``enterprise:SLUG`` exist; its API prefix."""
        if scope.startswith("enterprise:"):
            path = f"/enterprises/{scope.split(':', 1)[1]}"
        elif "/" in scope:
            path = f"/repos/{scope}"
        else:
            path = f"/orgs/{scope}"
        with self.lock:
            self.scopes.setdefault(path, {})
            self.runner_groups[path] = {"Default", *runner_groups}
        return path

    def runners(self, scope_path: str | None = None) -> list[dict[str, Any]]:
        """Every registered runner (of one scope prefix, or all), as the API shows them."""
        with self.lock:
            return [
                json.loads(json.dumps(runner))
                for path, runners in self.scopes.items()
                if scope_path is None or path == scope_path
                for runner in runners.values()
            ]

    def add_runner(self, scope_path: str, name: str, *, labels: tuple[str, ...] = (), status: str = "online") -> int:
        with self.lock:
            return self._create(scope_path, name, list(labels), status=status)

    def set_runner(self, name: str, *, status: str | None = None, busy: bool | None = None) -> None:
        """Set a runner online/offline or busy/idle, as GitHub would see it."""
        with self.lock:
            for runners in self.scopes.values():
                for runner in runners.values():
                    if runner["name"] == name:
                        if status is not None:
                            runner["status"] = status
                        if busy is not None:
                            runner["busy"] = busy
                        return
        raise KeyError(name)

    def calls_to(self, method: str, suffix: str) -> list[tuple[str, str, Any]]:
        with self.lock:
            return [call for call in self.calls if call[0] == method and call[1].endswith(suffix)]

    def _create(self, scope_path: str, name: str, labels: list[str], *, status: str = "online") -> int:
        runner_id = next(self._runner_ids)
        self.scopes[scope_path][runner_id] = {
            "id": runner_id,
            "name": name,
            "os": "Linux",
            "status": status,
            "busy": False,
            "labels": self._labels(labels),
        }
        return runner_id

    def _labels(self, custom: list[str]) -> list[dict[str, Any]]:
        fixed = [{"id": next(self._label_ids), "name": name, "type": "read-only"} for name in READ_ONLY_LABELS]
        return fixed + [{"id": next(self._label_ids), "name": name, "type": "custom"} for name in custom]

    # ---- self-hosted runners: the API ------------------------------------------------------

    def _runner_route(self, path: str) -> tuple[str, list[str]] | None:
        """(scope prefix, the parts after .../actions/runners) for a runner path of a known scope."""
        for scope_path in self.scopes:
            prefix = f"{scope_path}/actions/runners"
            if path == prefix or path.startswith(prefix + "/"):
                return scope_path, [part for part in path[len(prefix) :].split("/") if part]
        return None

    def _runners_get(self, path: str, query: dict[str, str], scope_path: str, rest: list[str]) -> Reply:
        with self.lock:
            runners = sorted(self.scopes[scope_path].values(), key=lambda runner: runner["id"])
            if not rest:
                per_page, page = self._paging(query)
                offset = (page - 1) * per_page
                headers = {}
                if offset + per_page < len(runners):
                    headers["Link"] = self.link(path, query, {"next": page + 1, "last": -(-len(runners) // per_page)})
                return Reply(
                    200, {"total_count": len(runners), "runners": runners[offset : offset + per_page]}, headers
                )
            if len(rest) == 1 and rest[0].isdigit() and int(rest[0]) in self.scopes[scope_path]:
                return Reply(200, self.scopes[scope_path][int(rest[0])])
        return _not_found()

    def _runners_write(self, method: str, scope_path: str, rest: list[str], body: Any) -> Reply:
        with self.lock:
            runners = self.scopes[scope_path]
            if method == "POST" and rest in (["registration-token"], ["remove-token"]):
                token = "A" + secrets.token_hex(14).upper()
                expires = time.time() + TOKEN_LIFETIME_S
                self.issued[token] = _IssuedToken(scope_path, rest[0], expires)
                return Reply(201, {"token": token, "expires_at": iso(expires)})
            if not rest or not rest[0].isdigit() or int(rest[0]) not in runners:
                return _not_found()
            runner = runners[int(rest[0])]
            if method == "DELETE" and len(rest) == 1:
                if runner["busy"]:
                    return Reply(422, {"message": "Bad request - Runner is currently running a job", "status": "422"})
                del runners[int(rest[0])]
                return Reply(204)
            if method == "PUT" and rest[1:] == ["labels"]:
                labels = body.get("labels") if isinstance(body, dict) else None
                if not isinstance(labels, list) or not all(isinstance(label, str) and label for label in labels):
                    return Reply(422, {"message": "Invalid request. labels must be a list of strings", "status": "422"})
                runner["labels"] = self._labels(labels)
                return Reply(200, {"total_count": len(runner["labels"]), "labels": runner["labels"]})
        return _not_found()

    def _scope_of_url(self, url: str) -> str | None:
        """The scope prefix a runner's ``--url`` names (http://HOST/OWNER/REPO, /ORG or /enterprises/SLUG)."""
        parts = [part for part in urlsplit(url).path.split("/") if part]
        if len(parts) == 2 and parts[0] == "enterprises":
            return f"/enterprises/{parts[1]}"
        if len(parts) == 2:
            return f"/repos/{parts[0]}/{parts[1]}"
        if len(parts) == 1:
            return f"/orgs/{parts[0]}"
        return None

    def _handshake(self, headers: dict[str, str], body: Any) -> Reply:
        auth = headers.get("authorization", "")
        token = auth[len("RemoteAuth ") :] if auth.startswith("RemoteAuth ") else ""
        if not isinstance(body, dict):
            return Reply(400, {"message": "Invalid request body"})
        with self.lock:
            issued = self.issued.get(token)
            scope_path = self._scope_of_url(str(body.get("url", "")))
            if issued is None or issued.expires < time.time():
                return Reply(401, {"message": "Bad credentials"})
            if scope_path != issued.scope:
                return Reply(404, {"message": f"The token is not for {body.get('url')!r}"})
            runners = self.scopes[scope_path]
            event = body.get("runner_event")
            if event == "register" and issued.kind == "registration-token":
                return self._register(scope_path, runners, body)
            if event == "remove" and issued.kind == "remove-token":
                runner_id = body.get("runner_id")
                if not isinstance(runner_id, int) or runner_id not in runners:
                    return _not_found()
                del runners[runner_id]
                return Reply(200, {"removed": runner_id})
        return Reply(400, {"message": f"a {issued.kind} cannot {event!r} a runner"})

    def _register(self, scope_path: str, runners: dict[int, dict[str, Any]], body: dict[str, Any]) -> Reply:
        name, labels, group = body.get("name"), body.get("labels"), body.get("runner_group") or "Default"
        if not isinstance(name, str) or not name or not isinstance(labels, list):
            return Reply(400, {"message": "name and labels are required"})
        if group not in self.runner_groups.get(scope_path, {"Default"}):
            return Reply(404, {"message": f'Could not find any self-hosted runner group named "{group}".'})
        same = next((runner for runner in runners.values() if runner["name"] == name), None)
        if same is not None and not body.get("replace"):
            return Reply(409, {"message": f"A runner exists with the same name {name}."})
        if same is not None:
            same.update(status="online", busy=False, labels=self._labels([str(label) for label in labels]))
            runner_id = int(same["id"])
        else:
            runner_id = self._create(scope_path, name, [str(label) for label in labels])
        return Reply(
            200,
            {
                "url": f"{self.url}/_services/pipelines/stand-in",
                "token_schema": "OAuthAccessToken",
                "runner": {"id": runner_id, "name": name, "pool_name": group},
            },
        )

    # ---- every method, and the /api/v3 prefix ----------------------------------------------

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: Any) -> Reply:
        split = urlsplit(raw_path)
        path = split.path
        if path.startswith(ENTERPRISE_PREFIX + "/"):
            path = path[len(ENTERPRISE_PREFIX) :]
        with self.lock:
            self.calls.append((method, path, body))
        if method == "POST" and path == HANDSHAKE:
            reply = self._handshake(headers, body)
        elif method == "GET":
            return self.answer(path + (f"?{split.query}" if split.query else ""), headers)
        else:
            with self.lock:
                fault = self.faults.popleft() if self.faults else None
                fault = fault or (self.write_faults.popleft() if self.write_faults else None)
            found = self._runner_route(path)
            if fault is not None:
                reply = fault
            elif not self.authorized(headers):
                reply = self.unauthorized()
            elif found is None:
                reply = _not_found()
            else:
                reply = self._runners_write(method, found[0], found[1], body)
        reply = Reply(reply.status, reply.body, {**self.budget_headers(paid=True), **reply.headers})
        with self.lock:
            self.statuses[reply.status] += 1
            self.paths[path] += 1
        return reply

    @property
    def url(self) -> str:
        assert self._server is not None, "the stand-in is not running"
        return f"http://{self.bind}:{self._server.server_address[1]}"

    def start(self) -> None:
        self._server = ThreadingHTTPServer((self.bind, 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()


def _handler(state: GitHubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # see forge_api.py: keep-alive answers otherwise wait ~40 ms

        def _any(self) -> None:
            headers = {key.lower(): value for key, value in self.headers.items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = {"unparsed": raw.decode(errors="replace")}
            reply = state.handle(self.command, self.path, headers, body)
            data = b"" if reply.body is None else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            if reply.status not in (204, 304):
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any  # noqa: N815 - http.server's naming

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
