"""The report on forge data as real repositories send it: old payloads, deleted runs, runners
the forge no longer names, runners made per job, and sparse windows.

Payloads come from the loopback stand-ins (tests/standins/github_api.py, gitlab_api.py),
shaped as GitHub's and GitLab's published API descriptions say; tests/fixtures/latency/
holds a GitHub jobs page as GitHub sent it before 2023 (no ``created_at``,
``workflow_name`` or ``head_branch``).
"""

import json
from pathlib import Path
from typing import Any

from runner_ctl.latency.simulate import SimJob, runner_pools
from runner_ctl.latency.stats import prepare
from runner_ctl.latency.window import DAY, Window
from tests.conftest import PROJECT_ROOT
from tests.latencyfixtures import DAY0, github, gitlab, job, report_cli, runner_ctl_latency, write_trace
from tests.standins.github_api import GitHubStandIn, JobSpec, iso
from tests.standins.gitlab_api import GitLabJob, GitLabStandIn
from tests.test_latency_github import fetch

__all__ = ["github", "gitlab"]  # fixtures, imported to be found

OLD_JOBS = PROJECT_ROOT / "tests" / "fixtures" / "latency" / "github-jobs-2022.json"
LINUX = frozenset({"self-hosted", "linux"})


def gh_report(standin: GitHubStandIn, tmp_path: Path, *more: str) -> tuple[int, dict[str, Any], str]:
    env = {"GITHUB_TOKEN": standin.token, "RUNNER_CTL_CACHE_DIR": str(tmp_path / "cache")}
    args = ["--github", standin.repo, "--api-url", standin.url, "--since", "2024-05-01", "--until", "2024-05-02"]
    return report_cli(*args, *more, env=env)


def gl_report(standin: GitLabStandIn, tmp_path: Path) -> tuple[int, dict[str, Any], str]:
    env = {"GITLAB_TOKEN": standin.token, "RUNNER_CTL_CACHE_DIR": str(tmp_path / "cache")}
    args = [
        "--gitlab",
        "acme/app",
        "--api-url",
        f"{standin.url}/api/v4",
        "--since",
        "2024-05-01",
        "--until",
        "2024-05-02",
    ]
    return report_cli(*args, env=env)


def test_jobs_without_created_at_are_left_out_counted_and_the_rest_reported(
    github: GitHubStandIn, tmp_path: Path
) -> None:
    # queues 4, 10 and 30 s, by hand: p50 10, p95 = 10 + 0.9 * 20 = 28, mean 44/3
    github.add_run(DAY0 + 600, [JobSpec("build", started=4), JobSpec("test", created=100, started=110, completed=200)])
    github.add_run(DAY0 + 900, [JobSpec("build", started=30, completed=90)])
    old = github.add_run(DAY0 + 1200, [JobSpec("placeholder")])
    github.jobs[old] = [{**raw, "run_id": old} for raw in json.loads(OLD_JOBS.read_text())["jobs"]]
    code, document, stderr = gh_report(github, tmp_path)
    assert code == 0, stderr
    assert document["jobs"] == 3
    assert document["excluded"]["no_created_at"] == 3
    queue = document["overall"]["queue_seconds"]
    assert (queue["p50"], queue["p95"], queue["max"], queue["mean"]) == (10.0, 28.0, 30.0, round(44 / 3, 3))


def test_a_run_whose_jobs_answer_404_is_named_and_the_rest_reported(github: GitHubStandIn, tmp_path: Path) -> None:
    kept = [github.add_run(DAY0 + 600 * i, [JobSpec("build"), JobSpec("test", started=8)]) for i in range(1, 4)]
    deleted = github.add_run(DAY0 + 3000, [JobSpec("build")], name="Nightly")
    del github.jobs[deleted]  # listed, then deleted: its jobs answer 404
    code, document, stderr = gh_report(github, tmp_path, "--format", "json")
    assert code == 0, stderr
    assert document["jobs"] == 2 * len(kept)
    assert document["missing_runs"] == {"runs": 1, "names": [f"run {deleted} (Nightly, created {iso(DAY0 + 3000)})"]}
    code, again, _ = gh_report(github, tmp_path)  # not cached as an empty run: asked again, still missing
    assert code == 0 and again["missing_runs"]["runs"] == 1 and again["jobs"] == 2 * len(kept)
    env = {"GITHUB_TOKEN": github.token, "RUNNER_CTL_CACHE_DIR": str(tmp_path / "cache")}
    args = ["--github", github.repo, "--api-url", github.url, "--since", "2024-05-01", "--until", "2024-05-02"]
    shown = runner_ctl_latency("report", *args, "--format", "markdown", env=env)
    assert shown.returncode == 0, shown.stderr
    assert f"1 runs missing (their jobs answered 404: deleted since listed): run {deleted} (Nightly" in shown.stdout


def test_a_deleted_gitlab_pipeline_is_named_and_the_rest_reported(gitlab: GitLabStandIn, tmp_path: Path) -> None:
    for i in range(3):
        gitlab.add_pipeline(DAY0 + 900 * i, [GitLabJob("build")])
    gone = gitlab.add_pipeline(DAY0 + 3600, [GitLabJob("build")])
    del gitlab.jobs[gone]
    code, document, stderr = gl_report(gitlab, tmp_path)
    assert code == 0, stderr
    assert document["jobs"] == 3
    assert document["missing_runs"]["runs"] == 1 and document["missing_runs"]["names"][0].startswith(
        f"pipeline {gone} ("
    )


def test_a_started_job_without_a_runner_name_is_classified_by_its_timestamps() -> None:
    jobs = [
        job(0, 5, 65, runner=None, name="ran"),  # the runner was deleted since: the job ran 60 s
        job(0, 7, None, runner=None, name="running"),  # started, not done yet
        job(0, 90, 90, runner=None, name="cancelled", conclusion="cancelled"),  # cancelled while queued
        job(0, None, None, runner=None, name="queued", conclusion=None),
    ]
    prepared = prepare(jobs)
    assert sorted(e.job.name for e in prepared.executions) == ["ran", "running"]
    assert prepared.not_started == 2
    assert [e.queue for e in prepared.executions if e.job.name == "ran"] == [5.0]


def test_gitlab_jobs_of_a_deleted_runner_count(gitlab: GitLabStandIn, tmp_path: Path) -> None:
    gitlab.add_pipeline(DAY0 + 60, [GitLabJob("build", queued=4.0), GitLabJob("test", queued=6.0, runner=None)])
    code, document, stderr = gl_report(gitlab, tmp_path)
    assert code == 0, stderr
    assert document["jobs"] == 2 and document["excluded"]["not_started"] == 0


def test_jobs_of_unnamed_runners_join_the_kind_that_serves_them() -> None:
    jobs = [SimJob(0, 10, LINUX, "ci-1"), SimJob(5, 20, LINUX, ""), SimJob(9, 5, LINUX | {"gpu"}, "")]
    # one kind of named runner; the GPU job fits no named kind, so it makes its own
    assert runner_pools(jobs) == [(LINUX | {"gpu"}, 5.0), (LINUX, 30.0)]


def per_job_runner_trace(tmp_path: Path) -> Path:
    lines = [
        {
            "created_at": iso(DAY0 + 300 * i),
            "started_at": iso(DAY0 + 300 * i + 20),
            "completed_at": iso(DAY0 + 300 * i + 500),
            "labels": ["self-hosted", "linux"],
            "runner_name": f"arc-runner-set-7x2kq-runner-{i:05x}",  # a new runner (pod) per job
            "workflow": "CI",
            "name": "build",
            "conclusion": "success",
            "run_id": i,
        }
        for i in range(40)
    ]
    return write_trace(tmp_path / "ephemeral.jsonl", lines)


def test_a_unique_runner_name_per_job_leaves_the_current_size_unknown(tmp_path: Path) -> None:
    trace = per_job_runner_trace(tmp_path)
    code, document, stderr = report_cli("--from-jsonl", str(trace))
    assert code == 0, stderr
    recommendation = document["recommendation"]
    assert recommendation["current_slots"] is None
    assert recommendation["current_slots_basis"] == "unknown" and recommendation["one_runner_per_job"] is True
    assert recommendation["scale_out"] is False
    assert recommendation["recommended_slots"] == 2  # jobs of 480 s every 300 s: two at a time
    assert document["overall"]["slot_utilisation"] is None
    table = runner_ctl_latency("report", "--from-jsonl", str(trace), "--format", "markdown")
    assert "the current size cannot be inferred" in table.stdout and "--current-slots" in table.stdout


def test_current_slots_says_what_runners_made_per_job_cannot(tmp_path: Path) -> None:
    trace = per_job_runner_trace(tmp_path)
    code, document, stderr = report_cli("--from-jsonl", str(trace), "--current-slots", "1")
    assert code == 0, stderr
    recommendation = document["recommendation"]
    assert (recommendation["current_slots"], recommendation["current_slots_basis"]) == (1, "given")
    assert recommendation["scale_out"] is True


def test_a_fleet_of_named_runners_is_still_inferred(tmp_path: Path) -> None:
    lines = [
        {**json.loads(line), "runner_name": f"ci-{i % 3}"}
        for i, line in enumerate(per_job_runner_trace(tmp_path).read_text().splitlines())
    ]
    code, document, _ = report_cli("--from-jsonl", str(write_trace(tmp_path / "fleet.jsonl", lines)))
    assert code == 0
    assert document["recommendation"]["current_slots"] == 3
    assert document["recommendation"]["current_slots_basis"] == "inferred"


def test_a_sparse_window_costs_one_list_request(github: GitHubStandIn, tmp_path: Path) -> None:
    first = github.add_run(DAY0 + 3 * DAY + 100, [JobSpec("build")])
    second = github.add_run(DAY0 + 97 * DAY + 100, [JobSpec("build")])
    jobs, counters = fetch(github, tmp_path, window=Window(DAY0, DAY0 + 111 * DAY))
    assert {job.run_id for job in jobs} == {first, second}
    assert github.paths[f"/repos/{github.repo}/actions/runs"] == 1
    assert counters.calls == 1 + 2


def test_a_dense_stretch_of_a_long_window_is_split_where_it_is_dense(github: GitHubStandIn, tmp_path: Path) -> None:
    dense = [github.add_run(DAY0 + 40 * DAY + 70 * i, [JobSpec("build")]) for i in range(1100)]
    sparse = github.add_run(DAY0 + 5 * DAY, [JobSpec("build")])
    jobs, _ = fetch(github, tmp_path, window=Window(DAY0, DAY0 + 60 * DAY))
    assert {job.run_id for job in jobs} == {*dense, sparse}
    # halving at whole days down to the dense day, then within it: far fewer than one query a day
    assert github.paths[f"/repos/{github.repo}/actions/runs"] < 60
