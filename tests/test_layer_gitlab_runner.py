"""The GitLab runner layer: its spec, its config.toml, the pinned signing key, its bad input.

The key checks use a real signed repository (tests/standins/gitlab_runner_package.py, real
gpg) and check the keyring the layer keeps with gpgv, as apt does. The bad-input checks run
the whole host deploy ``--dry`` through pyinfra's ``@local`` connector against the loopback
GitLab stand-in: each must be one line, naming the cause, before any operation — and a dry
run must never create a runner in GitLab.
"""

import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from deploys.gitlab_runner import render_config

from runner_ctl.errors import ConfigError
from runner_ctl.forge.gitlab_runners import gitlab_client, namespace_id
from runner_ctl.hostdata import default_host_settings, validate_host_data
from runner_ctl.layers.gitlab_runner import GITLAB_KEY_FINGERPRINT, GitLabRunnerSettings, package_version
from runner_ctl.openpgp import pinned_keyring
from tests.conftest import PROJECT_ROOT
from tests.standins.forge_api import Reply
from tests.standins.gitlab_api import GitLabStandIn
from tests.standins.gitlab_runner_package import AptRepo, build_apt_repo, serve_apt_repo
from tests.standins.gitlab_runner_rehearsal import rehearsal_world
from tests.test_layer_buildbuddy import write_group_data
from tests.test_layer_secrets import pyinfra_local

API_TOKEN = "glpat-standin-0123456789"  # noqa: S105 - the stand-in's token
TOKEN_REF = "env:GITLAB_TOKEN"  # noqa: S105 - a reference
PROJECT = {"project": "acme/app", "tags": ["bazel", "linux"]}


def settings(**data: Any) -> GitLabRunnerSettings:
    return validate_host_data(data).of(GitLabRunnerSettings)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> AptRepo:
    return build_apt_repo(tmp_path_factory.mktemp("gitlab-repo"))


# ---- the spec ---------------------------------------------------------------------------


def test_off_by_default_with_gitlabs_real_repository_and_key() -> None:
    mine = default_host_settings().of(GitLabRunnerSettings)
    assert mine.gitlab_runner_registrations == () and not mine.enabled
    assert mine.gitlab_runner_apt_repo == "https://packages.gitlab.com/runner/gitlab-runner/debian/"
    assert mine.gitlab_runner_apt_key_fingerprint == GITLAB_KEY_FINGERPRINT
    assert mine.server_url == "https://gitlab.com"


def test_a_registration_of_each_kind() -> None:
    mine = settings(
        gitlab_runner_api_token=TOKEN_REF,
        gitlab_runner_api_url="https://gitlab.example.com/api/v4",
        gitlab_runner_registrations=[PROJECT, {"group": "acme", "name": "g"}, {"instance": True, "present": False}],
        gitlab_runner_apt_key_fingerprint="F640 3F65 44A3 8863 DAA0  B6E0 3F01 618A 5131 2F3F",
    )
    kinds = [r.runner_type for r in mine.gitlab_runner_registrations]
    assert kinds == ["project_type", "group_type", "instance_type"]
    assert mine.enabled and mine.server_url == "https://gitlab.example.com"
    assert mine.gitlab_runner_apt_key_fingerprint == GITLAB_KEY_FINGERPRINT


def test_the_package_version_carries_gitlabs_revision() -> None:
    assert package_version("17.7.1") == "17.7.1-1"
    assert package_version("17.7.1-2") == "17.7.1-2"


@pytest.mark.parametrize(
    ("data", "key", "problem"),
    [
        ({"gitlab_runner_version": "17.7"}, "gitlab_runner_version", "is not a release X.Y.Z"),
        ({"gitlab_runner_version": "latest"}, "gitlab_runner_version", "is not a release X.Y.Z"),
        ({"gitlab_runner_registrations": [{"project": "a/b", "tags": ["two words"]}]}, "registrations", "no spaces"),
        ({"gitlab_runner_registrations": [{"project": "a/b", "tags": ["a,b"]}]}, "registrations", "or commas"),
        ({"gitlab_runner_registrations": [{"project": "a/b", "group": "a"}]}, "registrations", "exactly one of"),
        (
            {"gitlab_runner_registrations": [{"project": "a/b", "name": "x"}, {"group": "a", "name": "x"}]},
            "gitlab_runner_registrations",
            "1 and 2 both resolve to the runner name",
        ),
        ({"gitlab_runner_registrations": [{"project": "a/b", "token": "glrt-pasted"}]}, "registrations", "reference"),
        ({"gitlab_runner_registrations": [{"project": "a/b"}]}, "gitlab_runner_api_token", "is not set"),
        ({"gitlab_runner_api_url": "https://gitlab.example.com"}, "gitlab_runner_api_url", "/api/v4"),
        ({"gitlab_runner_apt_key_fingerprint": "F6403F65"}, "gitlab_runner_apt_key_fingerprint", "40 hex"),
        ({"gitlab_runner_listen_address": "0.0.0.0:9252"}, "gitlab_runner_listen_address", "not a loopback"),
        ({"gitlab_runner_environment": {"A": 'x"y'}}, "gitlab_runner_environment", "quotes"),
    ],
)
def test_bad_settings_are_one_line_naming_the_key(data: dict[str, Any], key: str, problem: str) -> None:
    full = {"gitlab_runner_api_token": "env:GITLAB_TOKEN", **data} if "api_token" not in key else data
    with pytest.raises(ConfigError) as caught:
        validate_host_data(full)
    message = str(caught.value)
    assert key in message and problem in message and "\n" not in message, message
    assert "glrt-pasted" not in message


# ---- config.toml ------------------------------------------------------------------------


def test_config_has_one_shell_runner_per_registration_and_no_token() -> None:
    mine = settings(
        gitlab_runner_api_token=TOKEN_REF,
        gitlab_runner_registrations=[PROJECT, {"project": "acme/tools"}],
        gitlab_runner_concurrent=2,
        gitlab_runner_environment={"BAZELISK_HOME": "/var/lib/ci/bazelisk", "CI_HOST": "a b=c"},
    )
    text = render_config(mine, ["rc-h-1", "rc-h-2"], "/var/lib/ci")
    config = tomllib.loads(text)
    assert (config["concurrent"], config["check_interval"], config["listen_address"]) == (2, 3, "127.0.0.1:9252")
    assert [r["name"] for r in config["runners"]] == ["rc-h-1", "rc-h-2"]
    first = config["runners"][0]
    assert first["executor"] == "shell" and first["url"] == "https://gitlab.com"
    assert first["builds_dir"] == "/var/lib/ci/gitlab-runner/builds/rc-h-1"
    assert first["environment"] == ["BAZELISK_HOME=/var/lib/ci/bazelisk", "CI_HOST=a b=c"]
    assert first["token"] == "@@runner-ctl-token:rc-h-1@@"  # noqa: S105 - the host fills it in from its own file
    assert "glrt-" not in text


# ---- the signing key --------------------------------------------------------------------


def test_the_kept_keyring_holds_only_the_pinned_key_and_verifies_the_repository(repo: AptRepo, tmp_path: Path) -> None:
    keyring = tmp_path / "keyring.gpg"
    keyring.write_bytes(pinned_keyring(repo.key(), repo.fingerprint))
    release = repo.root / "dists" / "bookworm" / "InRelease"
    done = subprocess.run(["gpgv", "--keyring", str(keyring), str(release)], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr


def test_a_key_with_another_fingerprint_is_refused(repo: AptRepo) -> None:
    with pytest.raises(ValueError, match=f"{repo.fingerprint}, not the pinned {GITLAB_KEY_FINGERPRINT}"):
        pinned_keyring(repo.key(), GITLAB_KEY_FINGERPRINT)


# ---- the whole deploy, dry, against the stand-ins ----------------------------------------


@pytest.fixture
def gitlab() -> Iterator[GitLabStandIn]:
    standin = GitLabStandIn()
    with standin.running():
        yield standin


def dry_deploy(tmp_path: Path, data: dict[str, Any], env: dict[str, str]) -> tuple[int, str]:
    group_data = write_group_data(tmp_path, {"layers": ["base", "gitlab_runner"], **data})
    done = pyinfra_local(PROJECT_ROOT / "deploys" / "runner_host.py", "--dry", "--group-data", str(group_data), env=env)
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    return done.returncode, output


def one_error(tmp_path: Path, data: dict[str, Any], env: dict[str, str], *needles: str) -> str:
    code, output = dry_deploy(tmp_path, data, env)
    assert code != 0, output
    assert "Starting operation" not in output
    errors = [line for line in output.splitlines() if all(needle in line for needle in needles)]
    assert len(errors) == 1, output
    return output


def api_data(gitlab: GitLabStandIn, **extra: Any) -> dict[str, Any]:
    return {
        "gitlab_runner_api_url": f"{gitlab.url}/api/v4",
        "gitlab_runner_api_token": "env:RC_TEST_GITLAB_TOKEN",
        "gitlab_runner_registrations": [PROJECT],
        **extra,
    }


def test_a_missing_or_empty_token_secret_stops_the_deploy(gitlab: GitLabStandIn, tmp_path: Path) -> None:
    data = api_data(gitlab)
    one_error(tmp_path, data, {"RC_TEST_GITLAB_TOKEN": ""}, "gitlab_runner_api_token", "RC_TEST_GITLAB_TOKEN")
    registration = {**PROJECT, "token": "file:/nonexistent/glrt"}
    output = one_error(
        tmp_path,
        {**data, "gitlab_runner_registrations": [registration]},
        {"RC_TEST_GITLAB_TOKEN": API_TOKEN},
        "gitlab_runner_registrations[1].token",
        "cannot read /nonexistent/glrt",
    )
    assert gitlab.calls == [] and API_TOKEN not in output


def test_a_runner_token_that_is_not_glrt_is_refused_unseen(gitlab: GitLabStandIn, tmp_path: Path) -> None:
    registration = {**PROJECT, "token": "env:RC_TEST_RUNNER_TOKEN"}
    output = one_error(
        tmp_path,
        api_data(gitlab, gitlab_runner_registrations=[registration]),
        {"RC_TEST_GITLAB_TOKEN": API_TOKEN, "RC_TEST_RUNNER_TOKEN": "glpat-wrong-kind-of-token"},
        "gitlab_runner_registrations[1].token",
        "not a runner authentication token",
    )
    assert "glpat-wrong-kind-of-token" not in output


@pytest.mark.parametrize(
    ("status", "token", "project", "needles"),
    [
        (None, "glpat-not-the-right-one", "acme/app", ("HTTP 401", "gitlab_runner_api_token")),
        (403, API_TOKEN, "acme/app", ("HTTP 403", "create_runner")),
        (None, API_TOKEN, "acme/missing", ("no such project",)),
    ],
    ids=["401", "403", "404"],
)
def test_an_api_refusal_is_one_line_before_the_host_changes(
    gitlab: GitLabStandIn, tmp_path: Path, status: int | None, token: str, project: str, needles: tuple[str, ...]
) -> None:
    if status:  # GitLab's answer to a token whose user lacks the role on the project
        gitlab.faults.append(Reply(status, {"message": "403 Forbidden"}))
    data = api_data(gitlab, gitlab_runner_registrations=[{"project": project, "tags": ["bazel"]}])
    output = one_error(tmp_path, data, {"RC_TEST_GITLAB_TOKEN": token}, *needles)
    assert token not in output
    assert gitlab.calls_to("POST") == [] and gitlab.runners == {}


def test_a_dry_run_plans_everything_but_creates_no_runner(gitlab: GitLabStandIn, repo: AptRepo, tmp_path: Path) -> None:
    with serve_apt_repo(repo) as url:
        data = api_data(
            gitlab,
            gitlab_runner_apt_repo=f"{url}/",
            gitlab_runner_apt_key_url=f"{url}/gpg.key",
            gitlab_runner_apt_key_fingerprint=repo.fingerprint,
        )
        code, output = dry_deploy(tmp_path, data, {"RC_TEST_GITLAB_TOKEN": API_TOKEN})
    assert code == 0, output
    assert gitlab.calls_to("GET", "/projects/acme%2Fapp")  # the plan looked the project up ...
    assert gitlab.calls_to("POST") == [] and gitlab.runners == {}  # ... and left GitLab as it was


def test_a_dry_run_creates_no_runner_and_checks_the_key(gitlab: GitLabStandIn, repo: AptRepo, tmp_path: Path) -> None:
    with serve_apt_repo(repo) as url:
        data = api_data(
            gitlab,
            gitlab_runner_apt_repo=f"{url}/",
            gitlab_runner_apt_key_url=f"{url}/gpg.key",
            gitlab_runner_apt_key_fingerprint=GITLAB_KEY_FINGERPRINT,
        )
        one_error(tmp_path, data, {"RC_TEST_GITLAB_TOKEN": API_TOKEN}, "gitlab_runner_apt_key_url", "not the pinned")
    assert gitlab.calls_to("POST") == [] and gitlab.runners == {}


def test_the_rehearsal_world_points_the_layer_at_working_stand_ins(tmp_path: Path) -> None:
    with rehearsal_world("127.0.0.1", API_TOKEN, tmp_path) as world:
        mine = validate_host_data(world.group_data).of(GitLabRunnerSettings)
        assert len(mine.gitlab_runner_registrations) == 2 and "stand-in" in world.summary
        key = httpx.get(mine.gitlab_runner_apt_key_url, timeout=30).content
        assert pinned_keyring(key, mine.gitlab_runner_apt_key_fingerprint)
        release = httpx.get(f"{mine.gitlab_runner_apt_repo}dists/bookworm/InRelease", timeout=30)
        assert release.status_code == 200 and b"BEGIN PGP SIGNED MESSAGE" in release.content
        with gitlab_client(mine.gitlab_runner_api_url, API_TOKEN, token_what="GITLAB_TOKEN") as api:  # noqa: S106
            assert namespace_id(api, "project", "acme/tools") == 43
