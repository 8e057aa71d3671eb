"""The JSON contracts (runner_ctl.contracts) hold the commands' real output, and document every field.

Each command's output is produced the way a user gets it: ``runner-ctl deploy --json`` against a
real lock service on loopback and real git repositories, ``latency report --format json`` over
JSONL traces and the GitHub and GitLab API stand-ins, ``runners prune --json`` against the
stand-ins, ``rehearse --json`` refusing bad group data. A whole rehearsal takes minutes, so its
report is also built as rehearse.py builds it: ``RehearsalReport`` filled with the DeployRun of a
real pyinfra run (on ``@local``) and the CheckRuns of real pytest check suites.

Validation is strict (an int where a float belongs is fine, a bool or a string is not) and the
models forbid extra keys, so a key the model does not document fails, as does a missing one.
"""

import json
import shutil
import signal
import sys
import textwrap
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from runner_ctl.contracts import (
    CONTRACTS,
    DeployJson,
    LatencyReportJson,
    RehearseJson,
    RunnersPruneJson,
)
from runner_ctl.errors import StepError
from runner_ctl.forge.httpcache import ApiCounters
from runner_ctl.hostchecks import combine_checks, run_fleet_checks, run_host_checks
from runner_ctl.latency.model import Filters
from runner_ctl.latency.report import ReportOptions, build_report
from runner_ctl.latency.window import Window
from runner_ctl.pyinfra_run import run_deploy
from runner_ctl.rehearse import RehearsalReport
from runner_ctl.serial_deploy.flow import DeployResult
from tests.conftest import PROJECT_ROOT, runner_ctl
from tests.deployfixtures import Deploy, deploys
from tests.latencyfixtures import DAY0, job, report_cli, trace_line, write_trace
from tests.lockfixtures import History, LockService, history, lock_service
from tests.standins.github_api import GitHubStandIn, JobSpec
from tests.standins.gitlab_api import GitLabJob, GitLabStandIn
from tests.test_runners import Cli, gitlab_world

__all__ = ["history", "lock_service"]  # fixtures, imported to be found


def valid(model: type[BaseModel], document: Any) -> Any:
    """``document`` validated strictly against ``model`` (raises on any mismatch)."""
    return model.model_validate(document, strict=True)


def last_line(stdout: str) -> Any:
    lines = stdout.strip().splitlines()
    assert lines, "nothing on stdout"
    return json.loads(lines[-1])


# ---- the models themselves ------------------------------------------------------------------------


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for argument in typing.get_args(annotation):
        yield from _models_in(argument)


def _all_models(root: type[BaseModel]) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    pending = [root]
    while pending:
        model = pending.pop()
        if model in found:
            continue
        found.append(model)
        for field in model.model_fields.values():
            pending.extend(_models_in(field.annotation))
    return found


def test_the_contracts_are_listed_in_the_pages_order() -> None:
    assert [contract.anchor for contract in CONTRACTS] == [
        "rehearse-json",
        "deploy-json",
        "latency-report-json",
        "runners-prune-json",
    ]
    assert [contract.model for contract in CONTRACTS] == [RehearseJson, DeployJson, LatencyReportJson, RunnersPruneJson]
    for contract in CONTRACTS:
        assert contract.command.startswith("runner-ctl ") and "json" in contract.command
        assert len(contract.summary.split()) > 20, contract.anchor


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda contract: contract.anchor)
def test_every_field_of_every_model_is_documented(contract: Any) -> None:
    models = _all_models(contract.model)
    assert len(models) >= 2 or contract.model is DeployJson
    for model in models:
        assert model.model_config.get("extra") == "forbid", model.__name__
        assert (model.__dict__.get("__doc__") or "").strip(), f"{model.__name__} has no docstring"
        for name, field in model.model_fields.items():
            assert field.description and field.description.strip(), f"{model.__name__}.{name} has no description"
            assert field.description.rstrip().endswith((".", ")")), f"{model.__name__}.{name}: {field.description!r}"


def test_the_json_schema_of_every_contract_carries_the_descriptions() -> None:
    # What a generator reads: every property of every object in the schema is described.
    for contract in CONTRACTS:
        schema = contract.model.model_json_schema()
        objects = [schema, *schema.get("$defs", {}).values()]
        for obj in objects:
            assert obj.get("additionalProperties") is False, obj.get("title")
            for name, prop in obj["properties"].items():
                assert prop.get("description"), f"{obj['title']}.{name}"


def _prune_document() -> dict[str, Any]:
    return {"deleted": ["rc-ci-1-1"], "kept": [{"name": "laptop", "reason": "online"}]}


def _latency_document() -> dict[str, Any]:
    jobs = [job(i * 600.0, i * 600.0 + 5, i * 600.0 + 65, run_id=i) for i in range(10)]
    report = build_report(
        source="jsonl:trace.jsonl",
        window=Window(DAY0, DAY0 + 86_400),
        jobs=jobs,
        filters=Filters(),
        counters=ApiCounters(),
        options=ReportOptions(),
    )
    return json.loads(json.dumps(report.data))  # type: ignore[no-any-return]


def _deploy_document() -> dict[str, Any]:
    return DeployResult(env="production", commit="0" * 40, status="timeout", deploy_id=3).to_json()


# (model, a real document, the path of a nested object in it)
SAMPLES = [
    pytest.param(RehearseJson, lambda: RehearsalReport().to_json(), ("first_run",), id="rehearse"),
    pytest.param(DeployJson, _deploy_document, (), id="deploy"),
    pytest.param(LatencyReportJson, _latency_document, ("recommendation",), id="latency"),
    pytest.param(RunnersPruneJson, _prune_document, ("kept", 0), id="prune"),
]


def _at(document: Any, path: tuple[str | int, ...]) -> Any:
    for step in path:
        document = document[step]
    return document


@pytest.mark.parametrize(("model", "make", "nested"), SAMPLES)
def test_an_unknown_key_is_refused_at_any_depth(
    model: type[BaseModel], make: Any, nested: tuple[str | int, ...]
) -> None:
    valid(model, make())
    document = make()
    document["surprise"] = 1
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        valid(model, document)
    if nested:
        document = make()
        _at(document, nested)["surprise"] = 1
        with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
            valid(model, document)


@pytest.mark.parametrize(("model", "make", "nested"), SAMPLES)
def test_a_missing_key_or_a_wrong_type_is_refused(
    model: type[BaseModel], make: Any, nested: tuple[str | int, ...]
) -> None:
    required = [name for name, field in model.model_fields.items() if field.is_required()]
    assert required
    for name in required:
        document = make()
        del document[name]
        with pytest.raises(ValidationError, match="Field required"):
            valid(model, document)
    document = make()
    document[required[0]] = {"not": "this"}
    with pytest.raises(ValidationError):
        valid(model, document)


def test_a_bool_is_not_a_count() -> None:
    document = RehearsalReport().to_json()
    document["checks"]["passed"] = True
    with pytest.raises(ValidationError):
        valid(RehearseJson, document)


# ---- rehearse --json ------------------------------------------------------------------------------


def test_rehearse_report_of_nothing_yet() -> None:
    report = valid(RehearseJson, RehearsalReport().to_json())
    assert report.ok is False and report.host is None and report.failed_step is None


def test_rehearse_refusing_bad_group_data_prints_the_contract(tmp_path: Path) -> None:
    project = tmp_path / "project"
    for part in ("deploys", "inventories", "templates"):
        shutil.copytree(PROJECT_ROOT / part, project / part, ignore=shutil.ignore_patterns("__pycache__"))
    with (project / "inventories" / "group_data" / "all.py").open("a") as handle:
        handle.write("\nsshd_port = 70000\n")
    done = runner_ctl(
        "rehearse",
        "--deploy",
        str(project / "deploys" / "runner_host.py"),
        "--json",
        env={"RUNNER_CTL_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert done.returncode == 2, done.stderr
    report = valid(RehearseJson, last_line(done.stdout))
    assert (report.ok, report.failed_step, report.layers, report.hosts) == (False, "validate", [], [])
    assert report.error and "sshd_port" in report.error


DEPLOY = textwrap.dedent(
    """
    import os

    from pyinfra.operations import files

    files.directory(name="the contract test's directory", path=os.environ["RC_CONTRACT_DIR"], mode="750")
    files.line(name="a line in it", path=os.environ["RC_CONTRACT_DIR"] + "/f", line="contract")
    """
)

CHECK_SUITE = textwrap.dedent(
    """
    import os

    import pytest


    def test_the_host_is_named() -> None:
        assert os.environ["RUNNER_CTL_CHECK_HOST"]


    def test_the_fleet_names_the_host() -> None:
        assert os.environ["RUNNER_CTL_CHECK_HOST"] in os.environ["RUNNER_CTL_CHECK_FLEET"].split(",")


    def test_not_on_the_broken_host() -> None:
        assert os.environ["RUNNER_CTL_CHECK_HOST"] != "rh9"


    @pytest.mark.skip(reason="a skipped check is not counted")
    def test_skipped() -> None:
        pass
    """
)

FLEET_SUITE = textwrap.dedent(
    """
    import os


    def test_two_hosts() -> None:
        assert len(os.environ["RUNNER_CTL_CHECK_FLEET"].split(",")) == 2
    """
)


@pytest.fixture
def rehearsal_project(tmp_path: Path) -> Path:
    """A project with a pyinfra deploy for ``@local`` and a host and a fleet check suite."""
    root = tmp_path / "project"
    (root / "deploys").mkdir(parents=True)
    (root / "deploys" / "contract.py").write_text(DEPLOY)
    (root / "inventory.py").write_text('local_hosts = ["@local"]\n')
    for suite, text in (("host", CHECK_SUITE), ("fleet", FLEET_SUITE)):
        (root / "tests" / suite).mkdir(parents=True)
        (root / "tests" / suite / f"test_{suite}.py").write_text(text)
    return root


def test_rehearse_report_as_rehearse_builds_it(rehearsal_project: Path, tmp_path: Path) -> None:
    root, logs = rehearsal_project, tmp_path / "logs"

    def deploy_once(label: str) -> Any:
        return run_deploy(
            project_root=root,
            inventory=root / "inventory.py",
            deploy=root / "deploys" / "contract.py",
            env={"RC_CONTRACT_DIR": str(tmp_path / "deployed")},
            log_path=logs / f"{label.replace(' ', '-')}.log",
            label=label,
        )

    names = ["rh1", "rh2"]
    report = RehearsalReport(layers=["base", "bazel"], hosts=names, host=names[0], logs=str(logs))
    report.first_run = deploy_once("first deploy")
    runs = [run_host_checks(project_root=root, host_name=name, log_dir=logs / name, fleet=names) for name in names]
    report.checks = combine_checks(names, runs)
    report.fleet_checks = run_fleet_checks(project_root=root, fleet=names, log_dir=logs / "fleet")
    report.second_run = deploy_once("second deploy")
    report.ok, report.kept = True, True
    report.standins = ["GitHub API (http://10.0.0.1:8080) and actions-runner 2.321.0 release: stand-ins"]
    passed = valid(RehearseJson, json.loads(json.dumps(report.to_json())))
    assert passed.first_run.changed == 2 and passed.second_run.changed == 0
    assert passed.first_run.operations == passed.second_run.operations == 2
    assert (passed.checks.passed, passed.checks.failed) == (6, 0)
    assert (passed.fleet_checks.passed, passed.fleet_checks.failed) == (1, 0)

    # A fleet whose second host fails a host check: the report names the step, as rehearse does.
    broken = ["rh1", "rh9"]
    runs = [run_host_checks(project_root=root, host_name=name, log_dir=logs / name, fleet=broken) for name in broken]
    failing = RehearsalReport(layers=["base"], hosts=broken, host="rh1", logs=str(logs))
    failing.first_run = deploy_once("first deploy again")
    failing.checks = combine_checks(broken, runs)
    error = StepError(f"{failing.checks.failed} host check(s) failed: {', '.join(failing.checks.failures)}")
    failing.failed_step, failing.error = "host checks", error.message
    failed = valid(RehearseJson, json.loads(json.dumps(failing.to_json())))
    assert (failed.checks.passed, failed.checks.failed) == (5, 1)
    assert failed.second_run.operations == 0 and failed.fleet_checks.passed == 0
    assert failed.error and "rh9: test_not_on_the_broken_host" in failed.error


# ---- deploy --json --------------------------------------------------------------------------------------

GATE = (
    "import os, sys, time\n"
    "deadline = time.time() + 120\n"
    "while not os.path.exists(sys.argv[1]) and time.time() < deadline:\n"
    "    time.sleep(0.02)\n"
)


def _deploy(
    service: LockService, history: History, commit: str, command: list[str], *extra: str
) -> tuple[int, Any, str]:
    run = Deploy(service.env(), history.clone, history.commits.get(commit, commit), command, *extra)
    try:
        return run.result()
    finally:
        run.kill()


def test_deploy_json_of_every_status(lock_service: LockService, history: History, tmp_path: Path) -> None:
    true, c = ["true"], history.commits
    seen: dict[str, DeployJson] = {}

    def check(expected_status: str, expected_code: int, outcome: tuple[int, Any, str]) -> DeployJson:
        code, document, stderr = outcome
        assert code == expected_code, stderr
        result: DeployJson = valid(DeployJson, document)
        assert result.status == expected_status and result.exit_code == expected_code, stderr
        seen[expected_status] = result
        return result

    first = check("succeeded", 0, _deploy(lock_service, history, "c1", true))
    assert first.previous_commit is None and first.fencing_token is not None and first.commit == c["c1"]
    assert check("succeeded", 0, _deploy(lock_service, history, "c3", true)).previous_commit == c["c1"]
    assert check("skipped_stale", 0, _deploy(lock_service, history, "c2", true)).run_seconds == 0
    check("refused", 3, _deploy(lock_service, history, "s1", true))
    check("failed", 7, _deploy(lock_service, history, "c4", [sys.executable, "-c", "raise SystemExit(7)"]))
    check("failed", 127, _deploy(lock_service, history, "c4", [str(tmp_path / "no-such-command")]))

    gate = tmp_path / "gate"
    with deploys() as started:
        holder = Deploy(lock_service.env(), history.clone, c["c4"], [sys.executable, "-c", GATE, str(gate)])
        started.append(holder)
        holder.wait_line("deploying")
        timed_out = check("timeout", 4, _deploy(lock_service, history, "c4", true, "--wait-timeout", "0.5"))
        assert timed_out.fencing_token is None and timed_out.deploy_id is not None

        leaver = Deploy(lock_service.env(), history.clone, c["c4"], true)
        started.append(leaver)
        leaver.wait_line("position")
        leaver.signal(signal.SIGTERM)
        check("withdrawn", 130, leaver.result())

        older = Deploy(lock_service.env(), history.clone, c["c3"], true)
        started.append(older)
        older.wait_line("position")
        newer = Deploy(lock_service.env(), history.clone, c["c4"], true)
        started.append(newer)
        newer.wait_line("position")
        holder.signal(signal.SIGTERM)
        cancelled = check("cancelled", 130, holder.result())
        assert cancelled.run_seconds > 0 and cancelled.fencing_token is not None
        check("superseded", 0, older.result())
        check("succeeded", 0, newer.result())
    assert set(seen) == {
        "succeeded",
        "skipped_stale",
        "refused",
        "failed",
        "timeout",
        "withdrawn",
        "cancelled",
        "superseded",
    }


# ---- latency report --format json -------------------------------------------------------------------------


@pytest.fixture
def mixed_trace(tmp_path: Path) -> Path:
    """Self-hosted jobs of two runner kinds (linux, gpu), hosted jobs, a skipped one and a re-run."""
    lines = [trace_line(i * 300, 10 + i, 600, runner_name=f"ci-{i % 2}") for i in range(30)]
    lines += [trace_line(i * 900 + 50, 40, 900, labels=["self-hosted", "gpu"], runner_name="gpu-1") for i in range(8)]
    lines += [trace_line(i * 1200 + 7, 3, 120, labels=["ubuntu-latest"], runner_name=f"GitHub Actions {i}")
              for i in range(5)]  # fmt: skip
    lines.append(
        trace_line(60, 0, 0, name="deploy", started_at=None, completed_at=None, runner_name=None, conclusion="skipped")
    )
    return write_trace(tmp_path / "mixed.jsonl", lines)


def _latency(*args: str, env: dict[str, str] | None = None, code: int = 0) -> LatencyReportJson:
    returned, document, stderr = report_cli(*args, env=env)
    assert returned == code, stderr
    report: LatencyReportJson = valid(LatencyReportJson, document)
    return report


def test_latency_report_of_a_mixed_trace(mixed_trace: Path) -> None:
    report = _latency("--from-jsonl", str(mixed_trace), "--max-slots", "4")
    assert report.jobs == 43 and report.note is None and report.tfvars is None
    assert [group.hosted for group in report.groups] == [False, False, True]
    assert report.groups[-1].slot_utilisation is None
    assert len(report.by_hour_utc) == 24
    predicted = report.recommendation.predicted_queue_p95_seconds
    assert list(predicted) == ["1", "2", "3", "4"] and predicted["1"] is None  # two kinds need two slots
    assert report.recommendation.current_slots_basis == "inferred"
    assert report.excluded.skipped == 1


def test_latency_report_with_tfvars_and_scale_out(tmp_path: Path) -> None:
    busy = write_trace(tmp_path / "busy.jsonl", [trace_line(i * 300, i * 300, 600) for i in range(100)])
    tfvars = tmp_path / "runner-count.auto.tfvars.json"
    tfvars.write_text(json.dumps({"runner_count": 1}))
    report = _latency(
        "--from-jsonl", str(busy), "--fail-on-scale-out", "--write-tfvars", str(tfvars), "--slots-per-host", "1",
        code=10,
    )  # fmt: skip
    assert report.recommendation.scale_out is True
    assert report.tfvars is not None and (report.tfvars.previous, report.tfvars.runner_count) == (1, 2)


def test_latency_report_of_an_empty_window(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "t.jsonl", [trace_line(0, 5, 60)])
    tfvars = tmp_path / "empty.auto.tfvars.json"
    report = _latency(
        "--from-jsonl", str(trace), "--since", "2023-01-01", "--until", "2023-01-02",
        "--write-tfvars", str(tfvars), "--slots-per-host", "2",
    )  # fmt: skip
    assert report.jobs == 0 and report.note == "no jobs in window" and report.groups == []
    assert report.overall.queue_seconds.p95 is None and report.recommendation.predicted_queue_p95_seconds == {}
    assert report.recommendation.current_slots == 0 and report.recommendation.current_slots_basis == "inferred"
    assert report.tfvars is not None and report.tfvars.runner_count is None and report.tfvars.changed is False


def test_latency_report_of_runners_made_per_job(tmp_path: Path) -> None:
    lines = [trace_line(300 * i, 20, 480, runner_name=f"arc-runner-{i:05x}", run_id=i) for i in range(40)]
    report = _latency("--from-jsonl", str(write_trace(tmp_path / "ephemeral.jsonl", lines)))
    recommendation = report.recommendation
    assert (recommendation.current_slots, recommendation.current_slots_basis) == (None, "unknown")
    assert recommendation.one_runner_per_job is True and report.overall.slot_utilisation is None


def test_latency_report_from_the_github_stand_in(tmp_path: Path) -> None:
    github = GitHubStandIn()
    old_jobs = json.loads((PROJECT_ROOT / "tests" / "fixtures" / "latency" / "github-jobs-2022.json").read_text())
    with github.running():
        for i in range(1, 4):
            github.add_run(DAY0 + 600 * i, [JobSpec("build"), JobSpec("test", started=8, attempt=1)])
        github.add_run(DAY0 + 2400, [JobSpec("build"), JobSpec("build", created=1000, started=5, attempt=2)])
        github.add_run(DAY0 + 2700, [JobSpec("lint", labels=["ubuntu-latest"], runner=None, hosted=True)])
        old = github.add_run(DAY0 + 2800, [JobSpec("placeholder")])
        github.jobs[old] = [{**raw, "run_id": old} for raw in old_jobs["jobs"]]
        deleted = github.add_run(DAY0 + 3000, [JobSpec("build")], name="Nightly")
        del github.jobs[deleted]
        env = {"GITHUB_TOKEN": github.token, "RUNNER_CTL_CACHE_DIR": str(tmp_path / "cache")}
        args = ["--github", github.repo, "--api-url", github.url, "--since", "2024-05-01", "--until", "2024-05-02"]
        report = _latency(*args, env=env)
        again = _latency(*args, env=env)
    assert report.source == f"github:{github.repo}" and report.api.calls > 0 and again.api.cache_hits > 0
    assert report.missing_runs.runs == 1 and report.missing_runs.names[0].startswith(f"run {deleted} (Nightly")
    assert report.excluded.no_created_at > 0 and report.excluded.carried_forward == 1


def test_latency_report_from_the_gitlab_stand_in(tmp_path: Path) -> None:
    gitlab = GitLabStandIn()
    with gitlab.running():
        for i in range(12):
            gitlab.add_pipeline(
                DAY0 + i * 900, [GitLabJob("build", queued=2.0 + i), GitLabJob("test", pending_after=70)]
            )
        gitlab.add_pipeline(DAY0 + 20_000, [GitLabJob("docs", tags=["saas-linux-small-amd64"], shared=True)])
        gone = gitlab.add_pipeline(DAY0 + 30_000, [GitLabJob("build")])
        del gitlab.jobs[gone]
        env = {"GITLAB_TOKEN": gitlab.token, "RUNNER_CTL_CACHE_DIR": str(tmp_path)}
        args = ["--gitlab", "acme/app", "--api-url", f"{gitlab.url}/api/v4", "--since", "2024-05-01",
                "--until", "2024-05-02", "--labels", "runner-ctl", "--current-slots", "2"]  # fmt: skip
        report = _latency(*args, env=env)
    assert report.source == "gitlab:acme/app" and report.jobs == 24
    assert report.excluded.outside_filters == 1 and report.recommendation.current_slots_basis == "given"
    assert report.missing_runs.names[0].startswith(f"pipeline {gone} (")


# ---- runners prune --json -------------------------------------------------------------------------------


def test_runners_prune_json_against_the_gitlab_stand_in(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "state")
    for world in gitlab_world():
        for extra in (("--dry-run",), ("--offline-for", "0"), ()):
            done = cli("prune", *world.args(*extra, "--json"), env=world.env)
            assert done.returncode == 0, done.stderr
            pruned: RunnersPruneJson = valid(RunnersPruneJson, last_line(done.stdout))
            assert pruned.kept, extra
        assert pruned.deleted == [] and {runner.name for runner in pruned.kept} == {"rc-ci-1-2", "rc-ci-1-3", "laptop"}


def test_runners_prune_json_against_the_github_stand_in(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "state")
    api = GitHubStandIn()
    with api.running():
        for name, status in (("rc-ci-1-1", "offline"), ("rc-ci-1-2", "online"), ("laptop", "offline")):
            api.add_runner("/repos/acme/app", name, labels=("bazel",), status=status)
        api.add_runner("/repos/acme/app", "rc-odd\nname", status="offline")
        args = ["--github", "acme/app", "--api-url", api.url, "--json"]
        first = cli("prune", *args, env={"GITHUB_TOKEN": api.token})
        assert first.returncode == 0, first.stderr
        kept_all = valid(RunnersPruneJson, last_line(first.stdout))
        assert kept_all.deleted == [] and len(kept_all.kept) == 4  # offline since just now
        second = cli("prune", *args, "--offline-for", "0", env={"GITHUB_TOKEN": api.token})
        pruned = valid(RunnersPruneJson, last_line(second.stdout))
        assert pruned.deleted == ["rc-ci-1-1", "rc-odd\nname"]
        empty = valid(RunnersPruneJson, last_line(cli("prune", *args, "--prefix", "none-", env={
            "GITHUB_TOKEN": api.token}).stdout))  # fmt: skip
        assert empty.deleted == [] and [runner.name for runner in empty.kept] == ["rc-ci-1-2", "laptop"]
