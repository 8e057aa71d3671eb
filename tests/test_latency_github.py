"""The GitHub source against the loopback stand-in of GitHub's REST API (tests/standins/github_api.py)."""

import time
from pathlib import Path

import pytest

from runner_ctl.errors import ConfigError, UsageError
from runner_ctl.forge.httpcache import ApiCounters
from runner_ctl.forge.rest import ApiError, NotFoundError
from runner_ctl.latency.github import fetch_github
from runner_ctl.latency.model import Filters, Job
from runner_ctl.latency.source import SourceOptions
from runner_ctl.latency.stats import prepare
from runner_ctl.latency.window import DAY, Window
from tests.latencyfixtures import DAY0, github
from tests.standins.github_api import GitHubStandIn, JobSpec

__all__ = ["github"]  # the fixture, imported to be found

WINDOW = Window(DAY0, DAY0 + DAY)


class Sleeps(list[float]):
    """Records the waits the client asks for instead of sleeping them."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def fetch(
    standin: GitHubStandIn,
    cache: Path | None,
    *,
    window: Window = WINDOW,
    filters: Filters | None = None,
    token: str | None = None,
    repo: str = "acme/app",
    sleep: Sleeps | None = None,
    max_wait: float = 120.0,
) -> tuple[list[Job], ApiCounters]:
    counters = ApiCounters()
    options = SourceOptions(
        api_url=standin.url,
        token=token or standin.token,
        token_env="GITHUB_TOKEN",  # noqa: S106 - a variable name
        window=window,
        filters=filters or Filters(),
        cache_root=cache,
        counters=counters,
        max_wait=max_wait,
        sleep=sleep if sleep is not None else Sleeps(),
    )
    jobs = fetch_github(repo, options)
    return jobs, counters


def add_runs(standin: GitHubStandIn, count: int, start: float = DAY0, spacing: float = 60.0) -> list[int]:
    return [
        standin.add_run(start + i * spacing, [JobSpec("build"), JobSpec("test", created=70, started=75)])
        for i in range(count)
    ]


def test_several_pages_of_runs(github: GitHubStandIn, tmp_path: Path) -> None:
    ids = add_runs(github, 250)
    jobs, counters = fetch(github, tmp_path)
    assert {job.run_id for job in jobs} == set(ids)
    assert len(jobs) == 500
    assert counters.calls == 3 + 250  # three list pages, one jobs call per run
    assert github.paths[f"/repos/{github.repo}/actions/runs"] == 3


def test_a_window_over_a_thousand_runs_is_split(github: GitHubStandIn, tmp_path: Path) -> None:
    ids = add_runs(github, 1100, spacing=70.0)  # all on one day: one query would see only 1,000
    jobs, _ = fetch(github, tmp_path)
    assert {job.run_id for job in jobs} == set(ids)
    assert len(jobs) == 2200


def test_runs_outside_the_window_or_filters_cost_no_jobs_call(github: GitHubStandIn, tmp_path: Path) -> None:
    inside = github.add_run(DAY0 + 3600, [JobSpec("build")])
    github.add_run(DAY0 - 3600, [JobSpec("build")])  # the day before
    github.add_run(DAY0 + 7200, [JobSpec("build")], branch="feature")
    github.add_run(DAY0 + 7300, [JobSpec("build")], name="Nightly")
    github.add_run(DAY0 + 7400, [JobSpec("build", completed=None)], status="in_progress")
    jobs, counters = fetch(
        github, tmp_path, filters=Filters(workflow="CI", branch="main"), window=Window(DAY0, DAY0 + 10_000)
    )
    assert {job.run_id for job in jobs} == {inside}
    assert counters.calls == 2  # one list page (branch asked of the API), one jobs call


def test_rerun_attempts_are_listed_and_carried_forward_jobs_counted_once(github: GitHubStandIn, tmp_path: Path) -> None:
    github.add_run(
        DAY0 + 600,
        [
            JobSpec("build", started=10, completed=100),
            JobSpec("test", created=100, started=130, completed=200, conclusion="failure", runner="runner-2"),
            # attempt 2 starts 1000 s later: build is carried forward (same runner, same started_at)
            JobSpec("build", created=1000, started=10, completed=100, attempt=2),
            JobSpec("test", created=1000, started=1003, completed=1100, attempt=2),
            JobSpec("deploy", created=1100, started=None, completed=1100, runner=None, conclusion="skipped", attempt=2),
        ],
    )
    jobs, _ = fetch(github, tmp_path)
    assert len(jobs) == 5  # filter=all: both attempts
    prepared = prepare(jobs)
    assert prepared.carried_forward == 1 and prepared.skipped == 1 and prepared.clamped == 0
    assert sorted(e.queue for e in prepared.executions) == [3.0, 10.0, 30.0]


def test_a_start_before_creation_is_clamped_and_counted(github: GitHubStandIn, tmp_path: Path) -> None:
    github.add_run(DAY0 + 600, [JobSpec("build", created=5, started=4, completed=60)])
    prepared = prepare(fetch(github, tmp_path)[0])
    assert prepared.clamped == 1 and [e.queue for e in prepared.executions] == [0.0]


def test_hosted_runner_jobs_are_marked(github: GitHubStandIn, tmp_path: Path) -> None:
    github.add_run(DAY0 + 600, [JobSpec("lint", labels=["ubuntu-latest"], runner="GitHub Actions 7", hosted=True)])
    github.add_run(DAY0 + 700, [JobSpec("build")])
    hosted = {job.name: job.hosted for job in fetch(github, tmp_path)[0]}
    assert hosted == {"lint": True, "build": False}


def test_the_second_report_pays_for_almost_nothing(github: GitHubStandIn, tmp_path: Path) -> None:
    add_runs(github, 300)
    first_jobs, first = fetch(github, tmp_path)
    assert (first.calls, first.cache_hits, first.not_modified) == (3 + 300, 0, 0)
    paid_before = github.paid
    second_jobs, second = fetch(github, tmp_path)
    assert second_jobs == first_jobs
    assert (second.calls, second.cache_hits, second.not_modified) == (0, 300, 3)
    assert github.paid == paid_before  # only 304s reached the stand-in
    assert github.statuses[304] == 3


def test_a_new_run_on_a_cached_day_costs_one_page_and_its_jobs(github: GitHubStandIn, tmp_path: Path) -> None:
    add_runs(github, 50)
    fetch(github, tmp_path)
    github.add_run(DAY0 + 50 * 60, [JobSpec("build")])
    jobs, counters = fetch(github, tmp_path)
    assert len(jobs) == 101
    assert (counters.calls, counters.cache_hits, counters.not_modified) == (2, 50, 0)


def test_a_rerun_after_the_first_report_is_fetched_again(github: GitHubStandIn, tmp_path: Path) -> None:
    run_id = github.add_run(DAY0 + 60, [JobSpec("build")])
    fetch(github, tmp_path)
    github.runs[run_id]["run_attempt"] = 2
    github.jobs[run_id].append(
        {**github.jobs[run_id][0], "id": 99, "run_attempt": 2, "started_at": None, "runner_name": None}
    )
    jobs, counters = fetch(github, tmp_path)
    assert len(jobs) == 2 and counters.cache_hits == 0


def test_without_a_cache_every_report_pays(github: GitHubStandIn) -> None:
    add_runs(github, 10)
    fetch(github, None)
    _, counters = fetch(github, None)
    assert (counters.calls, counters.cache_hits, counters.not_modified) == (11, 0, 0)


@pytest.mark.parametrize("kind", ["secondary", "too_many"])
def test_rate_limits_with_retry_after_are_waited_out(github: GitHubStandIn, tmp_path: Path, kind: str) -> None:
    add_runs(github, 3)
    if kind == "secondary":
        github.secondary_limit(retry_after=2, count=2)
    else:
        github.too_many(retry_after=3)
    sleeps = Sleeps()
    jobs, counters = fetch(github, tmp_path, sleep=sleeps)
    assert len(jobs) == 6
    assert sleeps == ([2.0, 2.0] if kind == "secondary" else [3.0])
    assert counters.calls == 4 + (2 if kind == "secondary" else 1)  # refused requests count too


def test_a_spent_primary_limit_waits_for_its_reset(github: GitHubStandIn, tmp_path: Path) -> None:
    add_runs(github, 2)
    github.exhausted(reset_in=5)
    sleeps = Sleeps()
    jobs, _ = fetch(github, tmp_path, sleep=sleeps)
    assert len(jobs) == 4
    assert len(sleeps) == 1 and 4.0 <= sleeps[0] <= 6.5


def test_a_budget_at_zero_pauses_before_the_next_request(github: GitHubStandIn, tmp_path: Path) -> None:
    add_runs(github, 2)
    github.remaining = 1  # the list page spends the last request
    github.reset_at = int(time.time()) + 5
    sleeps = Sleeps()
    fetch(github, tmp_path, sleep=sleeps)
    # each jobs call first waits for x-ratelimit-reset (not really slept here)
    assert len(sleeps) == 2 and all(3.5 <= pause <= 6.5 for pause in sleeps)


def test_a_wait_longer_than_allowed_fails_with_one_line(github: GitHubStandIn, tmp_path: Path) -> None:
    add_runs(github, 2)
    github.exhausted(reset_in=3600)
    with pytest.raises(ApiError) as raised:
        fetch(github, tmp_path, max_wait=60)
    assert "rate limit" in raised.value.message and "GITHUB_TOKEN" in raised.value.message
    assert raised.value.exit_code == 1


def test_retries_are_bounded(github: GitHubStandIn, tmp_path: Path) -> None:
    add_runs(github, 2)
    github.too_many(retry_after=1, count=50)
    sleeps = Sleeps()
    with pytest.raises(ApiError, match="after 5 attempts"):
        fetch(github, tmp_path, sleep=sleeps)
    assert github.requests == 5 and len(sleeps) == 4


def test_server_errors_are_retried(github: GitHubStandIn, tmp_path: Path) -> None:
    from tests.standins.forge_api import Reply

    add_runs(github, 1)
    github.faults.extend([Reply(502, {"message": "Server Error"}), Reply(503, {"message": "Unavailable"})])
    sleeps = Sleeps()
    jobs, _ = fetch(github, tmp_path, sleep=sleeps)
    assert len(jobs) == 2 and sleeps == [0.5, 1.0]


def test_a_bad_token_is_a_clear_error_without_the_token(github: GitHubStandIn, tmp_path: Path) -> None:
    add_runs(github, 1)
    with pytest.raises(ConfigError) as raised:
        fetch(github, tmp_path, token="ghp_wrong_secret_value")  # noqa: S106 - wrong on purpose
    assert "rejected the token in GITHUB_TOKEN" in raised.value.message and "401" in raised.value.message
    assert "ghp_wrong_secret_value" not in raised.value.message
    assert raised.value.exit_code == 2


def test_a_repository_that_does_not_exist(github: GitHubStandIn, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError) as raised:
        fetch(github, tmp_path, repo="acme/nope")
    assert "repository acme/nope not found" in raised.value.message and raised.value.exit_code == 2


@pytest.mark.parametrize("repo", ["acme", "acme/app/extra", "", "acme/"])
def test_a_malformed_repository_name(github: GitHubStandIn, repo: str) -> None:
    with pytest.raises(UsageError, match="is not OWNER/REPO"):
        fetch(github, None, repo=repo)
    assert github.requests == 0


def test_an_unexpected_payload_is_one_line(github: GitHubStandIn, tmp_path: Path) -> None:
    from tests.standins.forge_api import Reply

    github.faults.append(Reply(200, {"runs": []}))
    with pytest.raises(ApiError, match="unexpected payload"):
        fetch(github, tmp_path)
