"""The GitHub Actions runner layer: its spec, its names and units, its bad input.

The bad-input checks run the whole host deploy ``--dry`` (tests/test_layer_buildbuddy.py's
``dry_host_deploy``) against the loopback GitHub stand-in, and must stop with one line
before any operation: a bad key, a missing or empty token, and the API refusing with 401,
403 or 404.
"""

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from deploys.github_runner import RunnerSlots, unit_name

from runner_ctl.forge.github_runners import github_client, list_runners
from runner_ctl.hostdata import default_host_settings, validate_host_data
from runner_ctl.layers.github_runner import GitHubRunnerRegistration, GitHubRunnerSettings, runner_names
from tests.conftest import PROJECT_ROOT
from tests.standins.forge_api import Reply
from tests.standins.github_api import GitHubStandIn
from tests.standins.github_runner_rehearsal import rehearsal_world
from tests.test_layer_buildbuddy import dry_host_deploy, write_group_data
from tests.test_layer_secrets import pyinfra_local

PLANTED = "ghp_PlantedRunnerToken0123456789"
SHA = "0" * 64
GOOD: dict[str, Any] = {
    "layers": ["base", "github_runner"],
    "github_runner_registrations": [{"scope": "acme/app", "labels": ["bazel"]}],
    "github_runner_token": "env:RC_TEST_GH_TOKEN",
    "github_runner_version": "2.321.0",
    "github_runner_sha256": SHA,
    # A closed loopback port: a check that got as far as asking the API fails, never leaves this machine.
    "github_runner_api_url": "http://127.0.0.1:9/api/v3",
}


def test_the_default_installs_nothing() -> None:
    mine = default_host_settings().of(GitHubRunnerSettings)
    assert not mine.enabled
    assert mine.github_runner_registrations == ()
    assert mine.github_runner_name_prefix == "rc-"


def test_names_units_and_urls() -> None:
    plain = GitHubRunnerRegistration(scope="acme/app", slots=2)
    named = GitHubRunnerRegistration(scope="acme", name="org", runner_group="bazel")
    assert runner_names("rc-", "ci1", plain) == ["rc-ci1-1", "rc-ci1-2"]
    assert runner_names("rc-", "ci1", named) == ["rc-ci1-org-1"]
    assert unit_name("acme/app", "rc-ci1-1") == "actions.runner.acme-app.rc-ci1-1.service"
    assert unit_name("enterprise:bigco", "rc-ci1-1") == "actions.runner.enterprise-bigco.rc-ci1-1.service"
    cloud = GitHubRunnerSettings.model_validate(_only_mine(GOOD))
    assert cloud.server_url() == "http://127.0.0.1:9"
    assert GitHubRunnerSettings().server_url() == "https://github.com"
    assert cloud.download_url() == (
        "https://github.com/actions/runner/releases/download/v2.321.0/actions-runner-linux-x64-2.321.0.tar.gz"
    )
    ghes = GitHubRunnerSettings.model_validate(
        {**_only_mine(GOOD), "github_runner_api_url": "https://ghe.example/api/v3/"}
    )
    assert ghes.server_url() == "https://ghe.example"


def _only_mine(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key in GitHubRunnerSettings.model_fields}


def test_slots_on_the_host_are_read_from_their_runner_files() -> None:
    output = [
        "slot rc-h-1",
        'runner \ufeff{  "agentId": 7,  "agentName": "rc-h-1",  "gitHubUrl": "https://github.com/acme/app"}',
        "release 2.321.0 " + SHA,
        "slot rc-h-2",
        "runner not json",
    ]
    slots = RunnerSlots().process(output)
    assert slots["rc-h-1"].agent_id == 7 and slots["rc-h-1"].github_url == "https://github.com/acme/app"
    assert slots["rc-h-1"].release == f"2.321.0 {SHA}"
    assert slots["rc-h-2"].agent_id is None and slots["rc-h-2"].release is None


# ---- bad input: one line naming the cause, before any operation ------------------------------


def _dry(tmp_path: Path, data: dict[str, Any], env: dict[str, str]) -> str:
    output = dry_host_deploy(tmp_path, data, {"RC_TEST_GH_TOKEN": PLANTED, **env})
    assert PLANTED not in output
    return output


def _one_line(output: str, *fragments: str) -> None:
    errors = [line for line in output.splitlines() if all(fragment in line for fragment in fragments)]
    assert len(errors) == 1, output


def _registration(**extra: Any) -> dict[str, Any]:
    return {**GOOD, "github_runner_registrations": [{"scope": "acme/app", **extra}]}


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        ({**GOOD, "github_runner_sha256": "ABC"}, ("github_runner_sha256", "64 lower-case hex")),
        ({**GOOD, "github_runner_sha256": "g" * 64}, ("github_runner_sha256", "64 lower-case hex")),
        ({**GOOD, "github_runner_version": "v2.321.0"}, ("github_runner_version", "not a release version X.Y.Z")),
        ({**GOOD, "github_runner_version": "2.321"}, ("github_runner_version", "not a release version X.Y.Z")),
        (_registration(labels=["big disk"]), ("github_runner_registrations", "space or a comma")),
        (_registration(labels=["bazel,warm"]), ("github_runner_registrations", "space or a comma")),
        (
            {**GOOD, "github_runner_registrations": [{"scope": "acme/app"}, {"scope": "acme/lib"}]},
            ("github_runner_registrations 1 (acme/app) and 2 (acme/lib)", "rc-<host>-1"),
        ),
        (
            {
                **GOOD,
                "github_runner_registrations": [{"scope": "acme/app", "name": "x"}, {"scope": "acme", "name": "x"}],
            },
            ("github_runner_registrations 1 (acme/app) and 2 (acme)", "rc-<host>-x-1"),
        ),
        ({**GOOD, "github_runner_token": None}, ("github_runner_token", "required for registration acme/app")),
        ({**GOOD, "github_runner_token": PLANTED}, ("github_runner_token", "not a secret reference")),
        ({**GOOD, "github_runner_version": None}, ("github_runner_version", "required when a registration")),
        (_registration(runner_group="bazel"), ("github_runner_registrations", "runner_group is for an organization")),
        (_registration(scope="a/b/c"), ("github_runner_registrations", "OWNER/REPO, ORG or enterprise:SLUG")),
        ({**GOOD, "github_runner_api_url": "https://ghe.example"}, ("github_runner_api_url", "/api/v3")),
        ({**GOOD, "github_runner_download_url": "https://mirror/{os}.tgz"}, ("github_runner_download_url", "braces")),
    ],
    ids=lambda value: None if isinstance(value, (dict, tuple)) else str(value),
)
def test_bad_group_data_is_one_line(tmp_path: Path, data: dict[str, Any], fragments: tuple[str, ...]) -> None:
    _one_line(_dry(tmp_path, data, {}), *fragments)


@pytest.mark.parametrize(
    ("env", "fragments"),
    [
        ({"RC_TEST_GH_TOKEN": ""}, ("github_runner_token", "RC_TEST_GH_TOKEN is not set")),
        ({"RC_TEST_GH_TOKEN": "   "}, ("github_runner_token", "blank or holds whitespace")),
    ],
)
def test_a_missing_or_empty_token_is_one_line(tmp_path: Path, env: dict[str, str], fragments: tuple[str, ...]) -> None:
    _one_line(_dry(tmp_path, GOOD, env), *fragments)


@pytest.fixture
def api() -> Iterator[GitHubStandIn]:
    standin = GitHubStandIn(token=PLANTED)
    with standin.running():
        yield standin


def _against(api: GitHubStandIn, **extra: Any) -> dict[str, Any]:
    return {**GOOD, "github_runner_api_url": f"{api.url}/api/v3", **extra}


def test_a_token_the_api_rejects_is_one_line(tmp_path: Path, api: GitHubStandIn) -> None:
    output = _dry(tmp_path, _against(api), {"RC_TEST_GH_TOKEN": "ghp_WrongToken0123456789"})
    _one_line(output, "github_runner", "rejected the token in github_runner_token (env:RC_TEST_GH_TOKEN)", "401")
    assert "ghp_WrongToken" not in output


@pytest.mark.parametrize(
    ("scope", "permission"),
    [("acme/app", "administration: write"), ("acme", "organization_self_hosted_runners: write")],
)
def test_a_token_without_the_permission_is_one_line_naming_it(
    tmp_path: Path, api: GitHubStandIn, scope: str, permission: str
) -> None:
    api.add_scope("acme")
    api.faults.append(Reply(403, {"message": "Resource not accessible by personal access token"}))
    data = _against(api, github_runner_registrations=[{"scope": scope}])
    _one_line(_dry(tmp_path, data, {}), "github_runner", "HTTP 403", f"it needs {permission}")


def test_an_unknown_scope_is_one_line(tmp_path: Path, api: GitHubStandIn) -> None:
    data = _against(api, github_runner_registrations=[{"scope": "nobody/nothing"}])
    _one_line(_dry(tmp_path, data, {}), "github_runner", "no 'nobody/nothing'")
    assert api.calls_to("POST", "registration-token") == []  # stopped at the first answer


def test_no_registration_asks_no_api(tmp_path: Path, api: GitHubStandIn) -> None:
    """The default deploy of this layer neither needs a token nor calls GitHub."""
    data = {"layers": ["base", "github_runner"], "github_runner_api_url": f"{api.url}/api/v3"}
    group_data = write_group_data(tmp_path, data)
    done = pyinfra_local(PROJECT_ROOT / "deploys" / "runner_host.py", "--dry", "--group-data", str(group_data))
    assert done.returncode == 0, done.stderr
    assert api.calls == []


def test_a_release_that_does_not_match_its_sha256_never_reaches_the_host(tmp_path: Path) -> None:
    with rehearsal_world("127.0.0.1", PLANTED, tmp_path) as world:
        data = {**GOOD, **world.group_data, "github_runner_sha256": "f" * 64}
        output = _dry(tmp_path, data, {"GITHUB_RUNNER_TOKEN": PLANTED})
    _one_line(output, "github_runner_download_url", "sha256 mismatch", "expected " + "f" * 64)


def test_the_rehearsal_world_is_valid_group_data_served_by_stand_ins(tmp_path: Path) -> None:
    with rehearsal_world("127.0.0.1", PLANTED, tmp_path) as world:
        settings = validate_host_data({"layers": ["base", "github_runner"], **world.group_data})
        mine = settings.of(GitHubRunnerSettings)
        assert len(mine.github_runner_registrations) == 2
        assert "stand-in" in world.summary and "\n" not in world.summary
        tarball = httpx.get(mine.download_url(), timeout=10)
        assert hashlib.sha256(tarball.content).hexdigest() == mine.github_runner_sha256
        with github_client(mine.github_runner_api_url, PLANTED, token_what="a test") as client:  # noqa: S106 - a description
            assert list_runners(client, "acme/lib") == []
    with pytest.raises(httpx.TransportError):
        httpx.get(mine.download_url(), timeout=5)  # stopped with the block
