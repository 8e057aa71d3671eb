"""GitHub Actions as a source: workflow runs in the window, then every attempt's jobs.

Requests (REST API, version 2022-11-28):

- ``GET /repos/{owner}/{repo}/actions/runs?created=A..B&per_page=100&page=N``, one query
  for the whole UTC days that cover the window, following ``Link: rel="next"``. The
  endpoint returns at most 1,000 runs per filtered query; only a range whose
  ``total_count`` is above that is split, at the whole day nearest its middle (stable
  URLs, so ETags pay off report after report), within a day in halves, until it fits. A
  sparse window costs one request, not one per day.
- ``GET /repos/{owner}/{repo}/actions/runs/{id}/jobs?filter=all&per_page=100`` for each
  completed run: every attempt's jobs, so re-runs are seen (and carried-forward jobs
  recognised). A completed attempt's jobs never change: they are cached on disk by run id
  and attempt, and a second report fetches none of them. A run whose jobs answer 404 (it
  was deleted after it was listed) is left out, and the report counts and names it.

Jobs without ``created_at`` (GitHub before 2023 and older GitHub Enterprise Server omit it)
have no queue time: they are left out and counted (``excluded.no_created_at``).

Runs still in progress are left for a later report (their jobs are not final).
"""

from pydantic import Field

from runner_ctl.errors import UsageError
from runner_ctl.forge.github import REPO_PATTERN, github_headers
from runner_ctl.forge.rest import NotFoundError, Payload, RestClient, fetch_all, trimmer
from runner_ctl.latency.model import Filters, IsoTime, Job, format_time, parse_time
from runner_ctl.latency.source import Gaps, SourceOptions
from runner_ctl.latency.window import DAY, day_chunks

__all__ = ["RESULT_CAP", "fetch_github"]

RESULT_CAP = 1000  # runs a filtered list query returns at most
PER_PAGE = 100
MAX_JOB_PAGES = 30  # a run has at most 256 jobs per matrix, a few matrices: bounded anyway


class _Run(Payload):
    id: int
    name: str | None = None
    head_branch: str | None = None
    status: str | None = None
    created_at: IsoTime
    run_attempt: int = 1


class _RunsPage(Payload):
    total_count: int
    workflow_runs: list[_Run]


class _Job(Payload):
    id: int
    run_attempt: int = 1
    name: str
    status: str | None = None
    conclusion: str | None = None
    created_at: IsoTime | None = None  # absent before 2023 and on older GitHub Enterprise Server
    started_at: IsoTime | None = None
    completed_at: IsoTime | None = None
    labels: list[str] = Field(default_factory=list)
    runner_name: str | None = None
    runner_group_name: str | None = None
    workflow_name: str | None = None
    head_branch: str | None = None


class _JobsPage(Payload):
    jobs: list[_Job]


def _stamp(seconds: float) -> str:
    return format_time(float(int(seconds)))


class _GitHub:
    def __init__(self, client: RestClient, repo: str, filters: Filters, gaps: Gaps) -> None:
        self.client = client
        self.repo = repo
        self.filters = filters
        self.gaps = gaps
        self.trim_runs = trimmer(_RunsPage, "GitHub")
        self.trim_jobs = trimmer(_JobsPage, "GitHub")

    def runs(self, start: float, end: float) -> list[_Run]:
        """Runs created in [start, end) (whole seconds), splitting ranges over the result cap."""
        params: dict[str, str | int] = {"created": f"{_stamp(start)}..{_stamp(end - 1)}", "per_page": PER_PAGE}
        if self.filters.branch:
            params["branch"] = self.filters.branch
        url = self.client.url(f"/repos/{self.repo}/actions/runs", {**params, "page": 1})
        page = self.client.get(url, conditional=True, trim=self.trim_runs)
        total = int(page.body["total_count"])
        if total > RESULT_CAP and end - start >= 2:
            days = (end - start) // DAY
            middle = start + (days // 2) * DAY if days >= 2 else start + (end - start) // 2
            return self.runs(start, middle) + self.runs(middle, end)
        found = [_Run.model_validate(run) for run in page.body["workflow_runs"]]
        pages = 1
        while page.next_url and pages < RESULT_CAP // PER_PAGE:
            page = self.client.get(page.next_url, conditional=True, trim=self.trim_runs)
            found.extend(_Run.model_validate(run) for run in page.body["workflow_runs"])
            pages += 1
        return found

    def jobs(self, run: _Run) -> list[Job]:
        url = self.client.url(f"/repos/{self.repo}/actions/runs/{run.id}/jobs", {"filter": "all", "per_page": PER_PAGE})
        try:
            raw_jobs = self.client.collect(
                url,
                trim=self.trim_jobs,
                items=lambda body: list(body["jobs"]),
                key=f"github-jobs-{run.id}-{run.run_attempt}",
                max_pages=MAX_JOB_PAGES,
            )
        except NotFoundError:
            # The repository answered the list: a 404 here is this run, deleted since.
            self.gaps.add(missing_run=(run.id, f"run {run.id} ({run.name or 'unnamed'}, created {run.created_at})"))
            return []
        jobs = [_Job.model_validate(raw) for raw in raw_jobs]
        found = [self._job(run, job, job.created_at) for job in jobs if job.created_at is not None]
        if len(found) < len(jobs):
            self.gaps.add(no_created_at=len(jobs) - len(found))
        return found

    @staticmethod
    def _job(run: _Run, job: _Job, created_at: str) -> Job:
        return Job(
            created_at=parse_time(created_at),
            started_at=parse_time(job.started_at) if job.started_at else None,
            completed_at=parse_time(job.completed_at) if job.completed_at else None,
            labels=tuple(job.labels),
            runner_name=job.runner_name or None,
            workflow=job.workflow_name or run.name or "",
            name=job.name,
            conclusion=job.conclusion,
            run_id=run.id,
            run_attempt=job.run_attempt,
            run_created_at=parse_time(run.created_at),
            branch=job.head_branch or run.head_branch,
            status=job.status,
            # GitHub puts its hosted runners in the group "GitHub Actions".
            hosted=(job.runner_group_name == "GitHub Actions") if job.runner_group_name else None,
        )


def fetch_github(repo: str, options: SourceOptions) -> list[Job]:
    """The jobs of the completed runs of ``repo`` created in the window."""
    if not REPO_PATTERN.fullmatch(repo):
        raise UsageError(f"--github {repo!r} is not OWNER/REPO (for example octo-org/octo-repo)")
    window, filters = options.window, options.filters
    client = options.client(
        forge="GitHub",
        auth_headers=github_headers(options.token),
        not_found=f"repository {repo} not found at {options.api_url}, or the token in {options.token_env} cannot "
        "see it (a private repository needs a token with actions: read)",
        cache_parts=tuple(repo.split("/")),
    )
    with client:
        source = _GitHub(client, repo, filters, options.gaps)
        days = day_chunks(window)
        runs = {run.id: run for run in source.runs(days[0][0], days[-1][1])}
        wanted = [
            run
            for run in runs.values()
            if run.status == "completed"
            and window.contains(parse_time(run.created_at))
            and filters.keeps_run(run.name, run.head_branch)
        ]
        wanted.sort(key=lambda run: run.id)
        return [job for jobs in fetch_all(wanted, source.jobs) for job in jobs]
