"""The CI examples in examples/: their contracts, and the GitHub deploy step's script run for real.

The script of the GitHub step is taken from the workflow as written, with only the runner
host's paths and ``${{ github.sha }}`` substituted, and run the way GitHub runs it (bash,
the step's env) against a real lock service and real git repositories.
"""

import contextlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from runner_ctl.serial_deploy.command import deploy_app
from tests.conftest import PROJECT_ROOT
from tests.lockfixtures import History, LockService, history, lock_service, wait_for

__all__ = ["history", "lock_service"]  # fixtures, imported to be found

EXAMPLES = PROJECT_ROOT / "examples"
GITHUB = EXAMPLES / "github" / "deploy.yml"
GITLAB = EXAMPLES / "gitlab" / ".gitlab-ci.yml"
RUNNER_CTL = "/opt/runner-ctl/venv/bin/runner-ctl"


def load(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


def github_deploy_job() -> dict[str, Any]:
    job = load(GITHUB)["jobs"]["deploy"]
    assert isinstance(job, dict)
    return job


def github_deploy_step() -> dict[str, Any]:
    steps = [step for step in github_deploy_job()["steps"] if "runner-ctl deploy" in step.get("run", "")]
    assert len(steps) == 1, "expected exactly one step that runs runner-ctl deploy"
    step = steps[0]
    assert isinstance(step, dict)
    return step


def gitlab_script() -> str:
    return "\n".join(load(GITLAB)["deploy"]["script"])


def deploy_options(script: str) -> list[str]:
    """The options of the `runner-ctl deploy` invocation in a script (from the command to `--`)."""
    command = script[script.index("runner-ctl deploy") : script.index(" -- ./deploy.sh")]
    return re.findall(r"(?<![\w-])--[a-z][a-z-]*", command)


def walk(node: Any) -> Iterator[tuple[Any, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


# ---- contracts -----------------------------------------------------------------------------


def test_github_triggers_on_push_to_main_and_dispatch_with_allow_rollback() -> None:
    workflow = load(GITHUB)
    assert "on" not in workflow, "PyYAML reads the key `on` as True; a string key means it was quoted"
    triggers = workflow[True]
    assert triggers["push"]["branches"] == ["main"]
    allow_rollback = triggers["workflow_dispatch"]["inputs"]["allow_rollback"]
    assert allow_rollback["type"] == "boolean"
    assert allow_rollback.get("default", False) is False
    assert allow_rollback.get("required", False) is False


def test_github_deploy_job_runs_on_the_runner_host_with_full_history() -> None:
    workflow, job = load(GITHUB), github_deploy_job()
    assert job["runs-on"][0] == "self-hosted"
    assert "runner-ctl" in job["runs-on"]
    assert (job.get("permissions") or workflow.get("permissions")) == {"contents": "read"}
    checkout = job["steps"][0]
    assert checkout["uses"] == "actions/checkout@v4"
    assert checkout["with"]["fetch-depth"] == 0


def test_github_never_cancels_a_running_deploy() -> None:
    workflow = load(GITHUB)
    for key, value in walk(workflow):
        assert key != "cancel-in-progress" or value is False, "cancel-in-progress would kill a running deploy"
    code = [line for line in GITHUB.read_text().splitlines() if not line.lstrip().startswith("#")]
    assert not any(re.search(r"cancel-in-progress:\s*true", line) for line in code)


def test_github_step_deploys_the_pushed_commit_with_the_token_from_a_file() -> None:
    step = github_deploy_step()
    script: str = step["run"]
    assert step.get("shell") == "bash"
    assert script.startswith("set -euo pipefail\n")
    assert f"{RUNNER_CTL} deploy" in script
    assert '--commit "${{ github.sha }}"' in script
    assert "--env production" in script
    assert "--json" in deploy_options(script)
    assert "--reason" in deploy_options(script)
    assert " -- ./deploy.sh" in script
    # On a fleet host, lock.json and the CI token file are the defaults: no lock flags.
    assert "--token-file" not in script and "--lock-url" not in script and "RUNNER_CTL_LOCK" not in script
    assert "secrets." not in GITHUB.read_text(), "the lock token comes from the host, never a CI secret"
    assert "RUNNER_CTL_LOCK_TOKEN" not in step.get("env", {})
    assert "$GITHUB_STEP_SUMMARY" in script and "python3" in script
    assert re.search(r'exit "\$rc"\s*$', script), "the step must end with runner-ctl's exit code"
    # --allow-rollback only when the dispatch input asks for it
    assert "inputs.allow_rollback" in step["env"]["ALLOW_ROLLBACK"]
    assert "--allow-rollback" not in deploy_options(script)
    assert 'if [[ "$ALLOW_ROLLBACK" == "true" ]]; then rollback=(--allow-rollback); fi' in script


def test_gitlab_deploy_job_contract() -> None:
    pipeline = load(GITLAB)
    job = pipeline["deploy"]
    assert job["stage"] == "deploy" and "deploy" in pipeline["stages"]
    assert "runner-ctl" in job["tags"]
    assert job["variables"]["GIT_DEPTH"] == "0"
    assert "resource_group" not in job
    assert job["interruptible"] is False
    assert job["rules"][0] == {"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"}
    script = gitlab_script()
    assert script.startswith("set -euo pipefail\n")
    assert f"{RUNNER_CTL} deploy" in script
    assert '--commit "$CI_COMMIT_SHA"' in script
    assert "--env production" in script
    assert "--token-file" not in script and "--lock-url" not in script and "RUNNER_CTL_LOCK" not in script
    assert " -- ./deploy.sh" in script
    assert "--allow-rollback" not in deploy_options(script)
    assert re.search(r'exit "\$rc"\s*$', script)
    assert pipeline["variables"]["RUNNER_CTL_ALLOW_ROLLBACK"]["value"] == "false"


@pytest.mark.parametrize("path", [GITHUB, GITLAB], ids=["github", "gitlab"])
def test_examples_use_only_real_deploy_options(path: Path) -> None:
    command = typer.main.get_command(deploy_app)
    known = {opt for param in command.params for opt in param.opts}
    script = github_deploy_step()["run"] if path == GITHUB else gitlab_script()
    used = deploy_options(script)
    assert used, "no options found"
    assert set(used) <= known, f"unknown runner-ctl deploy options: {set(used) - known}"


# ---- the GitHub step's script, run against a real lock service ------------------------------


DEPLOY_SH = """#!/usr/bin/env bash
# records what it was given; holds while ./hold exists; exits with $DEPLOY_EXIT
trap 'echo term > got-term; exit 143' TERM
env | grep -E '^RUNNER_CTL_' | sort > deploy-env.txt
echo "deploying $RUNNER_CTL_COMMIT"
while [ -e hold ]; do sleep 0.05; done
exit "${DEPLOY_EXIT:-0}"
"""


@dataclass
class Step:
    """The GitHub step as it would run on the runner host, in a checkout of `history`."""

    service: LockService
    history: History
    tmp: Path
    started: list[subprocess.Popen[str]] = field(default_factory=list)

    def script(self, commit: str) -> Path:
        text = github_deploy_step()["run"]
        runner_ctl = str(Path(sys.executable).parent / "runner-ctl")
        text = text.replace("${{ github.sha }}", commit).replace(RUNNER_CTL, runner_ctl)
        assert "${{" not in text
        path = self.tmp / f"step-{commit[:12]}-{time.monotonic_ns()}.sh"
        path.write_text(text)
        return path

    @property
    def token_file(self) -> Path:
        return self.tmp / "lock-client.token"

    def env(self, allow_rollback: bool, summary: Path, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in self.service.env().items() if k != "RUNNER_CTL_LOCK_TOKEN"}
        # This machine has no /etc/runner-ctl/lock-client.token: the token the host's file would
        # give, from the environment (the host checks run the step's command with the real file).
        if self.token_file.exists():
            env["RUNNER_CTL_LOCK_TOKEN"] = self.token_file.read_text().strip().split(":", 1)[1]
        runner_temp = self.tmp / f"runner-temp-{time.monotonic_ns()}"
        runner_temp.mkdir()
        env.update(
            ALLOW_ROLLBACK="true" if allow_rollback else "false",
            GITHUB_STEP_SUMMARY=str(summary),
            RUNNER_TEMP=str(runner_temp),
            GITHUB_REPOSITORY="acme/app",
            GITHUB_RUN_ID="42",
            GITHUB_RUN_ATTEMPT="1",
            GITHUB_EVENT_NAME="push",
            GITHUB_ACTOR="octocat",
        )
        env.update(extra)
        return env

    def start(self, commit: str, allow_rollback: bool = False, **extra: str) -> tuple[subprocess.Popen[str], Path]:
        summary = self.tmp / f"summary-{time.monotonic_ns()}.md"
        process = subprocess.Popen(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(self.script(commit))],
            cwd=self.history.clone,
            env=self.env(allow_rollback, summary, extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # so that teardown can end what the script started
            # As a runner starts a step: default signal handling. A test run launched in the
            # background inherits an ignored SIGINT, and bash cannot trap a signal ignored at entry.
            preexec_fn=_default_signals,
        )
        self.started.append(process)
        return process, summary

    def end(self) -> None:
        (self.history.clone / "hold").unlink(missing_ok=True)
        for process in self.started:
            # The whole group: the step's shell may be gone while runner-ctl, tee or deploy.sh are not.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            if process.stdout is not None and not process.stdout.closed:
                process.communicate(timeout=30)

    def run(self, commit: str, allow_rollback: bool = False, **extra: str) -> "Outcome":
        return finish(*self.start(commit, allow_rollback, **extra))


@dataclass
class Outcome:
    code: int
    result: dict[str, Any]
    stdout: str
    stderr: str
    summary: str


def _default_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def finish(process: subprocess.Popen[str], summary: Path, timeout: float = 300) -> Outcome:
    stdout, stderr = process.communicate(timeout=timeout)
    lines = stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    text = summary.read_text() if summary.exists() else ""
    return Outcome(process.returncode, result, stdout, stderr, text)


@pytest.fixture
def step(lock_service: LockService, history: History, tmp_path: Path) -> Iterator[Step]:
    (history.clone / "deploy.sh").write_text(DEPLOY_SH)
    (history.clone / "deploy.sh").chmod(0o755)
    made = Step(lock_service, history, tmp_path)
    made.token_file.write_text(f"ci:{lock_service.ci_secret}\n")
    made.token_file.chmod(stat.S_IRUSR)
    try:
        yield made
    finally:
        made.end()


def env_state(service: LockService) -> dict[str, Any]:
    with service.api() as api:
        response = api.get("/v1/envs/production")
        return dict(response.json()) if response.status_code == 200 else {"holder": None, "queue": []}


def test_github_step_deploys_and_writes_the_job_summary(step: Step, history: History) -> None:
    commit = history.commits["c2"]
    done = step.run(commit)
    assert done.code == 0, done.stderr
    assert done.result["status"] == "succeeded" and done.result["commit"] == commit
    assert f"deploying {commit}" in done.stdout  # deploy.sh's output streams through
    assert "### Deploy to production: succeeded" in done.summary
    assert f"| commit | `{commit}` |" in done.summary
    seen = (history.clone / "deploy-env.txt").read_text()
    assert f"RUNNER_CTL_COMMIT={commit}" in seen
    assert "RUNNER_CTL_LOCK_TOKEN" not in seen
    assert step.service.ci_secret not in done.stdout + done.stderr + done.summary

    older = step.run(history.commits["c1"])
    assert (older.code, older.result["status"]) == (0, "skipped_stale")
    assert "nothing deployed: older than the deployed commit" in older.summary


def test_github_step_keeps_the_deploy_exit_code(step: Step, history: History) -> None:
    done = step.run(history.commits["c2"], DEPLOY_EXIT="7")
    assert (done.code, done.result["status"], done.result["exit_code"]) == (7, "failed", 7)
    assert "### Deploy to production: failed" in done.summary


def test_github_step_passes_allow_rollback_only_when_asked(step: Step, history: History) -> None:
    assert step.run(history.commits["c2"]).code == 0
    refused = step.run(history.commits["s1"])  # diverged from the deployed c2
    assert (refused.code, refused.result["status"]) == (3, "refused")
    assert "allow_rollback" in refused.summary
    allowed = step.run(history.commits["s1"], allow_rollback=True)
    assert (allowed.code, allowed.result["status"]) == (0, "succeeded")


def test_github_step_without_a_result_still_writes_a_summary(step: Step, history: History) -> None:
    step.token_file.unlink()
    done = step.run(history.commits["c2"])
    assert done.code == 2
    assert "runner-ctl exited 2 before reporting a result: usage or configuration error" in done.summary


def test_cancelling_the_github_step_reaches_runner_ctl(step: Step, history: History) -> None:
    """GitHub cancels a step by signalling its shell only (SIGINT): the script forwards it."""
    hold = history.clone / "hold"
    hold.touch()
    running, running_summary = step.start(history.commits["c2"])
    wait_for(lambda: env_state(step.service)["holder"] is not None, "the first deploy to hold the lock")
    waiting, waiting_summary = step.start(history.commits["c3"])
    wait_for(lambda: len(env_state(step.service)["queue"]) == 1, "the second deploy to queue")

    waiting.send_signal(signal.SIGINT)
    withdrawn = finish(waiting, waiting_summary, timeout=60)
    assert (withdrawn.code, withdrawn.result["status"]) == (130, "withdrawn"), withdrawn.stderr
    assert "### Deploy to production: withdrawn" in withdrawn.summary

    wait_for(lambda: (history.clone / "deploy-env.txt").exists(), "deploy.sh to start")
    time.sleep(0.3)  # let deploy.sh reach its wait loop with its trap set
    running.send_signal(signal.SIGINT)
    cancelled = finish(running, running_summary, timeout=60)
    assert (cancelled.code, cancelled.result["status"]) == (130, "cancelled"), cancelled.stderr
    assert (history.clone / "got-term").read_text().strip() == "term"  # deploy.sh got SIGTERM
    state = env_state(step.service)
    assert state["holder"] is None and state["queue"] == []


def test_cancelling_the_github_step_while_runner_ctl_starts_is_not_lost(step: Step, history: History) -> None:
    """A cancellation that lands before runner-ctl is up still ends the step and leaves no request behind."""
    process, summary = step.start(history.commits["c2"])
    time.sleep(0.05)  # the shell is running its script; runner-ctl is at most starting
    process.send_signal(signal.SIGINT)
    ended = finish(process, summary, timeout=60)
    assert ended.code != 0
    wait_for(lambda: env_state(step.service)["queue"] == [], "no request left queued")
    assert env_state(step.service)["holder"] is None
