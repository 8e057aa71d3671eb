"""The GitLab source against the loopback stand-in of GitLab's REST API (tests/standins/gitlab_api.py)."""

from pathlib import Path

import pytest

from runner_ctl.errors import ConfigError
from runner_ctl.forge.httpcache import ApiCounters
from runner_ctl.latency.gitlab import fetch_gitlab
from runner_ctl.latency.model import Filters, Job
from runner_ctl.latency.source import SourceOptions
from runner_ctl.latency.stats import prepare
from runner_ctl.latency.window import DAY, Window
from tests.latencyfixtures import DAY0, gitlab
from tests.standins.gitlab_api import GitLabJob, GitLabStandIn

__all__ = ["gitlab"]  # the fixture, imported to be found

WINDOW = Window(DAY0, DAY0 + DAY)


def fetch(
    standin: GitLabStandIn,
    cache: Path | None,
    *,
    project: str = "acme/app",
    token: str | None = None,
    window: Window = WINDOW,
    filters: Filters | None = None,
    sleeps: list[float] | None = None,
) -> tuple[list[Job], ApiCounters]:
    counters = ApiCounters()
    options = SourceOptions(
        api_url=f"{standin.url}/api/v4",
        token=token or standin.token,
        token_env="GITLAB_TOKEN",  # noqa: S106 - a variable name
        window=window,
        filters=filters or Filters(),
        cache_root=cache,
        counters=counters,
        sleep=(sleeps if sleeps is not None else []).append,
    )
    jobs = fetch_gitlab(project, options)
    return jobs, counters


def test_pipelines_over_several_pages_with_their_jobs(gitlab: GitLabStandIn, tmp_path: Path) -> None:
    ids = [
        gitlab.add_pipeline(DAY0 + i * 120, [GitLabJob("build"), GitLabJob("test", pending_after=70)])
        for i in range(230)
    ]
    jobs, counters = fetch(gitlab, tmp_path)
    assert {job.run_id for job in jobs} == set(ids) and len(jobs) == 460
    assert counters.calls == 3 + 230


def test_queue_is_queued_duration_and_retries_count(gitlab: GitLabStandIn, tmp_path: Path) -> None:
    gitlab.add_pipeline(
        DAY0 + 60,
        [
            GitLabJob("build", queued=4.0),
            GitLabJob("test", pending_after=65, queued=12.0, status="failed", retried=True),
            GitLabJob("test", pending_after=200, queued=2.0),  # the retry: a second real execution
            GitLabJob("deploy", queued=None, runner=None, status="skipped"),
        ],
    )
    jobs, _ = fetch(gitlab, tmp_path)
    assert len(jobs) == 4  # include_retried=true
    prepared = prepare(jobs)
    assert sorted(e.queue for e in prepared.executions) == [2.0, 4.0, 12.0]
    assert prepared.skipped == 1 and prepared.carried_forward == 0
    waits = sorted(e.dependency_wait for e in prepared.executions)
    assert waits == [0.0, 65.0, 200.0]


def test_hosted_runners_and_tags(gitlab: GitLabStandIn, tmp_path: Path) -> None:
    gitlab.add_pipeline(
        DAY0 + 60,
        [
            GitLabJob(
                "lint",
                tags=["saas-linux-small-amd64"],
                runner="3-blue.saas-linux-small-amd64.runners-manager.gitlab.com/default",
                shared=True,
            ),
            GitLabJob("build", tags=["runner-ctl", "bazel"]),
        ],
    )
    jobs = {job.name: job for job in fetch(gitlab, tmp_path)[0]}
    assert jobs["lint"].hosted is True and jobs["build"].hosted is False
    assert jobs["build"].labels == ("runner-ctl", "bazel") and jobs["build"].runner_name == "ci-host-1"


def test_window_branch_and_unfinished_pipelines(gitlab: GitLabStandIn, tmp_path: Path) -> None:
    inside = gitlab.add_pipeline(DAY0 + 60, [GitLabJob("build")])
    gitlab.add_pipeline(DAY0 - 3600, [GitLabJob("build")])  # before the window
    gitlab.add_pipeline(DAY0 + 120, [GitLabJob("build")], ref="feature")
    gitlab.add_pipeline(DAY0 + 180, [GitLabJob("build")], status="running")
    gitlab.add_pipeline(DAY0 + DAY + 60, [GitLabJob("build")])  # after it
    jobs, counters = fetch(gitlab, tmp_path, filters=Filters(branch="main"))
    assert {job.run_id for job in jobs} == {inside}
    assert counters.calls == 2


def test_the_second_report_pays_for_almost_nothing(gitlab: GitLabStandIn, tmp_path: Path) -> None:
    for i in range(150):
        gitlab.add_pipeline(DAY0 + i * 60, [GitLabJob("build")])
    first_jobs, first = fetch(gitlab, tmp_path)
    second_jobs, second = fetch(gitlab, tmp_path)
    assert second_jobs == first_jobs
    assert (first.calls, first.cache_hits, first.not_modified) == (2 + 150, 0, 0)
    assert (second.calls, second.cache_hits, second.not_modified) == (0, 150, 2)


def test_a_project_path_is_url_encoded(gitlab: GitLabStandIn, tmp_path: Path) -> None:
    gitlab.project = "group/sub group/app"
    gitlab.add_pipeline(DAY0 + 60, [GitLabJob("build")])
    assert len(fetch(gitlab, tmp_path, project="group/sub group/app")[0]) == 1
    assert len(fetch(gitlab, None, project=str(gitlab.project_id))[0]) == 1


def test_429_with_retry_after(gitlab: GitLabStandIn, tmp_path: Path) -> None:
    gitlab.add_pipeline(DAY0 + 60, [GitLabJob("build")])
    gitlab.too_many(retry_after=2, count=2)
    sleeps: list[float] = []
    jobs, _ = fetch(gitlab, tmp_path, sleeps=sleeps)
    assert len(jobs) == 1 and sleeps == [2.0, 2.0]


def test_a_bad_token(gitlab: GitLabStandIn, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        fetch(gitlab, tmp_path, token="glpat-not-this-one")  # noqa: S106 - wrong on purpose
    assert "rejected the token in GITLAB_TOKEN" in raised.value.message
    assert "glpat-not-this-one" not in raised.value.message


def test_a_project_that_does_not_exist(gitlab: GitLabStandIn, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="project acme/nope not found"):
        fetch(gitlab, tmp_path, project="acme/nope")
