"""GitLab's runner API client (runner_ctl.forge.gitlab_runners) against the loopback stand-in of GitLab."""

from collections.abc import Iterator

import pytest

from runner_ctl.errors import ConfigError
from runner_ctl.forge.gitlab_runners import (
    create_runner,
    delete_runner,
    gitlab_client,
    list_runners,
    namespace_id,
    set_tags,
    verify,
)
from runner_ctl.forge.rest import NotFoundError, RestClient
from tests.standins.gitlab_api import GitLabStandIn

WHAT = "gitlab_runner_api_token (env:GITLAB_TOKEN)"


@pytest.fixture
def gitlab() -> Iterator[GitLabStandIn]:
    standin = GitLabStandIn()
    standin.add_project("acme/tools", 43)
    standin.add_group("acme", 7)
    with standin.running():
        yield standin


def client(standin: GitLabStandIn, token: str | None = None) -> RestClient:
    return gitlab_client(f"{standin.url}/api/v4", token or standin.token, token_what=WHAT)


@pytest.fixture
def api(gitlab: GitLabStandIn) -> Iterator[RestClient]:
    with client(gitlab) as made:
        yield made


def test_create_verify_retag_and_delete_a_project_runner(gitlab: GitLabStandIn, api: RestClient) -> None:
    project = namespace_id(api, "project", "acme/app")
    created = create_runner(api, "project_type", description="rc-ci-1", tags=("bazel", "linux"), namespace=project)
    assert created.token.startswith("glrt-") and created.token not in repr(created)
    assert verify(api, created.token, token_what="the runner token")  # noqa: S106 - a description == created.id
    [info] = list_runners(api, "acme/app")
    assert (info.id, info.name, info.labels, info.online, info.busy) == (
        created.id,
        "rc-ci-1",
        ("bazel", "linux"),
        False,
        False,
    )

    set_tags(api, created.id, ("bazel", "arm64"))
    assert gitlab.runners[created.id].tags == ["bazel", "arm64"]
    # The tag change is a PUT on the same runner: no second POST /user/runners.
    assert len(gitlab.calls_to("POST", "/user/runners")) == 1
    assert gitlab.calls_to("PUT") == [("PUT", f"/api/v4/runners/{created.id}", {"tag_list": ["bazel", "arm64"]})]

    delete_runner(api, created.id)
    assert list_runners(api, "acme/app") == []


def test_the_creation_body_names_the_namespace_as_gitlab_wants_it(gitlab: GitLabStandIn, api: RestClient) -> None:
    create_runner(api, "group_type", description="rc-g", tags=("a",), namespace=namespace_id(api, "group", "acme"))
    create_runner(api, "instance_type", description="rc-i", tags=("b", "c"))
    bodies = [body for _, _, body in gitlab.calls_to("POST", "/user/runners")]
    assert bodies[0] == {"runner_type": "group_type", "description": "rc-g", "tag_list": "a", "run_untagged": False,
                         "group_id": 7}  # fmt: skip
    assert bodies[1]["tag_list"] == "b,c" and "group_id" not in bodies[1] and "project_id" not in bodies[1]


def test_list_pages_through_every_runner_with_busy_and_contact_time(gitlab: GitLabStandIn, api: RestClient) -> None:
    made = [gitlab.add_runner(f"rc-ci-{n}", project="acme/app", tags=[f"t{n}"]) for n in range(130)]
    gitlab.set_runner(made[3].id, busy=True)
    gitlab.set_runner(made[4].id, status="offline", contacted_at=1_700_000_000.0)
    found = list_runners(api, "acme/app")
    assert [r.id for r in found] == [r.id for r in made]
    assert [r.name for r in found if r.busy] == ["rc-ci-3"]
    offline = [r for r in found if not r.online]
    assert [(r.name, r.status, r.contacted_at) for r in offline] == [("rc-ci-4", "offline", 1_700_000_000.0)]
    assert len(gitlab.calls_to("GET", "/projects/acme%2Fapp/runners")) == 2  # 100 a page


def test_a_group_and_the_instance_are_listed_too(gitlab: GitLabStandIn, api: RestClient) -> None:
    gitlab.add_runner("rc-group", runner_type="group_type", group="acme")
    gitlab.add_runner("rc-shared", runner_type="instance_type")
    gitlab.add_runner("rc-project", project="acme/tools")
    assert [r.name for r in list_runners(api, "acme")] == ["rc-group"]  # not a project: tried as a group
    assert [r.name for r in list_runners(api, "instance")] == ["rc-shared"]
    assert [r.name for r in list_runners(api, "43")] == ["rc-project"]


def test_a_target_that_is_neither_project_nor_group_is_one_404_line(api: RestClient) -> None:
    with pytest.raises(NotFoundError) as caught:
        list_runners(api, "acme/missing")
    assert "no such project, group or runner" in str(caught.value) and WHAT in str(caught.value)


def test_a_rejected_token_names_its_source_never_its_value(gitlab: GitLabStandIn) -> None:
    wrong = "glpat-wrong-token-value"
    with client(gitlab, wrong) as api, pytest.raises(ConfigError) as caught:
        create_runner(api, "instance_type", description="x", tags=())
    message = str(caught.value)
    assert "HTTP 401" in message and WHAT in message and wrong not in message and "\n" not in message


def test_a_token_without_create_runner_scope_is_told_so() -> None:
    standin = GitLabStandIn(scopes=frozenset({"read_api"}))
    with (
        standin.running(),
        gitlab_client(
            f"{standin.url}/api/v4", standin.token, token_what=WHAT, permission="the create_runner scope"
        ) as api,
        pytest.raises(ConfigError) as caught,
    ):
        create_runner(api, "project_type", description="x", tags=(), namespace=42)
    assert "HTTP 403" in str(caught.value) and "create_runner scope" in str(caught.value)
    assert standin.runners == {}


def test_an_unknown_runner_token_is_one_line_without_the_token(api: RestClient) -> None:
    token = "glrt-not-known-to-gitlab"  # noqa: S105 - a made-up token
    with pytest.raises(ConfigError) as caught:
        verify(api, token, token_what="gitlab_runner_registrations[0].token (env:RT)")  # noqa: S106
    message = str(caught.value)
    assert "env:RT" in message and token not in message and "\n" not in message


def test_deleting_a_runner_that_is_gone_is_a_404(api: RestClient) -> None:
    with pytest.raises(NotFoundError):
        delete_runner(api, 123456)
