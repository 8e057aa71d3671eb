"""GitHub's self-hosted runner API client against the loopback stand-in (tests/standins/github_api.py)."""

import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runner_ctl.errors import ConfigError, UsageError
from runner_ctl.forge.github_runners import (
    custom_labels,
    delete_runner,
    find_runner,
    github_client,
    list_runners,
    list_runners_raw,
    registration_token,
    remove_token,
    scope_path,
    set_labels,
    web_scope_url,
)
from runner_ctl.forge.rest import NotFoundError, RestClient
from tests.standins.actions_runner_release import build_release
from tests.standins.forge_api import Reply
from tests.standins.github_api import GitHubStandIn

WHAT = "github_runner_token (env:GH_PAT)"


@pytest.fixture
def github() -> Iterator[GitHubStandIn]:
    standin = GitHubStandIn()
    standin.add_scope("acme")
    standin.add_scope("enterprise:bigco")
    with standin.running():
        yield standin


@pytest.fixture
def client(github: GitHubStandIn) -> Iterator[RestClient]:
    with github_client(github.url, github.token, token_what=WHAT) as made:
        made.max_attempts = 2
        made._sleep = lambda _seconds: None  # retries are not what these tests wait for
        yield made


@pytest.mark.parametrize(
    ("scope", "path"),
    [("acme/app", "/repos/acme/app"), ("acme", "/orgs/acme"), ("enterprise:bigco", "/enterprises/bigco")],
)
def test_scope_paths(scope: str, path: str) -> None:
    assert scope_path(scope) == path


@pytest.mark.parametrize("scope", ["", "a/b/c", "acme app", "enterprise:", "enterprise:a/b", "../x"])
def test_bad_scopes_are_a_usage_error(scope: str) -> None:
    with pytest.raises(UsageError, match="OWNER/REPO, ORG or enterprise:SLUG"):
        scope_path(scope)


def test_web_urls_are_what_config_sh_takes() -> None:
    assert web_scope_url("https://github.com", "acme/app") == "https://github.com/acme/app"
    assert web_scope_url("https://github.com/", "acme") == "https://github.com/acme"
    assert web_scope_url("https://ghe.example", "enterprise:bigco") == "https://ghe.example/enterprises/bigco"


def test_every_page_is_listed(github: GitHubStandIn, client: RestClient) -> None:
    for n in range(230):
        github.add_runner("/orgs/acme", f"rc-h-{n}", labels=("bazel",), status="offline" if n % 2 else "online")
    runners = list_runners(client, "acme")
    assert [runner.name for runner in runners] == [f"rc-h-{n}" for n in range(230)]
    assert runners[0].online and not runners[1].online and runners[1].status == "offline"
    assert runners[0].labels == ("self-hosted", "Linux", "X64", "bazel")
    assert runners[0].contacted_at is None  # GitHub gives no last-contact time
    assert github.paths["/orgs/acme/actions/runners"] == 3


def test_tokens_labels_and_deletion(github: GitHubStandIn, client: RestClient) -> None:
    runner_id = github.add_runner("/repos/acme/app", "rc-h-1", labels=("old",))
    assert registration_token(client, "acme/app") != remove_token(client, "acme/app")
    assert set_labels(client, "acme/app", runner_id, ["bazel", "linux-big"]) == [
        "self-hosted", "Linux", "X64", "bazel", "linux-big",
    ]  # fmt: skip
    assert github.calls_to("PUT", f"/actions/runners/{runner_id}/labels")[-1][2] == {"labels": ["bazel", "linux-big"]}
    [raw] = list_runners_raw(client, "acme/app")
    assert custom_labels(raw["labels"]) == ["bazel", "linux-big"]
    found = find_runner(client, "acme/app", "rc-h-1")
    assert found is not None and found.id == runner_id and not found.busy
    github.set_runner("rc-h-1", busy=True)
    assert list_runners(client, "acme/app")[0].busy
    github.set_runner("rc-h-1", busy=False)
    delete_runner(client, "acme/app", runner_id)
    assert find_runner(client, "acme/app", "rc-h-1") is None


def test_the_api_prefix_of_enterprise_server_is_served(github: GitHubStandIn) -> None:
    with github_client(f"{github.url}/api/v3", github.token, token_what=WHAT) as client:
        assert registration_token(client, "enterprise:bigco")
    assert github.calls_to("POST", "/enterprises/bigco/actions/runners/registration-token")


def test_the_registration_handshake_creates_and_removes_a_runner(github: GitHubStandIn, client: RestClient) -> None:
    token = registration_token(client, "acme/app")
    handshake = f"{github.url}/api/v3/actions/runner-registration"
    body = {"url": f"{github.url}/acme/app", "runner_event": "register", "name": "rc-h-1", "labels": ["bazel"]}
    answer = httpx.post(handshake, json=body, headers={"Authorization": f"RemoteAuth {token}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    runner_id = answer.json()["runner"]["id"]
    # The same name again: refused unless replaced (config.sh --replace), which keeps the id.
    again = httpx.post(handshake, json=body, headers={"Authorization": f"RemoteAuth {token}"}, timeout=10)
    assert again.status_code == 409
    replaced = httpx.post(
        handshake, json={**body, "replace": True}, headers={"Authorization": f"RemoteAuth {token}"}, timeout=10
    )
    assert replaced.json()["runner"]["id"] == runner_id
    # A registration token does not remove, and a token of another scope does not register here.
    remove = {"url": f"{github.url}/acme/app", "runner_event": "remove", "runner_id": runner_id}
    assert httpx.post(handshake, json=remove, headers={"Authorization": f"RemoteAuth {token}"}).status_code == 400
    other = registration_token(client, "acme")
    assert httpx.post(handshake, json=body, headers={"Authorization": f"RemoteAuth {other}"}).status_code == 404
    gone = remove_token(client, "acme/app")
    assert httpx.post(handshake, json=remove, headers={"Authorization": f"RemoteAuth {gone}"}).status_code == 200
    assert find_runner(client, "acme/app", "rc-h-1") is None


def test_a_bad_token_names_where_it_came_from(github: GitHubStandIn) -> None:
    rejected = r"rejected the token in github_runner_token \(env:GH_PAT\)"
    with (
        github_client(github.url, "wrong-token", token_what=WHAT) as client,
        pytest.raises(ConfigError, match=rejected) as error,
    ):
        registration_token(client, "acme/app")
    assert "wrong-token" not in str(error.value)


@pytest.mark.parametrize(
    ("scope", "permission"),
    [("acme/app", "administration: write"), ("acme", "organization_self_hosted_runners: write")],
)
def test_a_403_names_the_permission_the_scope_needs(
    github: GitHubStandIn, client: RestClient, scope: str, permission: str
) -> None:
    github.faults.append(Reply(403, {"message": "Resource not accessible by personal access token"}))
    with pytest.raises(ConfigError, match=f"it needs {permission}$"):
        registration_token(client, scope)


def test_an_unknown_scope_is_a_one_line_not_found(client: RestClient) -> None:
    with pytest.raises(NotFoundError, match="no 'nobody/nothing'") as error:
        list_runners(client, "nobody/nothing")
    assert "\n" not in str(error.value)


def _unpack(tmp_path: Path) -> Path:
    slot = tmp_path / "slot"
    slot.mkdir()
    with tarfile.open(fileobj=io.BytesIO(build_release("2.321.0").data)) as archive:
        archive.extractall(slot)  # noqa: S202 - the stand-in built just above
    return slot


def _config(slot: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # Root may run it only with RUNNER_ALLOW_RUNASROOT, as the real config.sh says.
    full = {"PATH": os.environ["PATH"], "RUNNER_ALLOW_RUNASROOT": "1", **env}
    return subprocess.run([str(slot / "config.sh"), *args], env=full, capture_output=True, text=True, timeout=60)


def test_the_stand_in_runner_takes_its_token_from_the_environment_only(
    github: GitHubStandIn, client: RestClient, tmp_path: Path
) -> None:
    slot = _unpack(tmp_path)
    url = f"{github.url}/acme/app"
    token = registration_token(client, "acme/app")
    common = ("--unattended", "--url", url, "--name", "rc-h-1", "--labels", "bazel,big", "--work", str(tmp_path / "w"))
    in_argv = _config(slot, *common, "--token", token, env={})
    assert in_argv.returncode != 0 and "ACTIONS_RUNNER_INPUT_TOKEN" in in_argv.stderr
    missing = _config(slot, *common, env={})
    assert "Invalid configuration provided for token" in missing.stderr
    # The variable's name is matched case-insensitively and its value trimmed, as the real runner does.
    done = _config(slot, *common, "--replace", env={"actions_runner_input_Token": f" {token} "})
    assert done.returncode == 0, done.stderr
    runner = json.loads((slot / ".runner").read_text())
    assert (runner["agentName"], runner["gitHubUrl"], runner["workFolder"]) == ("rc-h-1", url, str(tmp_path / "w"))
    assert (slot / ".credentials").stat().st_mode & 0o777 == 0o600
    [registered] = list_runners(client, "acme/app")
    assert registered.labels == ("self-hosted", "Linux", "X64", "bazel", "big")
    again = _config(slot, *common, env={"ACTIONS_RUNNER_INPUT_TOKEN": token})
    assert "already configured" in again.stderr
    removed = _config(slot, "remove", env={"ACTIONS_RUNNER_INPUT_TOKEN": remove_token(client, "acme/app")})
    assert removed.returncode == 0, removed.stderr
    assert list_runners(client, "acme/app") == []
    assert not (slot / ".runner").exists() and not (slot / ".credentials").exists()
