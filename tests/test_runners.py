"""``runner-ctl runners list`` and ``runners prune`` end to end, in a child process, against the loopback stand-ins.

The commands run as a user runs them (a child process, tokens in the environment, state
under a temporary RUNNER_CTL_STATE_DIR); the stand-ins of GitHub's and GitLab's REST APIs
record every call, so a test sees exactly what was deleted.
"""

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PROJECT_ROOT
from tests.latencyfixtures import assert_one_line_error
from tests.standins.forge_api import Reply
from tests.standins.github_api import GitHubStandIn
from tests.standins.gitlab_api import GitLabStandIn

HOUR = 3600.0
# The real entry point (as the console script runs it), in a child process.
RUNNERS = "import sys; from runner_ctl.cli import main; sys.argv[0] = 'runner-ctl'; sys.argv[1:1] = ['runners']; main()"
_DROPPED = ("GITHUB_TOKEN", "GITLAB_TOKEN", "RUNNER_CTL_STATE_DIR", "XDG_STATE_HOME")


@dataclass
class Cli:
    """``runner-ctl runners`` with a state directory of its own."""

    state: Path

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, cwd: Path = PROJECT_ROOT
    ) -> subprocess.CompletedProcess[str]:
        base = {key: value for key, value in os.environ.items() if key not in _DROPPED}
        return subprocess.run(
            [sys.executable, "-c", RUNNERS, *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**base, "RUNNER_CTL_STATE_DIR": str(self.state), **(env or {})},
        )

    @property
    def audit(self) -> list[dict[str, Any]]:
        path = self.state / "runners" / "audit.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    @property
    def offline_since(self) -> Path:
        return self.state / "runners" / "offline-since.json"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "state")


def last_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, (done.stdout, done.stderr)
    return json.loads(done.stdout.splitlines()[-1])


def by_name(document: dict[str, Any]) -> dict[str, str]:
    return {entry["name"]: entry["reason"] for entry in document["kept"]}


# ---- bad flags: one line, exit 2, before any request ---------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("list",), "give exactly one of --github OWNER/REPO, --github-org ORG or --gitlab PROJECT_OR_GROUP"),
        (("list", "--github", "a/b", "--gitlab", "a/b"), "(got --github and --gitlab)"),
        (("prune", "--github", "a/b", "--github-org", "a"), "(got --github and --github-org)"),
        (("list", "--github", "acme"), "--github 'acme' is not OWNER/REPO"),
        (("list", "--github-org", "acme/app"), "--github-org 'acme/app' is not an organization name"),
        (("list", "--gitlab", ""), "--gitlab is empty"),
        (("list", "--gitlab", "acme//app"), "is not a project or group"),
        (("list", "--github", "a/b", "--api-url", "ftp://example.com"), "--api-url 'ftp://example.com' is not a valid"),
        (("list", "--github", "a/b", "--api-url", "https://u:secret@example.com"), "user name, password or query"),
        (("prune", "--github", "a/b", "--offline-for", "1w"), "--offline-for '1w' is not a duration"),
        (("prune", "--github", "a/b", "--offline-for", "soon"), "30s, 15m, 1h, 2d"),
        (("prune", "--github", "a/b", "--offline-for", "99999d"), "at most 3650d"),
        (("prune", "--github", "a/b", "--prefix", ""), "--prefix is empty"),
        (("prune", "--github", "a/b", "--prefix", "rc-\n"), "--prefix 'rc-\\n' holds control characters"),
    ],
)
def test_bad_flags_are_one_line_errors(cli: Cli, args: tuple[str, ...], fragment: str) -> None:
    done = cli(*args, env={"GITHUB_TOKEN": "ghp_x", "GITLAB_TOKEN": "glpat-x"})
    line = assert_one_line_error(done, 2, fragment)
    assert "secret" not in line
    assert not cli.state.exists()  # nothing written


@pytest.mark.parametrize(
    ("args", "variable"),
    [(("list", "--github", "acme/app"), "GITHUB_TOKEN"), (("prune", "--gitlab", "acme/app"), "GITLAB_TOKEN")],
)
@pytest.mark.parametrize("value", [None, "", "  "])
def test_a_missing_or_empty_token_names_its_variable(
    cli: Cli, args: tuple[str, ...], variable: str, value: str | None
) -> None:
    env = {} if value is None else {variable: value}
    assert_one_line_error(cli(*args, env=env), 2, f"set the environment variable {variable}")


def test_a_token_with_a_newline_is_refused_without_showing_it(cli: Cli) -> None:
    line = assert_one_line_error(
        cli("list", "--github", "acme/app", env={"GITHUB_TOKEN": "ghp_tok\nen"}), 2, "GITHUB_TOKEN contains whitespace"
    )
    assert "ghp_tok" not in line


def test_help_says_where_the_audit_log_is(cli: Cli) -> None:
    done = cli("prune", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.replace("│", " ").split())
    assert "runners/audit.jsonl" in text and "RUNNER_CTL_STATE_DIR" in text
    assert '{"deleted": [names], "kept": [{"name": ..., "reason": ...}]}' in text
    assert "[default: 1h]" in text


# ---- GitLab ----------------------------------------------------------------------------------------------


@dataclass
class GitLabWorld:
    api: GitLabStandIn
    ids: dict[str, int]

    @property
    def url(self) -> str:
        return f"{self.api.url}/api/v4"

    @property
    def env(self) -> dict[str, str]:
        return {"GITLAB_TOKEN": self.api.token}

    def args(self, *more: str) -> list[str]:
        return ["--gitlab", "acme/app", "--api-url", self.url, *more]

    def deleted_ids(self) -> set[int]:
        return {int(path.rsplit("/", 1)[1]) for _, path, _ in self.api.calls_to("DELETE", "/runners/")}


def gitlab_world(scopes: frozenset[str] | None = None) -> Iterator[GitLabWorld]:
    api = GitLabStandIn() if scopes is None else GitLabStandIn(scopes=scopes)
    now = time.time()
    with api.running():
        ids = {
            name: api.add_runner(name, project="acme/app", tags=tags, status=status, contacted_at=contact, busy=busy).id
            for name, tags, status, contact, busy in (
                ("rc-ci-1-1", ["bazel", "linux"], "offline", now - 2 * HOUR, False),  # pruned
                ("rc-ci-1-2", ["bazel"], "online", now, False),
                ("rc-ci-1-3", ["bazel"], "offline", now - 5 * HOUR, True),  # busy: GitLab still shows the job
                ("laptop", ["docker"], "offline", now - 50 * HOUR, False),  # someone else's
                ("rc-ci-2-1", [], "offline", now - 10 * 60, False),  # offline for 10 minutes only
                ("rc-ci-3-1", [], "stale", now - 30 * 86_400, False),  # stale counts as offline
            )
        }
        yield GitLabWorld(api, ids)


@pytest.fixture
def gitlab() -> Iterator[GitLabWorld]:
    yield from gitlab_world()


def test_gitlab_list_shows_runners_with_status_busy_state_and_tags(cli: Cli, gitlab: GitLabWorld) -> None:
    done = cli("list", *gitlab.args(), env=gitlab.env)
    assert done.returncode == 0, done.stderr
    rows = {line.split("│")[2].strip(): [cell.strip() for cell in line.split("│")[1:-1]]
            for line in done.stdout.splitlines() if line.startswith("│")}  # fmt: skip
    assert set(rows) == set(gitlab.ids)
    assert rows["rc-ci-1-1"][2:5] == ["offline", "idle", "bazel, linux"]
    assert rows["rc-ci-1-2"][2:4] == ["online", "idle"]
    assert rows["rc-ci-1-3"][2:4] == ["offline", "busy"]
    assert rows["rc-ci-3-1"][2] == "stale"
    assert "6 runners on GitLab acme/app" in done.stdout and "TAGS" in done.stdout
    assert gitlab.api.calls_to("DELETE") == []


def test_gitlab_list_json(cli: Cli, gitlab: GitLabWorld) -> None:
    document = last_json(cli("list", *gitlab.args("--json"), env=gitlab.env))
    assert (document["forge"], document["scope"], document["api_url"]) == ("gitlab", "acme/app", gitlab.url)
    runners = {runner["name"]: runner for runner in document["runners"]}
    assert runners["rc-ci-1-1"]["labels"] == ["bazel", "linux"]
    assert runners["rc-ci-1-1"]["id"] == gitlab.ids["rc-ci-1-1"]
    assert runners["rc-ci-1-2"]["online"] is True and runners["rc-ci-1-2"]["status"] == "online"
    assert runners["rc-ci-1-3"]["busy"] is True
    assert runners["rc-ci-1-1"]["contacted_at"].endswith("Z")


def test_gitlab_list_of_an_empty_project_says_so(cli: Cli) -> None:
    api = GitLabStandIn()
    with api.running():
        done = cli("list", "--gitlab", "acme/app", "--api-url", f"{api.url}/api/v4", env={"GITLAB_TOKEN": api.token})
    assert done.returncode == 0 and done.stdout.strip() == "no runners registered on GitLab acme/app"


def test_gitlab_prune_deletes_only_offline_idle_prefixed_runners_offline_long_enough(
    cli: Cli, gitlab: GitLabWorld
) -> None:
    done = cli("prune", *gitlab.args("--json"), env=gitlab.env)
    document = last_json(done)
    assert set(document) == {"deleted", "kept"}
    assert sorted(document["deleted"]) == ["rc-ci-1-1", "rc-ci-3-1"]
    assert gitlab.deleted_ids() == {gitlab.ids["rc-ci-1-1"], gitlab.ids["rc-ci-3-1"]}
    assert {runner.description for runner in gitlab.api.runners.values()} == {
        "rc-ci-1-2",
        "rc-ci-1-3",
        "laptop",
        "rc-ci-2-1",
    }
    kept = by_name(document)
    assert kept["rc-ci-1-2"] == "online"
    assert kept["rc-ci-1-3"] == "busy: running a job"
    assert kept["laptop"] == "name does not start with 'rc-': not registered by runner-ctl"
    assert kept["rc-ci-2-1"].startswith("offline for 10m") and "less than --offline-for 1h" in kept["rc-ci-2-1"]
    # What it did and why: one line a runner (on stderr with --json, stdout being the JSON).
    assert done.stdout.count("\n") == 1
    assert "deleted rc-ci-1-1 (id " in done.stderr and "(since last contact), at least --offline-for 1h" in done.stderr
    assert "kept laptop (id " in done.stderr
    assert "deleted 2 of 6 runners on GitLab acme/app (prefix 'rc-'); kept 4" in done.stderr


def test_gitlab_prune_writes_one_audit_line_a_runner_mode_0600(cli: Cli, gitlab: GitLabWorld) -> None:
    last_json(cli("prune", *gitlab.args("--json"), env=gitlab.env))
    path = cli.state / "runners" / "audit.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = cli.audit
    assert [(line["name"], line["action"]) for line in lines] == [
        ("rc-ci-1-1", "deleted"),
        ("rc-ci-1-2", "kept"),
        ("rc-ci-1-3", "kept"),
        ("laptop", "kept"),
        ("rc-ci-2-1", "kept"),
        ("rc-ci-3-1", "deleted"),
    ]
    first = lines[0]
    assert first["runner_id"] == gitlab.ids["rc-ci-1-1"] and first["dry_run"] is False
    assert (first["forge"], first["scope"], first["api_url"]) == ("gitlab", "acme/app", gitlab.url)
    assert first["reason"].startswith("offline for 2h")
    # Append-only: a second run adds its lines after the first run's.
    last_json(cli("prune", *gitlab.args("--json"), env=gitlab.env))
    assert cli.audit[:6] == lines and len(cli.audit) == 10
    assert gitlab.api.token not in path.read_text()


def test_gitlab_prune_dry_run_deletes_nothing_and_says_what_it_would(cli: Cli, gitlab: GitLabWorld) -> None:
    done = cli("prune", *gitlab.args("--dry-run"), env=gitlab.env)
    assert done.returncode == 0, done.stderr
    assert gitlab.api.calls_to("DELETE") == [] and len(gitlab.api.runners) == 6
    assert "would delete rc-ci-1-1 (id " in done.stdout
    assert "dry run: nothing was deleted" in done.stdout
    document = last_json(cli("prune", *gitlab.args("--dry-run", "--json"), env=gitlab.env))
    assert sorted(document["deleted"]) == ["rc-ci-1-1", "rc-ci-3-1"]
    assert gitlab.api.calls_to("DELETE") == []
    assert {line["action"] for line in cli.audit} == {"would-delete", "kept"}
    assert all(line["dry_run"] for line in cli.audit)


def test_gitlab_prune_offline_for_zero_takes_every_offline_idle_prefixed_runner(cli: Cli, gitlab: GitLabWorld) -> None:
    document = last_json(cli("prune", *gitlab.args("--offline-for", "0", "--json"), env=gitlab.env))
    assert sorted(document["deleted"]) == ["rc-ci-1-1", "rc-ci-2-1", "rc-ci-3-1"]
    assert sorted(by_name(document)) == ["laptop", "rc-ci-1-2", "rc-ci-1-3"]


def test_gitlab_prune_with_another_prefix_touches_only_that_prefix(cli: Cli, gitlab: GitLabWorld) -> None:
    document = last_json(cli("prune", *gitlab.args("--prefix", "lap", "--json"), env=gitlab.env))
    assert document["deleted"] == ["laptop"]
    assert gitlab.deleted_ids() == {gitlab.ids["laptop"]}


def test_gitlab_bad_token_is_a_one_line_error_naming_the_variable(cli: Cli, gitlab: GitLabWorld) -> None:
    for command in ("list", "prune"):
        done = cli(command, *gitlab.args(), env={"GITLAB_TOKEN": "glpat-wrong"})
        assert_one_line_error(done, 2, "HTTP 401", "GITLAB_TOKEN")
    assert gitlab.api.calls_to("DELETE") == []


def test_gitlab_unknown_project_is_a_one_line_error(cli: Cli, gitlab: GitLabWorld) -> None:
    done = cli("prune", "--gitlab", "acme/nope", "--api-url", gitlab.url, env=gitlab.env)
    assert_one_line_error(done, 2, "no such project, group or runner")
    assert gitlab.api.calls_to("DELETE") == []


def test_gitlab_token_that_may_list_but_not_delete_is_a_one_line_403(cli: Cli) -> None:
    for world in gitlab_world(frozenset({"read_api"})):
        done = cli("prune", *world.args(), env=world.env)
        assert_one_line_error(done, 2, "HTTP 403", "GITLAB_TOKEN", "manage_runner")
        assert len(world.api.runners) == 6


def test_gitlab_group_runners(cli: Cli) -> None:
    api = GitLabStandIn()
    api.add_group("acme", 7)
    with api.running():
        api.add_runner("rc-g-1", runner_type="group_type", group="acme", status="offline", contacted_at=1.0)
        done = cli(
            "prune", "--gitlab", "acme", "--api-url", f"{api.url}/api/v4", "--json", env={"GITLAB_TOKEN": api.token}
        )
        assert last_json(done)["deleted"] == ["rc-g-1"] and api.runners == {}


# ---- GitHub ----------------------------------------------------------------------------------------------


@dataclass
class GitHubWorld:
    api: GitHubStandIn
    ids: dict[str, int]

    @property
    def env(self) -> dict[str, str]:
        return {"GITHUB_TOKEN": self.api.token}

    def args(self, *more: str) -> list[str]:
        return ["--github", "acme/app", "--api-url", self.api.url, *more]

    def deleted_ids(self) -> set[int]:
        return {int(path.rsplit("/", 1)[1]) for _, path, _ in self.api.calls_to("DELETE", "")}

    def names(self) -> set[str]:
        return {runner["name"] for runner in self.api.runners("/repos/acme/app")}


@pytest.fixture
def github() -> Iterator[GitHubWorld]:
    api = GitHubStandIn()
    with api.running():
        ids = {
            name: api.add_runner("/repos/acme/app", name, labels=labels, status=status)
            for name, labels, status in (
                ("rc-ci-1-1", ("bazel",), "offline"),
                ("rc-ci-1-2", ("bazel",), "online"),
                ("rc-ci-1-3", ("bazel",), "offline"),  # busy, below
                ("laptop", ("docker",), "offline"),
            )
        }
        api.set_runner("rc-ci-1-3", busy=True)
        yield GitHubWorld(api, ids)


def backdate(path: Path, seconds: float) -> None:
    """As if ``seconds`` had passed since the sightings in the state file."""
    document = json.loads(path.read_text())
    document["offline_since"] = {key: value - seconds for key, value in document["offline_since"].items()}
    path.write_text(json.dumps(document))


def test_github_list_shows_runners_with_status_busy_state_and_labels(cli: Cli, github: GitHubWorld) -> None:
    done = cli("list", *github.args(), env=github.env)
    assert done.returncode == 0, done.stderr
    rows = {line.split("│")[2].strip(): [cell.strip() for cell in line.split("│")[1:-1]]
            for line in done.stdout.splitlines() if line.startswith("│")}  # fmt: skip
    assert set(rows) == set(github.ids)
    assert rows["rc-ci-1-1"] == [
        str(github.ids["rc-ci-1-1"]),
        "rc-ci-1-1",
        "offline",
        "idle",
        "self-hosted, Linux, X64, bazel",
    ]
    assert rows["rc-ci-1-2"][2:4] == ["online", "idle"] and rows["rc-ci-1-3"][2:4] == ["offline", "busy"]
    assert "LAST CONTACT" not in done.stdout  # GitHub gives none
    document = last_json(cli("list", *github.args("--json"), env=github.env))
    assert document["forge"] == "github" and document["scope"] == "acme/app"
    first = document["runners"][0]
    assert first == {
        "id": github.ids["rc-ci-1-1"],
        "name": "rc-ci-1-1",
        "status": "offline",
        "online": False,
        "busy": False,
        "labels": ["self-hosted", "Linux", "X64", "bazel"],
        "contacted_at": None,
    }


def test_github_org_runners(cli: Cli, github: GitHubWorld) -> None:
    scope = github.api.add_scope("acme")
    github.api.add_runner(scope, "rc-org-1", status="offline")
    document = last_json(cli("list", "--github-org", "acme", "--api-url", github.api.url, "--json", env=github.env))
    assert [runner["name"] for runner in document["runners"]] == ["rc-org-1"]
    pruned = last_json(
        cli(
            "prune", "--github-org", "acme", "--api-url", github.api.url, "--offline-for", "0", "--json", env=github.env
        )
    )
    assert pruned == {"deleted": ["rc-org-1"], "kept": []}
    assert github.api.runners(scope) == [] and len(github.names()) == 4


def test_github_offline_time_counts_from_the_first_run_that_saw_it_offline(cli: Cli, github: GitHubWorld) -> None:
    first = last_json(cli("prune", *github.args("--json"), env=github.env))
    assert first["deleted"] == []
    assert by_name(first)["rc-ci-1-1"] == "offline for 0s (since first seen offline), less than --offline-for 1h"
    assert stat.S_IMODE(cli.offline_since.stat().st_mode) == 0o600
    entries = json.loads(cli.offline_since.read_text())["offline_since"]
    key = f"{github.api.url} acme/app"
    assert set(entries) == {f"{key} {github.ids[name]}" for name in ("rc-ci-1-1", "rc-ci-1-3", "laptop")}

    backdate(cli.offline_since, 2 * HOUR)
    github.api.add_runner("/repos/acme/app", "rc-ci-2-1", status="offline")  # new since the first run
    second = last_json(cli("prune", *github.args("--json"), env=github.env))
    assert second["deleted"] == ["rc-ci-1-1"]
    assert github.deleted_ids() == {github.ids["rc-ci-1-1"]}
    kept = by_name(second)
    assert kept == {
        "rc-ci-1-2": "online",
        "rc-ci-1-3": "busy: running a job",
        "laptop": "name does not start with 'rc-': not registered by runner-ctl",
        "rc-ci-2-1": "offline for 0s (since first seen offline), less than --offline-for 1h",
    }
    reason = next(line["reason"] for line in cli.audit if line["action"] == "deleted")
    assert reason == "offline for 2h (since first seen offline), at least --offline-for 1h"
    entries = json.loads(cli.offline_since.read_text())["offline_since"]
    assert f"{key} {github.ids['rc-ci-1-1']}" not in entries  # deleted: forgotten


def test_github_a_runner_back_online_is_forgotten_and_its_clock_restarts(cli: Cli, github: GitHubWorld) -> None:
    last_json(cli("prune", *github.args("--json"), env=github.env))
    backdate(cli.offline_since, 2 * HOUR)
    github.api.set_runner("rc-ci-1-1", status="online")
    assert last_json(cli("prune", *github.args("--json"), env=github.env))["deleted"] == []
    github.api.set_runner("rc-ci-1-1", status="offline")
    third = last_json(cli("prune", *github.args("--json"), env=github.env))
    assert third["deleted"] == []
    assert by_name(third)["rc-ci-1-1"].startswith("offline for 0s (since first seen offline)")
    assert github.api.calls_to("DELETE", "") == []


def test_github_offline_for_zero_prunes_on_the_first_run(cli: Cli, github: GitHubWorld) -> None:
    document = last_json(cli("prune", *github.args("--offline-for", "0", "--json"), env=github.env))
    assert document["deleted"] == ["rc-ci-1-1"]
    assert github.names() == {"rc-ci-1-2", "rc-ci-1-3", "laptop"}


def test_github_dry_run_deletes_nothing(cli: Cli, github: GitHubWorld) -> None:
    document = last_json(cli("prune", *github.args("--offline-for", "0", "--dry-run", "--json"), env=github.env))
    assert document["deleted"] == ["rc-ci-1-1"]
    assert github.api.calls_to("DELETE", "") == [] and len(github.names()) == 4
    first = cli.audit[0]
    assert (first["name"], first["action"], first["dry_run"]) == ("rc-ci-1-1", "would-delete", True)


def test_github_bad_token_is_a_one_line_401_naming_the_variable(cli: Cli, github: GitHubWorld) -> None:
    for command in ("list", "prune"):
        done = cli(command, *github.args(), env={"GITHUB_TOKEN": "ghp_wrong"})
        assert_one_line_error(done, 2, "HTTP 401", "GITHUB_TOKEN")
    assert github.api.calls_to("DELETE", "") == []


def test_github_token_without_permission_is_a_one_line_403(cli: Cli, github: GitHubWorld) -> None:
    message = {"message": "Resource not accessible by personal access token", "status": "403"}
    github.api.faults.append(Reply(403, message))
    done = cli("prune", *github.args("--offline-for", "0"), env=github.env)
    assert_one_line_error(done, 2, "HTTP 403", "GITHUB_TOKEN", "administration: write")
    assert github.api.calls_to("DELETE", "") == [] and len(github.names()) == 4


def test_github_unknown_repository_is_a_one_line_404(cli: Cli, github: GitHubWorld) -> None:
    done = cli("prune", "--github", "acme/nope", "--api-url", github.api.url, env=github.env)
    assert_one_line_error(done, 2, "'acme/nope'", "check the scope")
    done = cli("list", "--github-org", "nope", "--api-url", github.api.url, env=github.env)
    assert_one_line_error(done, 2, "'nope'")
    assert github.api.calls_to("DELETE", "") == []


def test_the_state_of_one_forge_scope_leaves_the_others_alone(cli: Cli, github: GitHubWorld) -> None:
    scope = github.api.add_scope("acme")
    github.api.add_runner(scope, "rc-org-1", status="offline")
    last_json(cli("prune", *github.args("--json"), env=github.env))
    last_json(cli("prune", "--github-org", "acme", "--api-url", github.api.url, "--json", env=github.env))
    entries = json.loads(cli.offline_since.read_text())["offline_since"]
    assert sum(key.startswith(f"{github.api.url} acme/app ") for key in entries) == 3
    assert sum(key.startswith(f"{github.api.url} acme ") for key in entries) == 1


def test_the_default_prefix_comes_from_the_checkouts_group_data(cli: Cli, github: GitHubWorld, tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    (root / "deploys").mkdir(parents=True)
    (root / "inventories" / "group_data").mkdir(parents=True)
    (root / "inventories" / "group_data" / "all.py").write_text('github_runner_name_prefix = "lap"\n')
    done = cli("prune", *github.args("--offline-for", "0", "--json"), env=github.env, cwd=root)
    assert last_json(done)["deleted"] == ["laptop"]
    assert "(prefix 'lap')" in done.stderr
    assert github.names() == {"rc-ci-1-1", "rc-ci-1-2", "rc-ci-1-3"}


def test_github_a_runner_already_gone_when_deleted_counts_as_deleted(cli: Cli, github: GitHubWorld) -> None:
    # The list answers with a runner that someone removes before runner-ctl's DELETE arrives.
    gone = {"id": 999, "name": "rc-gone-1", "os": "Linux", "status": "offline", "busy": False, "labels": []}
    github.api.faults.extend([Reply(200, {"total_count": 1, "runners": [gone]}), Reply(404, {"message": "Not Found"})])
    done = cli("prune", *github.args("--offline-for", "0", "--json"), env=github.env)
    assert last_json(done) == {"deleted": ["rc-gone-1"], "kept": []}
    assert "deleted rc-gone-1 (id 999): " in done.stderr and "already gone (HTTP 404)" in done.stderr
    assert cli.audit[0]["action"] == "deleted" and cli.audit[0]["reason"].endswith("already gone (HTTP 404)")


def test_a_runner_name_with_a_newline_cannot_fake_an_output_line(cli: Cli, github: GitHubWorld) -> None:
    github.api.add_runner("/repos/acme/app", "x\ndeleted everything", status="offline")
    done = cli("prune", *github.args("--dry-run"), env=github.env)
    assert done.returncode == 0, done.stderr
    assert "kept 'x\\ndeleted everything' (id " in done.stdout
    assert not any(line.startswith("deleted everything") for line in done.stdout.splitlines())


def test_gitlab_instance_runners(cli: Cli) -> None:
    api = GitLabStandIn()
    with api.running():
        api.add_runner("rc-shared-1", runner_type="instance_type", status="offline", contacted_at=1.0)
        done = cli(
            "list", "--gitlab", "instance", "--api-url", f"{api.url}/api/v4", "--json", env={"GITLAB_TOKEN": api.token}
        )
        assert [runner["name"] for runner in last_json(done)["runners"]] == ["rc-shared-1"]


def test_an_unwritable_state_dir_stops_prune_before_any_request(cli: Cli, github: GitHubWorld, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    done = cli("prune", *github.args("--offline-for", "0"), env={**github.env, "RUNNER_CTL_STATE_DIR": str(blocker)})
    assert_one_line_error(done, 2, "cannot append to the audit log", "RUNNER_CTL_STATE_DIR")
    assert github.api.calls == []
