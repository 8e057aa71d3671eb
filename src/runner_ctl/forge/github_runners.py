"""GitHub's self-hosted runner REST API: list, register, relabel and remove runners.

Endpoints (API version 2022-11-28), under a scope's prefix — ``/repos/OWNER/REPO``,
``/orgs/ORG`` or ``/enterprises/SLUG``:

- ``GET .../actions/runners?per_page=100`` (paged by ``Link``): ``{total_count, runners}``
- ``GET``/``DELETE .../actions/runners/{id}``
- ``POST .../actions/runners/registration-token`` and ``.../remove-token``: ``{token, expires_at}``
- ``PUT .../actions/runners/{id}/labels`` with ``{labels}``: replaces the custom labels

The token needs ``administration: write`` on a repository, ``organization_self_hosted_runners:
write`` on an organization (fine-grained PAT or GitHub App), or ``manage_runners:enterprise``
(classic PAT) on an enterprise; a 403 names the one its scope needs.
"""

import re
from typing import Any

from runner_ctl.errors import UsageError
from runner_ctl.forge.github import REPO_PATTERN, github_headers
from runner_ctl.forge.rest import ApiError, RestClient
from runner_ctl.forge.runners import RunnerInfo

__all__ = [
    "MAX_PAGES",
    "READ_ONLY_LABEL_TYPE",
    "custom_labels",
    "delete_runner",
    "find_runner",
    "github_client",
    "list_runners",
    "list_runners_raw",
    "registration_token",
    "remove_token",
    "scope_path",
    "scope_permission",
    "set_labels",
    "web_scope_url",
]

# 100 runners a page: 50 pages is 5,000 runners, far beyond any scope this manages.
MAX_PAGES = 50
READ_ONLY_LABEL_TYPE = "read-only"  # self-hosted, Linux, X64: set by the runner itself, never by PUT
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_ENTERPRISE = "enterprise:"


def scope_path(scope: str) -> str:
    """The API prefix of a scope: ``OWNER/REPO``, ``ORG`` or ``enterprise:SLUG``."""
    if any(part in (".", "..") for part in scope.split("/")):
        pass  # a dot segment would climb out of the scope's prefix in the URL
    elif scope.startswith(_ENTERPRISE):
        slug = scope[len(_ENTERPRISE) :]
        if _NAME.fullmatch(slug):
            return f"/enterprises/{slug}"
    elif REPO_PATTERN.fullmatch(scope):
        return f"/repos/{scope}"
    elif _NAME.fullmatch(scope):
        return f"/orgs/{scope}"
    raise UsageError(f"not a GitHub runner scope: {scope!r}; expected OWNER/REPO, ORG or enterprise:SLUG")


def web_scope_url(server_url: str, scope: str) -> str:
    """The URL ``config.sh --url`` takes for a scope: the repository's, organization's or enterprise's page."""
    path = scope_path(scope)
    base = server_url.rstrip("/")
    if path.startswith("/enterprises/"):
        return f"{base}{path}"
    return f"{base}/{scope}"


def scope_permission(scope: str) -> str:
    path = scope_path(scope)
    if path.startswith("/repos/"):
        return "administration: write"
    if path.startswith("/orgs/"):
        return "organization_self_hosted_runners: write"
    return "the manage_runners:enterprise scope"


def github_client(api_url: str, token: str, *, token_what: str) -> RestClient:
    """A client for the runner endpoints; ``token_what`` says where the token came from (never the token)."""
    return RestClient(
        forge="GitHub",
        base_url=api_url,
        auth_headers=github_headers(token),
        token_env=token_what,
        not_found=f"GitHub at {api_url} has no such repository, organization or enterprise, or the token in "
        f"{token_what} cannot see it; check the scope and the API URL",
        permission="administration: write (repository runners) or organization_self_hosted_runners: write "
        "(organization runners)",
    )


def _for(client: RestClient, scope: str) -> str:
    """The scope's prefix, with the client's 403 and 404 messages made to name this scope."""
    path = scope_path(scope)
    # One client serves one scope at a time (the layer and `runners` ask serially).
    client.permission = scope_permission(scope)
    client.not_found = (
        f"GitHub at {client.base_url} has no {scope!r}, or the token in {client.token_env} cannot see it; "
        "check the scope, the API URL and the token's access"
    )
    return path


def _runner(raw: Any) -> RunnerInfo:
    try:
        labels = tuple(str(label["name"]) for label in raw.get("labels", []))
        status = str(raw["status"])
        return RunnerInfo(
            id=int(raw["id"]),
            name=str(raw["name"]),
            online=status == "online",
            busy=bool(raw.get("busy", False)),
            labels=labels,
            status=status,
            contacted_at=None,
        )
    except (AttributeError, KeyError, TypeError, ValueError):
        raise ApiError("the GitHub API answered with an unexpected runner object; check the API URL") from None


def custom_labels(raw_labels: Any) -> list[str]:
    """The labels a PUT sets (``type: custom``), from a runner's raw ``labels``."""
    return [str(label["name"]) for label in raw_labels if label.get("type") != READ_ONLY_LABEL_TYPE]


def list_runners(client: RestClient, scope: str) -> list[RunnerInfo]:
    """Every runner registered in ``scope``, every page."""
    return [_runner(raw) for raw in list_runners_raw(client, scope)]


def list_runners_raw(client: RestClient, scope: str) -> list[dict[str, Any]]:
    """The runner objects as GitHub gives them (labels with their ``type``)."""
    path = _for(client, scope)
    found: list[dict[str, Any]] = []
    next_url: str | None = client.url(f"{path}/actions/runners", {"per_page": 100})
    for _ in range(MAX_PAGES):
        if next_url is None:
            break
        page = client.get(next_url)
        runners = page.body.get("runners") if isinstance(page.body, dict) else None
        if not isinstance(runners, list):
            raise ApiError(f"the GitHub API answered {path}/actions/runners without a runners list; check the API URL")
        found.extend(runners)
        next_url = page.next_url
    return found


def find_runner(client: RestClient, scope: str, name: str) -> RunnerInfo | None:
    """The runner called ``name`` in ``scope`` (GitHub keeps names unique per scope), if any."""
    return next((runner for runner in list_runners(client, scope) if runner.name == name), None)


def delete_runner(client: RestClient, scope: str, runner_id: int) -> None:
    path = _for(client, scope)
    client.send("DELETE", client.url(f"{path}/actions/runners/{runner_id}"))


def _token(client: RestClient, scope: str, kind: str) -> str:
    path = _for(client, scope)
    answer = client.send("POST", client.url(f"{path}/actions/runners/{kind}"))
    token = answer.get("token") if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token:
        raise ApiError(f"the GitHub API answered {path}/actions/runners/{kind} without a token; check the API URL")
    return token


def registration_token(client: RestClient, scope: str) -> str:
    """A one-hour token that registers a runner in ``scope`` (``config.sh`` takes it)."""
    return _token(client, scope, "registration-token")


def remove_token(client: RestClient, scope: str) -> str:
    """A one-hour token with which ``config.sh remove`` deregisters a runner of ``scope``."""
    return _token(client, scope, "remove-token")


def set_labels(client: RestClient, scope: str, runner_id: int, labels: list[str]) -> list[str]:
    """Replace the runner's custom labels (the read-only ones stay); the labels it has afterwards."""
    path = _for(client, scope)
    answer = client.send("PUT", client.url(f"{path}/actions/runners/{runner_id}/labels"), body={"labels": labels})
    raw = answer.get("labels") if isinstance(answer, dict) else None
    if not isinstance(raw, list):
        raise ApiError(f"the GitHub API answered the labels of runner {runner_id} without labels; check the API URL")
    return [str(label.get("name")) for label in raw if isinstance(label, dict)]
