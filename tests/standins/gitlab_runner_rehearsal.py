"""What ``runner-ctl rehearse`` wires in for the GitLab runner layer: loopback stand-ins of GitLab.

A rehearsal host cannot reach GitLab or its package repository. This starts, on the
controller's address the test host reaches, the GitLab REST API stand-in
(tests/standins/gitlab_api.py) and a signed apt repository of stand-in ``gitlab-runner``
packages (tests/standins/gitlab_runner_package.py), and says which group data points the
layer at them: two registrations (two projects), created through the API with the
rehearsal's token, the repository's key pinned by its fingerprint.
"""

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.standins.gitlab_api import GitLabStandIn
from tests.standins.gitlab_runner_package import STANDIN_VERSION, build_apt_repo, serve_apt_repo

__all__ = ["RehearsalWorld", "rehearsal_world"]


@dataclass
class RehearsalWorld:
    group_data: dict[str, Any]  # overrides to merge into the test host's group data
    summary: str  # one line for rehearse's output
    gitlab: GitLabStandIn | None = field(default=None, repr=False)  # for checks that want the recorded calls


@contextlib.contextmanager
def rehearsal_world(bind_host: str, token: str, workdir: Path) -> Iterator[RehearsalWorld]:
    """The stand-ins on ``bind_host`` until the block ends.

    ``token`` is what the host's ``gitlab_runner_api_token`` reference resolves to on the
    test host (its stand-in secret for ``gitlab_runner_api_token``); the API stand-in accepts
    exactly that token.
    """
    gitlab = GitLabStandIn(token=token)
    gitlab.add_project("acme/tools", 43)
    gitlab.serve_on(bind_host)
    repo = build_apt_repo(workdir)
    with gitlab.running(), serve_apt_repo(repo, bind_host) as repo_url:
        yield RehearsalWorld(
            group_data={
                "gitlab_runner_registrations": [
                    {"project": "acme/app", "tags": ["bazel", "linux"]},
                    {"project": "acme/tools", "tags": ["bazel"], "name": "tools"},
                ],
                "gitlab_runner_api_url": f"{gitlab.url}/api/v4",
                "gitlab_runner_api_token": "env:GITLAB_TOKEN",
                "gitlab_runner_version": STANDIN_VERSION,
                "gitlab_runner_apt_repo": f"{repo_url}/",
                "gitlab_runner_apt_key_url": f"{repo_url}/gpg.key",
                "gitlab_runner_apt_key_fingerprint": repo.fingerprint,
            },
            summary=(
                f"GitLab API and gitlab-runner {STANDIN_VERSION} packages (signed apt repository, throwaway key "
                f"{repo.fingerprint[-16:]}): stand-ins on this machine"
            ),
            gitlab=gitlab,
        )
