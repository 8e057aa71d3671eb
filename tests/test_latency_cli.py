"""``runner-ctl latency report`` end to end, in a child process, as a user or a CI job runs it."""

import json
import struct
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT
from tests.latencyfixtures import (
    DAY0,
    assert_one_line_error,
    github,
    gitlab,
    report_cli,
    runner_ctl_latency,
    trace_line,
    write_trace,
)
from tests.standins.github_api import GitHubStandIn, JobSpec
from tests.standins.gitlab_api import GitLabJob, GitLabStandIn

__all__ = ["github", "gitlab"]  # fixtures, imported to be found

CONTRACT_KEYS = {"source", "window", "jobs", "overall", "groups", "by_hour_utc", "api", "recommendation"}


@pytest.fixture
def busy_trace(tmp_path: Path) -> Path:
    """Jobs of 10 minutes arriving every 5 minutes on one runner: the queue grows all day."""
    lines = [trace_line(i * 300, max(0, i * 300), 600) for i in range(100)]
    return write_trace(tmp_path / "busy.jsonl", lines)


@pytest.fixture
def calm_trace(tmp_path: Path) -> Path:
    lines = [trace_line(i * 3600, 5, 600, runner_name=f"ci-{i % 2}") for i in range(20)]
    lines.append(
        trace_line(30, 0, 0, name="deploy", started_at=None, completed_at=None, runner_name=None, conclusion="skipped")
    )
    return write_trace(tmp_path / "calm.jsonl", lines)


def gh_env(standin: GitHubStandIn, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"GITHUB_TOKEN": standin.token, "RUNNER_CTL_CACHE_DIR": str(tmp_path / "cache"), **extra}


def gh_args(standin: GitHubStandIn, *more: str) -> list[str]:
    return ["--github", standin.repo, "--api-url", standin.url, "--since", "2024-05-01", "--until", "2024-05-02", *more]


# ---- the JSON contract ------------------------------------------------------------------------


def test_json_is_one_document_with_the_contract(calm_trace: Path) -> None:
    done = runner_ctl_latency("report", "--from-jsonl", str(calm_trace), "--format", "json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)  # the whole of stdout: exactly one JSON document
    assert set(document) >= CONTRACT_KEYS
    assert document["source"] == f"jsonl:{calm_trace}"
    assert set(document["window"]) == {"since", "until"} and document["window"]["since"] == "2024-05-01T00:00:00Z"
    assert document["jobs"] == 20
    overall = document["overall"]
    assert set(overall["queue_seconds"]) == {"p50", "p90", "p95", "p99", "max", "mean"}
    assert set(overall["run_seconds"]) == {"p50", "p95"} and set(overall["wall_clock_seconds"]) == {"p50", "p95"}
    assert overall["queue_seconds"]["p95"] == 5.0 and overall["run_seconds"]["p50"] == 600.0
    (group,) = document["groups"]
    assert group["labels"] == ["linux", "self-hosted"] and group["jobs"] == 20
    assert {"labels", "jobs", "queue_seconds", "run_seconds"} <= set(group)
    assert [hour["hour"] for hour in document["by_hour_utc"]] == list(range(24))
    assert set(document["by_hour_utc"][0]) == {"hour", "jobs", "queue_p95"}
    assert document["api"] == {"calls": 0, "cache_hits": 0, "not_modified": 0}
    recommendation = document["recommendation"]
    assert {
        "target_p95_seconds",
        "current_slots",
        "recommended_slots",
        "scale_out",
        "predicted_queue_p95_seconds",
    } <= set(recommendation)
    assert recommendation["target_p95_seconds"] == 60.0
    assert recommendation["current_slots"] == 2  # two runner names
    assert recommendation["recommended_slots"] == 1 and recommendation["scale_out"] is False
    assert list(recommendation["predicted_queue_p95_seconds"]) == [str(c) for c in range(1, 17)]
    assert document["excluded"]["skipped"] == 1
    assert done.stderr == ""


def test_fail_on_scale_out_exits_10(busy_trace: Path) -> None:
    code, document, _ = report_cli("--from-jsonl", str(busy_trace), "--fail-on-scale-out")
    assert code == 10
    recommendation = document["recommendation"]
    assert recommendation["scale_out"] is True and recommendation["current_slots"] == 1
    assert recommendation["recommended_slots"] == 2
    assert recommendation["predicted_queue_p95_seconds"]["1"] > 60 >= recommendation["predicted_queue_p95_seconds"]["2"]
    assert report_cli("--from-jsonl", str(busy_trace))[0] == 0  # only when asked
    assert report_cli("--from-jsonl", str(busy_trace), "--slots", "3", "--fail-on-scale-out")[0] == 0


def test_an_empty_window_is_reported_not_an_error(calm_trace: Path) -> None:
    code, document, stderr = report_cli(
        "--from-jsonl", str(calm_trace), "--since", "2023-01-01", "--until", "2023-01-02"
    )
    assert code == 0, stderr
    assert document["jobs"] == 0 and document["note"] == "no jobs in window"
    assert document["recommendation"]["scale_out"] is False
    done = runner_ctl_latency(
        "report", "--from-jsonl", str(calm_trace), "--since", "2023-01-01", "--until", "2023-01-02"
    )
    assert done.returncode == 0 and "no jobs in window" in done.stdout


# ---- people's formats -------------------------------------------------------------------------


def test_markdown_is_appended_to_the_step_summary(calm_trace: Path, tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n")
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    done = runner_ctl_latency("report", "--from-jsonl", str(calm_trace), "--format", "markdown", env=env)
    assert done.returncode == 0, done.stderr
    text = summary.read_text()
    assert text.startswith("# earlier step\n### CI latency: jsonl:")
    assert "| labels | jobs | queue p50 |" in text and "| linux, self-hosted | 20 |" in text
    assert "no scale-out needed: 1 slot recommended (now 2)" in text
    assert done.stdout.strip() in text  # the same markdown on stdout, for the log
    # without --format, a non-terminal stdout gets markdown too
    again = runner_ctl_latency("report", "--from-jsonl", str(calm_trace), env=env)
    assert again.stdout.startswith("### CI latency") and summary.read_text().count("### CI latency") == 2


def test_json_is_not_written_to_the_step_summary(calm_trace: Path, tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    done = runner_ctl_latency(
        "report", "--from-jsonl", str(calm_trace), "--format", "json", env={"GITHUB_STEP_SUMMARY": str(summary)}
    )
    assert done.returncode == 0 and not summary.exists()


def test_table(busy_trace: Path) -> None:
    done = runner_ctl_latency("report", "--from-jsonl", str(busy_trace), "--format", "table")
    assert done.returncode == 0, done.stderr
    assert "Scale-out model" in done.stdout and "scale out: 2 slots recommended (now 1)" in done.stdout
    assert "Queue p95 by hour of day (UTC)" in done.stdout


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_chart(busy_trace: Path, tmp_path: Path, suffix: str) -> None:
    chart = tmp_path / f"latency{suffix}"
    code, document, stderr = report_cli("--from-jsonl", str(busy_trace), "--chart", str(chart))
    assert code == 0, stderr
    data = chart.read_bytes()
    if suffix == ".png":
        width, height = png_size(data)
        assert width > 600 and height > 300
    else:
        root = ET.fromstring(data)  # noqa: S314 - our own chart
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert "queue p95 by hour of day" in data.decode()
    assert document["jobs"] == 100


def test_chart_of_an_empty_window(calm_trace: Path, tmp_path: Path) -> None:
    chart = tmp_path / "empty.png"
    code, _, stderr = report_cli(
        "--from-jsonl", str(calm_trace), "--since", "2020-01-01", "--until", "2020-01-02", "--chart", str(chart)
    )
    assert code == 0, stderr
    png_size(chart.read_bytes())


def test_chart_without_matplotlib_says_how_to_install_it(calm_trace: Path, tmp_path: Path) -> None:
    # matplotlib made unimportable, as on a host installed without the latency extra
    python = [
        sys.executable,
        "-c",
        "import sys; sys.modules['matplotlib'] = None; from runner_ctl.cli import main; main()",
    ]
    done = runner_ctl_latency(
        "report", "--from-jsonl", str(calm_trace), "--chart", str(tmp_path / "c.png"), python=python
    )
    assert_one_line_error(done, 2, "pip install 'runner-ctl[latency]'")
    assert not (tmp_path / "c.png").exists()


def test_chart_needs_png_or_svg(calm_trace: Path, tmp_path: Path) -> None:
    done = runner_ctl_latency("report", "--from-jsonl", str(calm_trace), "--chart", str(tmp_path / "c.jpg"))
    assert_one_line_error(done, 2, ".png or .svg")


# ---- bad input ----------------------------------------------------------------------------------


def test_unparseable_since(calm_trace: Path) -> None:
    done = runner_ctl_latency("report", "--from-jsonl", str(calm_trace), "--since", "last tuesday")
    assert_one_line_error(done, 2, "--since 'last tuesday' is not a time", "7d")


def test_a_jsonl_line_with_a_missing_field(tmp_path: Path) -> None:
    broken = trace_line(0, 1, 2)
    del broken["runner_name"]
    trace = write_trace(tmp_path / "t.jsonl", [trace_line(0, 1, 2), broken])
    done = runner_ctl_latency("report", "--from-jsonl", str(trace))
    assert_one_line_error(done, 2, f"{trace}:2: missing field 'runner_name'")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "give exactly one source"),
        (["--github", "a/b", "--gitlab", "1"], "give exactly one source"),
        (["--github", "a/b", "--format", "yaml"], "--format 'yaml'"),
        (["--github", "a/b", "--max-slots", "0"], "--max-slots"),
        (["--github", "a/b", "--slots", "0"], "--slots"),
        (["--github", "a/b", "--target-p95", "0"], "--target-p95"),
        (["--github", "a/b"], "set the environment variable GITHUB_TOKEN"),
        (["--gitlab", "1"], "set the environment variable GITLAB_TOKEN"),
        (["--github", "a/b", "--token-env", "CI_READ_TOKEN"], "set the environment variable CI_READ_TOKEN"),
        (["--github", "not-a-repo"], "is not OWNER/REPO"),
    ],
)
def test_bad_flags_get_one_line(args: list[str], fragment: str) -> None:
    env = {"GITHUB_TOKEN": "x"} if "is not OWNER/REPO" in fragment else None
    done = runner_ctl_latency("report", *args, env=env)
    assert_one_line_error(done, 2, fragment)


# ---- against the API stand-ins --------------------------------------------------------------------


def test_github_report_twice_the_second_nearly_free(github: GitHubStandIn, tmp_path: Path) -> None:
    for i in range(120):
        github.add_run(DAY0 + i * 600, [JobSpec("build"), JobSpec("test", created=70, started=90, completed=300)])
    code, first, stderr = report_cli(*gh_args(github), env=gh_env(github, tmp_path))
    assert code == 0, stderr
    assert first["source"] == "github:acme/app" and first["jobs"] == 240
    assert first["api"] == {"calls": 2 + 120, "cache_hits": 0, "not_modified": 0}
    code, second, stderr = report_cli(*gh_args(github), env=gh_env(github, tmp_path))
    assert code == 0, stderr
    assert second["api"] == {"calls": 0, "cache_hits": 120, "not_modified": 2}
    assert second["overall"] == first["overall"] and second["groups"] == first["groups"]
    assert (tmp_path / "cache" / "latency" / "github").is_dir()  # under RUNNER_CTL_CACHE_DIR


def test_github_export_then_offline_replay_gives_the_same_report(github: GitHubStandIn, tmp_path: Path) -> None:
    github.add_run(DAY0 + 600, [JobSpec("build"), JobSpec("build", created=1000, started=5, completed=65, attempt=2)])
    for i in range(30):
        github.add_run(DAY0 + 3600 + i * 60, [JobSpec("test", started=20 + i, completed=400)])
    export = tmp_path / "trace.jsonl"
    code, online, stderr = report_cli(*gh_args(github, "--export-jsonl", str(export)), env=gh_env(github, tmp_path))
    assert code == 0, stderr and "wrote 32 jobs" in stderr
    code, offline, stderr = report_cli("--from-jsonl", str(export), "--since", "2024-05-01", "--until", "2024-05-02")
    assert code == 0, stderr
    for key in ("jobs", "overall", "groups", "by_hour_utc", "excluded"):
        assert offline[key] == online[key], key
    assert online["excluded"]["carried_forward"] == 1


def test_github_rate_limit_with_retry_after_through_the_cli(github: GitHubStandIn, tmp_path: Path) -> None:
    github.add_run(DAY0 + 600, [JobSpec("build")])
    github.too_many(retry_after=1)
    github.secondary_limit(retry_after=1)
    code, document, stderr = report_cli(*gh_args(github), env=gh_env(github, tmp_path))
    assert code == 0, stderr
    assert document["jobs"] == 1 and github.statuses[429] == 1 and github.statuses[403] == 1


def test_github_bad_token(github: GitHubStandIn, tmp_path: Path) -> None:
    secret = "ghp_this_is_not_the_right_one_0000"  # noqa: S105 - a wrong token, on purpose
    done = runner_ctl_latency("report", *gh_args(github), env=gh_env(github, tmp_path, GITHUB_TOKEN=secret))
    message = assert_one_line_error(done, 2, "rejected the token in GITHUB_TOKEN", "HTTP 401")
    assert secret not in message + done.stdout


def test_github_token_from_another_variable(github: GitHubStandIn, tmp_path: Path) -> None:
    env = {"READ_ACTIONS": github.token, "RUNNER_CTL_CACHE_DIR": str(tmp_path)}
    code, document, stderr = report_cli(*gh_args(github, "--token-env", "READ_ACTIONS"), env=env)
    assert code == 0, stderr
    assert document["api"]["calls"] == 1  # one empty list page


def test_github_repository_that_does_not_exist(github: GitHubStandIn, tmp_path: Path) -> None:
    args = gh_args(github)
    args[1] = "acme/missing"
    done = runner_ctl_latency("report", *args, env=gh_env(github, tmp_path))
    assert_one_line_error(done, 2, "repository acme/missing not found")


def test_an_unreachable_api(tmp_path: Path) -> None:
    from tests.lockfixtures import free_port

    done = runner_ctl_latency(
        "report", "--github", "acme/app", "--api-url", f"http://127.0.0.1:{free_port()}", "--since", "1d",
        env={"GITHUB_TOKEN": "x", "RUNNER_CTL_CACHE_DIR": str(tmp_path)}, timeout=300,
    )  # fmt: skip
    assert_one_line_error(done, 1, "kept failing", "after 5 attempts")


def test_gitlab_report(gitlab: GitLabStandIn, tmp_path: Path) -> None:
    for i in range(40):
        gitlab.add_pipeline(DAY0 + i * 900, [GitLabJob("build", queued=2.0 + i), GitLabJob("test", pending_after=70)])
    env = {"GITLAB_TOKEN": gitlab.token, "RUNNER_CTL_CACHE_DIR": str(tmp_path)}
    args = [
        "--gitlab",
        "acme/app",
        "--api-url",
        f"{gitlab.url}/api/v4",
        "--since",
        "2024-05-01",
        "--until",
        "2024-05-02",
    ]
    code, document, stderr = report_cli(*args, env=env)
    assert code == 0, stderr
    assert document["source"] == "gitlab:acme/app" and document["jobs"] == 80
    assert document["overall"]["queue_seconds"]["max"] == 41.0
    assert document["groups"][0]["labels"] == ["runner-ctl"]
    assert report_cli(*args, env=env)[1]["api"]["calls"] == 0


# ---- the CI examples ------------------------------------------------------------------------------

GITHUB_EXAMPLE = PROJECT_ROOT / "examples" / "github" / "latency.yml"
GITLAB_EXAMPLE = PROJECT_ROOT / "examples" / "gitlab" / "latency.gitlab-ci.yml"


def report_command_options() -> set[str]:
    import typer

    from runner_ctl.latency.command import latency_app

    group = typer.main.get_command(latency_app)
    command = group.commands["report"]  # type: ignore[attr-defined]
    return {opt for param in command.params for opt in param.opts}


def used_options(script: str) -> set[str]:
    import re

    command = script[script.index("latency report") :]
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", command))


def test_github_example_is_a_scheduled_report_with_summary_chart_and_cache() -> None:
    workflow = yaml.safe_load(GITHUB_EXAMPLE.read_text())
    assert "schedule" in workflow[True] and "workflow_dispatch" in workflow[True]  # PyYAML reads `on` as True
    assert workflow["permissions"] == {"actions": "read", "contents": "read"}
    (job,) = workflow["jobs"].values()
    steps = job["steps"]
    restore = next(step for step in steps if step.get("uses", "").startswith("actions/cache/restore@"))
    save = next(step for step in steps if step.get("uses", "").startswith("actions/cache/save@"))
    assert restore["with"]["path"] == save["with"]["path"] == "~/.cache/runner-ctl/latency"
    assert save["if"] == "always()"  # also saved when the report exits 10
    assert restore["with"]["restore-keys"] == "runner-ctl-latency-"
    upload = next(step for step in steps if step.get("uses", "").startswith("actions/upload-artifact@"))
    assert "latency.png" in upload["with"]["path"] and upload["if"] == "always()"
    report = next(step for step in steps if "latency report" in step.get("run", ""))
    assert report["env"]["GITHUB_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"  # noqa: S105 - a reference
    options = used_options(report["run"])
    assert {"--github", "--format", "--chart", "--since"} <= options
    assert options <= report_command_options()
    assert "--format markdown" in report["run"]  # appended to $GITHUB_STEP_SUMMARY by runner-ctl itself


def test_gitlab_example_is_a_scheduled_report_with_artifacts_and_cache() -> None:
    pipeline = yaml.safe_load(GITLAB_EXAMPLE.read_text())
    job = pipeline["latency-report"]
    assert job["rules"][0]["if"] == '$CI_PIPELINE_SOURCE == "schedule"'
    assert "runner-ctl-latency" in job["cache"]["key"] and job["cache"]["when"] == "always"
    assert job["allow_failure"] == {"exit_codes": [10]}
    assert any(path.endswith(".png") for path in job["artifacts"]["paths"])
    script = "\n".join(job["script"])
    options = used_options(script)
    assert {"--gitlab", "--api-url", "--chart", "--cache-dir"} <= options
    assert options <= report_command_options()
    assert "GITLAB_TOKEN" not in script  # read from the environment by runner-ctl, never in argv
