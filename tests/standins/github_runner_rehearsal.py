"""The GitHub runner layer's rehearsal world: every stand-in it needs, and the group data to use them.

``rehearsal_world`` starts the GitHub REST stand-in (tests/standins/github_api.py) on the
address the test host reaches, accepting the operator's ``token``, with two repositories
(``acme/app`` and ``acme/lib``), and a release download stand-in
(tests/standins/release_server.py, loopback only: the layer downloads on the operator's
machine) serving the stand-in runner tarball (tests/standins/actions_runner_release.py).
Its ``group_data`` points the layer at both, registering one runner per repository. The
host checks (tests/host/test_github_runner.py) use the same world.
"""

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner_ctl.secretrefs import resolve_secret
from tests.standins.actions_runner_release import DOWNLOAD_PATH, build_release
from tests.standins.github_api import GitHubStandIn
from tests.standins.release_server import ReleaseServer, serve_releases

__all__ = ["REPOSITORIES", "VERSIONS", "RehearsalWorld", "operator_token", "registrations", "rehearsal_world"]

# Two releases, so that an upgrade in place can be rehearsed too.
VERSIONS = ("2.320.0", "2.321.0")
REPOSITORIES = ("acme/app", "acme/lib")


@dataclass
class RehearsalWorld:
    group_data: dict[str, Any]
    summary: str
    api: GitHubStandIn
    releases: ReleaseServer

    def release_data(self, version: str) -> dict[str, Any]:
        """The group data keys that pin ``version`` of the stand-in release."""
        return {"github_runner_version": version, "github_runner_sha256": build_release(version).sha256}


def registrations(labels: tuple[str, ...] = ("bazel",), *, present: bool = True) -> list[dict[str, Any]]:
    """One runner for each stand-in repository, named after it."""
    return [
        {"scope": repo, "name": repo.split("/")[1], "labels": list(labels), "present": present} for repo in REPOSITORIES
    ]


def operator_token(standins: Path) -> str:
    """The token a deploy to a test host with stand-in secrets (``standins``) sends the API.

    ``github_runner_token`` resolves there to the stand-in generated for that key, whatever
    the reference: pass this as ``rehearsal_world``'s ``token``.
    """
    return resolve_secret("env:GITHUB_RUNNER_TOKEN", what="github_runner_token", standins=standins)


@contextlib.contextmanager
def rehearsal_world(bind_host: str, token: str, workdir: Path) -> Iterator[RehearsalWorld]:
    """The stand-ins, running until the block ends; ``workdir`` is unused (nothing is written)."""
    del workdir  # the stand-ins keep everything in memory
    api = GitHubStandIn(repo=REPOSITORIES[0], token=token, bind=bind_host)
    for repo in REPOSITORIES:
        api.add_scope(repo)
    files = {DOWNLOAD_PATH.format(version=version, arch="x64"): build_release(version).data for version in VERSIONS}
    with api.running(), serve_releases(ReleaseServer(files=files)) as releases:
        latest = VERSIONS[-1]
        group_data: dict[str, Any] = {
            "github_runner_registrations": registrations(),
            "github_runner_token": "env:GITHUB_RUNNER_TOKEN",
            "github_runner_api_url": f"{api.url}/api/v3",
            "github_runner_download_url": releases.url(DOWNLOAD_PATH),
            "github_runner_version": latest,
            "github_runner_sha256": build_release(latest).sha256,
        }
        summary = (
            f"GitHub API ({api.url}, repositories {' and '.join(REPOSITORIES)}) and actions-runner {latest} "
            "release: stand-ins on this machine"
        )
        yield RehearsalWorld(group_data, summary, api, releases)
