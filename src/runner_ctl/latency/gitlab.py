"""GitLab CI as a source: pipelines in the window, then their jobs including retried ones.

Requests (REST API v4):

- ``GET /projects/:id/pipelines?updated_after=DAY&order_by=id&sort=asc&per_page=100``,
  following ``Link: rel="next"``. ``updated_after`` is the start of the window's first UTC
  day (a pipeline created in the window was updated after it; a stable URL for the ETag
  cache), ascending ids keep earlier pages unchanged as new pipelines arrive, and paging
  stops at the first pipeline created after the window.
- ``GET /projects/:id/pipelines/:pipeline_id/jobs?include_retried=true&per_page=100`` for
  each finished pipeline, cached on disk by pipeline id and ``updated_at`` (a retry in a
  finished pipeline updates it, so the cache never serves stale jobs). A pipeline whose
  jobs answer 404 (deleted after it was listed) is left out, and the report counts and
  names it.

Queue time is GitLab's own ``queued_duration`` (from pending to started). Jobs of GitLab's
hosted runners (``*.runners-manager.gitlab.com``, ``saas-*`` tags) are marked hosted.
"""

from typing import Annotated

from pydantic import Field

from runner_ctl.errors import UsageError
from runner_ctl.forge.gitlab import gitlab_headers, gitlab_id
from runner_ctl.forge.rest import NotFoundError, Payload, RestClient, fetch_all, trimmer
from runner_ctl.latency.model import Filters, IsoTime, Job, format_time, parse_time
from runner_ctl.latency.source import Gaps, SourceOptions
from runner_ctl.latency.window import Window, day_chunks

__all__ = ["FINISHED", "fetch_gitlab", "is_gitlab_hosted"]

FINISHED = frozenset({"success", "failed", "canceled", "skipped"})
PER_PAGE = 100
MAX_PIPELINE_PAGES = 2000
MAX_JOB_PAGES = 30


class _Pipeline(Payload):
    id: int
    status: str
    ref: str | None = None
    name: str | None = None
    source: str | None = None
    created_at: IsoTime
    updated_at: IsoTime | None = None


class _Runner(Payload):
    id: int
    description: str | None = None
    name: str | None = None
    is_shared: bool | None = None


class _Job(Payload):
    id: int
    name: str
    status: str
    ref: str | None = None
    created_at: IsoTime
    started_at: IsoTime | None = None
    finished_at: IsoTime | None = None
    queued_duration: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    tag_list: list[str] = Field(default_factory=list)
    runner: _Runner | None = None


def is_gitlab_hosted(runner_description: str | None, tags: tuple[str, ...]) -> bool:
    return "runners-manager.gitlab.com" in (runner_description or "") or any(tag.startswith("saas-") for tag in tags)


class _GitLab:
    def __init__(self, client: RestClient, project: str, filters: Filters, gaps: Gaps) -> None:
        self.client = client
        self.project = gitlab_id(project)
        self.filters = filters
        self.gaps = gaps
        self.trim_pipelines = trimmer(_Pipeline, "GitLab")
        self.trim_jobs = trimmer(_Job, "GitLab")

    def pipelines(self, window: Window) -> list[_Pipeline]:
        params: dict[str, str | int] = {
            "updated_after": format_time(day_chunks(window)[0][0]),
            "order_by": "id",
            "sort": "asc",
            "per_page": PER_PAGE,
            "page": 1,
        }
        if self.filters.branch:
            params["ref"] = self.filters.branch
        url: str | None = self.client.url(f"/projects/{self.project}/pipelines", params)
        found: list[_Pipeline] = []
        for _ in range(MAX_PIPELINE_PAGES):
            if url is None:
                break
            page = self.client.get(url, conditional=True, trim=self.trim_pipelines)
            batch = [_Pipeline.model_validate(item) for item in page.body]
            found.extend(batch)
            if batch and parse_time(batch[-1].created_at) >= window.until:
                break  # ascending ids: everything after this was created later still
            url = page.next_url
        return found

    def jobs(self, pipeline: _Pipeline) -> list[Job]:
        path = f"/projects/{self.project}/pipelines/{pipeline.id}/jobs"
        try:
            raw_jobs = self.client.collect(
                self.client.url(path, {"include_retried": "true", "per_page": PER_PAGE}),
                trim=self.trim_jobs,
                items=list,
                key=f"gitlab-jobs-{pipeline.id}-{pipeline.updated_at}",
                max_pages=MAX_JOB_PAGES,
            )
        except NotFoundError:
            # The project answered the list: a 404 here is this pipeline, deleted since.
            label = pipeline.name or pipeline.ref or "unnamed"
            self.gaps.add(missing_run=(pipeline.id, f"pipeline {pipeline.id} ({label}, created {pipeline.created_at})"))
            return []
        return [self._job(pipeline, _Job.model_validate(raw)) for raw in raw_jobs]

    @staticmethod
    def _job(pipeline: _Pipeline, job: _Job) -> Job:
        runner = job.runner
        runner_name = (runner.description or runner.name or f"runner #{runner.id}") if runner else None
        tags = tuple(job.tag_list)
        return Job(
            created_at=parse_time(job.created_at),
            started_at=parse_time(job.started_at) if job.started_at else None,
            completed_at=parse_time(job.finished_at) if job.finished_at else None,
            labels=tags,
            runner_name=runner_name,
            workflow=pipeline.name or "",
            name=job.name,
            conclusion=job.status if job.status in FINISHED else None,
            run_id=pipeline.id,
            run_created_at=parse_time(pipeline.created_at),
            branch=job.ref or pipeline.ref,
            status=job.status,
            queued_seconds=job.queued_duration if job.started_at else None,
            hosted=is_gitlab_hosted(runner_name, tags),
        )


def fetch_gitlab(project: str, options: SourceOptions) -> list[Job]:
    """The jobs (retries included) of the finished pipelines of ``project`` created in the window."""
    if not project.strip() or project.startswith("/") or project.endswith("/"):
        raise UsageError(f"--gitlab {project!r} is not a project id or path (for example 42 or group/project)")
    window, filters = options.window, options.filters
    client = options.client(
        forge="GitLab",
        auth_headers=gitlab_headers(options.token),
        not_found=f"project {project} not found at {options.api_url}, or the token in {options.token_env} cannot "
        "see it (it needs the read_api scope and at least the Reporter role)",
        cache_parts=(gitlab_id(project),),
    )
    with client:
        source = _GitLab(client, project, filters, options.gaps)
        wanted = [
            pipeline
            for pipeline in source.pipelines(window)
            if pipeline.status in FINISHED
            and window.contains(parse_time(pipeline.created_at))
            and filters.keeps_run(pipeline.name or "", pipeline.ref)
        ]
        return [job for jobs in fetch_all(wanted, source.jobs) for job in jobs]
