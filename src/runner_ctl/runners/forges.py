"""The forge a ``runners`` command talks to: which API, which scope, which token; list and delete.

Binds the forge-neutral commands to ``runner_ctl.forge.github_runners`` and
``runner_ctl.forge.gitlab_runners``; both answer with ``RunnerInfo``.
"""

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from runner_ctl.clikit import check_http_url, check_text
from runner_ctl.errors import UsageError
from runner_ctl.forge import github_runners, gitlab_runners
from runner_ctl.forge.github import GITHUB_API, REPO_PATTERN
from runner_ctl.forge.gitlab import GITLAB_API
from runner_ctl.forge.runners import RunnerInfo

__all__ = ["FORGE_FLAGS", "ForgeSession", "Target", "connect", "resolve_target"]

_ORG = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$")  # GitHub: letters, digits, inner hyphens
FORGE_FLAGS = "--github OWNER/REPO, --github-org ORG or --gitlab PROJECT_OR_GROUP"


@dataclass(frozen=True)
class Target:
    """Where the runners are: ``forge`` is ``github`` or ``gitlab``; ``scope`` as the user gave it."""

    forge: str
    scope: str
    api_url: str

    @property
    def token_env(self) -> str:
        return "GITHUB_TOKEN" if self.forge == "github" else "GITLAB_TOKEN"

    @property
    def label_word(self) -> str:
        return "labels" if self.forge == "github" else "tags"

    def describe(self) -> str:
        return f"{'GitHub' if self.forge == 'github' else 'GitLab'} {self.scope}"


def resolve_target(github: str | None, github_org: str | None, gitlab: str | None, api_url: str | None) -> Target:
    """The one forge flag given, checked; UsageError for none, several or a malformed one."""
    given = [flag for flag, value in (("--github", github), ("--github-org", github_org), ("--gitlab", gitlab))
             if value is not None]  # fmt: skip
    if len(given) != 1:
        also = f" (got {' and '.join(given)})" if given else ""
        raise UsageError(f"give exactly one of {FORGE_FLAGS}{also}")
    if github is not None:
        if not REPO_PATTERN.fullmatch(github):
            raise UsageError(f"--github {github!r} is not OWNER/REPO; e.g. --github acme/app")
        forge, scope = "github", github
    elif github_org is not None:
        if not _ORG.fullmatch(github_org):
            raise UsageError(f"--github-org {github_org!r} is not an organization name; e.g. --github-org acme")
        forge, scope = "github", github_org
    else:
        forge, scope = "gitlab", check_text(gitlab or "", "--gitlab", example="acme/app")
        if scope != scope.strip() or "//" in scope or scope.strip("/") != scope:
            raise UsageError(f"--gitlab {scope!r} is not a project or group; give its id or path, e.g. acme/app")
    default = GITHUB_API if forge == "github" else GITLAB_API
    url = default if api_url is None else check_http_url(api_url, "--api-url", example=default)
    return Target(forge, scope, url.rstrip("/"))


@dataclass(frozen=True)
class ForgeSession:
    """What the commands need of a forge: its runners in the target, and deleting one by id."""

    list_runners: Callable[[], list[RunnerInfo]]
    delete_runner: Callable[[int], None]


@contextlib.contextmanager
def connect(target: Target, token: str) -> Iterator[ForgeSession]:
    """A session on ``target``'s API; its HTTP connections close when the block ends."""
    scope = target.scope
    if target.forge == "github":
        client = github_runners.github_client(target.api_url, token, token_what=target.token_env)
        session = ForgeSession(
            lambda: github_runners.list_runners(client, scope),
            lambda runner_id: github_runners.delete_runner(client, scope, runner_id),
        )
    else:
        client = gitlab_runners.gitlab_client(target.api_url, token, token_what=target.token_env)
        session = ForgeSession(
            lambda: gitlab_runners.list_runners(client, scope),
            lambda runner_id: gitlab_runners.delete_runner(client, runner_id),
        )
    with client:
        yield session
