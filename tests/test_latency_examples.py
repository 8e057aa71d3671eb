"""The scheduled runner-count examples, run for real: the GitHub workflow's report and
pull-request steps (bash, the step's env, a real git repository with a real remote) against
the loopback GitHub API stand-in and the `gh` stand-in (tests/standins/gh_cli.py); the
GitLab job's report script against the GitLab API stand-in."""

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import PROJECT_ROOT
from tests.latencyfixtures import github, gitlab
from tests.standins.github_api import GitHubStandIn, JobSpec
from tests.standins.gitlab_api import GitLabJob, GitLabStandIn

__all__ = ["github", "gitlab"]  # fixtures, imported to be found

GITHUB = PROJECT_ROOT / "examples" / "github" / "runner-count.yml"
GITLAB = PROJECT_ROOT / "examples" / "gitlab" / "runner-count.gitlab-ci.yml"
DAY = 86_400.0


def recent() -> float:
    """A day ago, on the minute: the examples report on the last 14 days before now."""
    return (time.time() - DAY) // 60 * 60


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=30)
    return done.stdout


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A clone of a repository with tofu/, as actions/checkout leaves it, and its bare origin."""
    origin, work = tmp_path / "origin.git", tmp_path / "work"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True, timeout=30)
    subprocess.run(["git", "clone", "-q", str(origin), str(work)], check=True, timeout=30, capture_output=True)
    (work / "tofu").mkdir()
    (work / "tofu" / "main.tf").write_text("# the fleet\n")
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "tofu")
    git(work, "push", "-q", "origin", "HEAD:main")
    return work


def bin_dir(tmp_path: Path) -> Path:
    """runner-ctl (this checkout's) and the gh stand-in on PATH."""
    directory = tmp_path / "bin"
    directory.mkdir(exist_ok=True)
    gh = directory / "gh"
    gh.write_text(f'#!/bin/sh\nexec {sys.executable} {PROJECT_ROOT / "tests" / "standins" / "gh_cli.py"} "$@"\n')
    gh.chmod(gh.stat().st_mode | stat.S_IXUSR)
    runner_ctl = directory / "runner-ctl"
    runner_ctl.write_text(f'#!/bin/sh\nexec {sys.executable} -m runner_ctl "$@"\n')
    runner_ctl.chmod(runner_ctl.stat().st_mode | stat.S_IXUSR)
    return directory


def run_step(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GITLAB_", "GH_"))}
    return subprocess.run(
        ["bash", "-e", "-c", script], cwd=cwd, env={**base, **env}, capture_output=True, text=True, timeout=180
    )


def busy_runs(standin: GitHubStandIn) -> None:
    # six 10-minute shards at once, every two hours on six runners: 6 slots meet a 60 s p95
    start = recent()
    for burst in range(12):
        standin.add_run(
            start + burst * 7200,
            [JobSpec(f"shard-{i}", started=2, completed=602, runner=f"ci-{i}") for i in range(6)],
        )


def github_steps() -> tuple[dict[Any, Any], dict[str, Any], dict[str, Any]]:
    workflow = yaml.safe_load(GITHUB.read_text())
    (job,) = workflow["jobs"].values()
    report = next(step for step in job["steps"] if step.get("id") == "report")
    propose = next(step for step in job["steps"] if "gh pr create" in step.get("run", ""))
    return workflow, report, propose


def test_github_workflow_shape() -> None:
    workflow, report, propose = github_steps()
    assert "schedule" in workflow[True] and "workflow_dispatch" in workflow[True]
    assert workflow["permissions"] == {"actions": "read", "contents": "write", "pull-requests": "write"}
    assert propose["if"] == "steps.report.outputs.changed == 'true'"
    assert propose["env"] == {"GH_TOKEN": "${{ secrets.GITHUB_TOKEN }}"}
    assert "${{" not in report["run"] + propose["run"], "expressions go through env, never into the script"


def test_github_workflow_proposes_a_pull_request_when_runner_count_changes(
    github: GitHubStandIn, checkout: Path, tmp_path: Path
) -> None:
    busy_runs(github)
    workflow, report, propose = github_steps()
    output = tmp_path / "github_output"
    output.write_text("")
    env = {
        **{key: str(value) for key, value in workflow["env"].items()},
        "PATH": f"{bin_dir(tmp_path)}:{os.environ['PATH']}",
        "GITHUB_TOKEN": github.token,
        "REPOSITORY": github.repo,
        "GITHUB_API_URL": github.url,
        "GITHUB_OUTPUT": str(output),
        "RUNNER_CTL_CACHE_DIR": str(tmp_path / "cache"),
    }
    done = run_step(report["run"], checkout, env)
    assert done.returncode == 0, done.stderr
    assert output.read_text() == "changed=true\n"
    tfvars = checkout / workflow["env"]["TFVARS"]
    assert json.loads(tfvars.read_text()) == {"runner_count": 3}  # 6 slots, 2 a host
    env |= {
        "GH_TOKEN": "ghs_standin_token_for_gh",
        "GH_STANDIN_STATE": str(tmp_path / "prs.json"),
        "GITHUB_SERVER_URL": "https://github.invalid",
        "GITHUB_REPOSITORY": github.repo,
        "GITHUB_RUN_ID": "7",
    }
    done = run_step(propose["run"], checkout, env)
    assert done.returncode == 0, done.stderr
    assert "ghs_standin_token_for_gh" not in done.stdout + done.stderr
    (pr,) = json.loads((tmp_path / "prs.json").read_text())
    assert pr["head"] == workflow["env"]["BRANCH"] and pr["title"] == "tofu: runner_count 3"
    pushed = git(checkout, "show", f"origin/{workflow['env']['BRANCH']}:{workflow['env']['TFVARS']}")
    assert json.loads(pushed) == {"runner_count": 3}
    # merged: the next report finds nothing to change and proposes nothing
    git(checkout, "push", "-q", "origin", f"{workflow['env']['BRANCH']}:main")
    git(checkout, "switch", "-q", "main")
    git(checkout, "pull", "-q", "origin", "main")
    output.write_text("")
    done = run_step(report["run"], checkout, env)
    assert done.returncode == 0, done.stderr
    assert output.read_text() == "changed=false\n"


def test_gitlab_job_writes_runner_count_and_proposes_only_on_change(
    gitlab: GitLabStandIn, checkout: Path, tmp_path: Path
) -> None:
    start = recent()
    for burst in range(12):
        gitlab.add_pipeline(
            start + burst * 7200,
            [GitLabJob(f"shard-{i}", queued=2.0, run=600.0, runner=f"ci-{i}") for i in range(6)],
        )
    job = yaml.safe_load(GITLAB.read_text())["runner-count"]
    assert job["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "schedule"'}]
    report, propose = job["script"]
    assert "-o merge_request.create" in propose and "GITLAB_TOKEN" not in report
    assert propose.count("$GITLAB_TOKEN") == 1 and "credential.helper" in propose  # never on a command line
    env = {
        **{key: str(value) for key, value in job["variables"].items()},
        "RUNNER_CTL_CACHE_DIR": str(tmp_path / "cache"),
        "PATH": f"{bin_dir(tmp_path)}:{os.environ['PATH']}",
        "GITLAB_TOKEN": gitlab.token,
        "CI_PROJECT_ID": "acme/app",
        "CI_API_V4_URL": f"{gitlab.url}/api/v4",
    }
    done = run_step(report, checkout, env)
    assert done.returncode == 0, done.stderr
    assert json.loads((checkout / job["variables"]["TFVARS"]).read_text()) == {"runner_count": 3}
    (checkout / job["variables"]["TFVARS"]).unlink()
    git(checkout, "status", "--porcelain")
    done = run_step(propose, checkout, env)  # nothing changed now: it stops before git config and push
    assert done.returncode == 0 and "runner_count unchanged" in done.stdout, done.stderr
