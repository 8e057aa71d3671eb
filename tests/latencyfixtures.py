"""Shared pieces of the latency tests: job builders, stand-in fixtures, the CLI in a child process."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner_ctl.latency.model import Job
from tests.conftest import PROJECT_ROOT
from tests.standins.github_api import GitHubStandIn, iso
from tests.standins.gitlab_api import GitLabStandIn

__all__ = [
    "DAY0",
    "assert_one_line_error",
    "github",
    "gitlab",
    "job",
    "report_cli",
    "runner_ctl_latency",
    "trace_line",
]

DAY0 = 1_714_521_600.0  # 2024-05-01T00:00:00Z


def trace_line(created: float, queue: float, run: float, **extra: Any) -> dict[str, Any]:
    """One line of a --from-jsonl trace: a self-hosted linux job of workflow CI, on runner ci-1."""
    return {
        "created_at": iso(DAY0 + created),
        "started_at": iso(DAY0 + created + queue),
        "completed_at": iso(DAY0 + created + queue + run),
        "labels": ["self-hosted", "linux"],
        "runner_name": "ci-1",
        "workflow": "CI",
        "name": "build",
        "conclusion": "success",
        "run_id": int(created),
        **extra,
    }


def job(
    created: float,
    started: float | None,
    completed: float | None,
    *,
    name: str = "build",
    labels: tuple[str, ...] = ("self-hosted", "linux"),
    runner: str | None = "runner-1",
    run_id: int | str = 1,
    attempt: int = 1,
    conclusion: str | None = "success",
    **extra: Any,
) -> Job:
    """A job at DAY0 + the given offsets (seconds)."""
    return Job(
        created_at=DAY0 + created,
        started_at=DAY0 + started if started is not None else None,
        completed_at=DAY0 + completed if completed is not None else None,
        labels=labels,
        runner_name=runner,
        workflow=extra.pop("workflow", "CI"),
        name=name,
        conclusion=conclusion,
        run_id=run_id,
        run_attempt=attempt,
        **extra,
    )


@pytest.fixture
def github() -> Iterator[GitHubStandIn]:
    standin = GitHubStandIn()
    with standin.running():
        yield standin


@pytest.fixture
def gitlab() -> Iterator[GitLabStandIn]:
    standin = GitLabStandIn()
    with standin.running():
        yield standin


def runner_ctl_latency(
    *args: str, env: dict[str, str] | None = None, python: list[str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``runner-ctl latency ARGS`` in a child process, as a user runs it."""
    base = {k: v for k, v in os.environ.items() if k not in ("GITHUB_TOKEN", "GITLAB_TOKEN", "GITHUB_STEP_SUMMARY")}
    return subprocess.run(
        [*(python or [sys.executable, "-m", "runner_ctl"]), "latency", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**base, **(env or {})},
    )


def report_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    """``latency report --format json ARGS``: exit code, the one JSON document, stderr."""
    done = runner_ctl_latency("report", "--format", "json", *args, env=env)
    document = json.loads(done.stdout) if done.returncode in (0, 10) else {}
    return done.returncode, document, done.stderr


def assert_one_line_error(done: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert lines[0].startswith("runner-ctl: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def write_trace(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path
