"""GitLab's runner REST API (v4): create, verify, list, retag and delete runners.

The runner layer (``deploys/gitlab_runner.py``) creates runners and changes their tags on the
operator's machine; ``runner-ctl runners`` lists and prunes them. A runner's name is its
``description`` (what GitLab shows); a runner authentication token starts ``glrt-`` and is
only ever in a request body or a header, never in a URL or a message.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from runner_ctl.errors import ConfigError
from runner_ctl.forge.gitlab import gitlab_headers, gitlab_id
from runner_ctl.forge.rest import ApiError, NotFoundError, RestClient
from runner_ctl.forge.runners import RunnerInfo

__all__ = [
    "CREATE_SCOPE",
    "MAX_PAGES",
    "RUNNER_TOKEN_PREFIX",
    "CreatedRunner",
    "create_runner",
    "delete_runner",
    "get_runner",
    "gitlab_client",
    "list_runners",
    "namespace_id",
    "runner_info",
    "set_tags",
    "verify",
]

RUNNER_TOKEN_PREFIX = "glrt-"  # noqa: S105 - the prefix GitLab gives runner authentication tokens
CREATE_SCOPE = (
    "the create_runner scope (and the Maintainer role on the project, Owner on the group, admin for the instance)"
)
# 100 runners a page: 50 pages is more runners than any one project, group or instance has.
MAX_PAGES = 50

RunnerType = Literal["project_type", "group_type", "instance_type"]


def gitlab_client(api_url: str, token: str, *, token_what: str, permission: str | None = None) -> RestClient:
    """A client of the GitLab API at ``api_url`` (``…/api/v4``); ``token_what`` says where the token came from.

    ``permission`` is what a 403 says the token lacks (default: the ``manage_runner`` scope
    that listing, retagging and deleting runners need).
    """
    return RestClient(
        forge="GitLab",
        base_url=api_url,
        auth_headers=gitlab_headers(token),
        token_env=token_what,
        not_found=f"the GitLab API at {api_url} has no such project, group or runner, or the token in "
        f"{token_what} cannot see it; check the name and the token's role",
        permission=permission or "the manage_runner scope (or api) and the Maintainer role",
    )


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("id"), int):
        raise ApiError(f"the GitLab API answered {what} with an unexpected payload (no runner id); check the API URL")
    return body


def get_runner(client: RestClient, runner_id: int) -> dict[str, Any]:
    """``GET /runners/:id``: the runner's details (``tag_list``, ``contacted_at``, ``description``)."""
    return _object(client.get(client.url(f"/runners/{runner_id}")).body, f"GET /runners/{runner_id}")


def _busy(client: RestClient, runner_id: int) -> bool:
    # GitLab's runner list has no busy flag: a runner with a running job is busy.
    page = client.get(client.url(f"/runners/{runner_id}/jobs", {"status": "running", "per_page": 1}))
    return isinstance(page.body, list) and bool(page.body)


def runner_info(client: RestClient, runner_id: int) -> RunnerInfo:
    """One runner as ``RunnerInfo``: its details and whether a job runs on it."""
    details = get_runner(client, runner_id)
    status = str(details.get("status") or ("online" if details.get("online") else "offline"))
    tags = details.get("tag_list") or []
    return RunnerInfo(
        id=int(details["id"]),
        name=str(details.get("description") or ""),
        online=bool(details.get("online", status == "online")),
        busy=_busy(client, runner_id),
        labels=tuple(str(tag) for tag in tags),
        status=status,
        contacted_at=_epoch(details.get("contacted_at")),
    )


def _ids(client: RestClient, url: str) -> list[int]:
    found: list[int] = []
    next_url: str | None = url
    for _ in range(MAX_PAGES):
        if next_url is None:
            return found
        page = client.get(next_url)
        if not isinstance(page.body, list):
            raise ApiError("the GitLab API answered a runner list with something that is not a list; check the API URL")
        found.extend(
            int(item["id"]) for item in page.body if isinstance(item, dict) and isinstance(item.get("id"), int)
        )
        next_url = page.next_url
    raise ApiError(f"the GitLab runner list has more than {MAX_PAGES} pages; this is more than runner-ctl reads")


def list_runners(client: RestClient, target: str) -> list[RunnerInfo]:
    """Every runner of a project (id or path), a group, or ``"instance"``, with details and busy state.

    A project that does not exist is tried as a group (``/groups/:id/runners``) before the 404
    stands.
    """
    if target == "instance":
        ids = _ids(client, client.url("/runners/all", {"type": "instance_type", "per_page": 100}))
    else:
        try:
            ids = _ids(client, client.url(f"/projects/{gitlab_id(target)}/runners", {"per_page": 100}))
        except NotFoundError:
            ids = _ids(client, client.url(f"/groups/{gitlab_id(target)}/runners", {"per_page": 100}))
    return [runner_info(client, runner_id) for runner_id in ids]


def delete_runner(client: RestClient, runner_id: int) -> None:
    """``DELETE /runners/:id``: the runner and its token are gone."""
    client.send("DELETE", client.url(f"/runners/{runner_id}"))


def set_tags(client: RestClient, runner_id: int, tags: tuple[str, ...]) -> None:
    """``PUT /runners/:id`` with ``tag_list``: the runner keeps its id and token, only its tags change."""
    client.send("PUT", client.url(f"/runners/{runner_id}"), body={"tag_list": list(tags)})


def namespace_id(client: RestClient, kind: Literal["project", "group"], path: str) -> int:
    """The numeric id of a project or group given by id or path (``POST /user/runners`` wants the number)."""
    if path.isdigit():
        return int(path)
    body = client.get(client.url(f"/{kind}s/{gitlab_id(path)}")).body
    return int(_object(body, f"GET /{kind}s/{path}")["id"])


@dataclass(frozen=True)
class CreatedRunner:
    """A runner just created and its authentication token (never in its repr)."""

    id: int
    token: str = field(repr=False)


def create_runner(
    client: RestClient,
    runner_type: RunnerType,
    *,
    description: str,
    tags: tuple[str, ...],
    namespace: int | None = None,
    run_untagged: bool = False,
) -> CreatedRunner:
    """``POST /user/runners``: a new runner and its authentication token (``glrt-…``).

    ``namespace`` is the project id (``project_type``) or group id (``group_type``). The
    client's token needs the ``create_runner`` scope.
    """
    body: dict[str, Any] = {
        "runner_type": runner_type,
        "description": description,
        "tag_list": ",".join(tags),
        "run_untagged": run_untagged,
    }
    if runner_type == "project_type":
        body["project_id"] = namespace
    elif runner_type == "group_type":
        body["group_id"] = namespace
    answer = _object(client.send("POST", client.url("/user/runners"), body=body), "POST /user/runners")
    token = answer.get("token")
    if not isinstance(token, str) or not token.startswith(RUNNER_TOKEN_PREFIX):
        raise ApiError("the GitLab API created a runner but answered without a glrt- token; check the API URL")
    return CreatedRunner(int(answer["id"]), token)


def verify(client: RestClient, token: str, *, token_what: str) -> int:
    """``POST /runners/verify``: the id of the runner a ``glrt-`` token authenticates.

    GitLab answers 403 for a token it does not know; that is a one-line error naming where
    the token came from (``token_what``), never the token.
    """
    try:
        answer = client.send("POST", client.url("/runners/verify"), body={"token": token})
    except ConfigError as error:
        if isinstance(error, NotFoundError) or "HTTP 403" in str(error) or "HTTP 401" in str(error):
            raise ConfigError(
                f"GitLab does not know the runner token in {token_what} (it may be revoked or expired); "
                "create a runner in GitLab (Settings > CI/CD > Runners) and set the reference to its glrt- token"
            ) from None
        raise
    return int(_object(answer, "POST /runners/verify")["id"])
