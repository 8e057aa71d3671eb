"""Fixtures for the fleet checks: every host of a fleet of test hosts, and a shared git history.

The fleet is named by ``RUNNER_CTL_CHECK_FLEET`` (set by ``runner-ctl rehearse --hosts N``),
comma-separated in inventory order; without it, the suite's own fleet rehearsal
(tests/conftest.py). The expected values are the settings the deploy ran with, which
rehearse saves beside each host.
"""

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import testinfra

from runner_ctl.hostchecks import CHECK_FLEET_ENV
from runner_ctl.hostdata import BaseLayerSettings, HostSettings, validate_host_data
from runner_ctl.rehearse import HOST_DATA_FILE
from runner_ctl.testhost import DisposableHost, get_host

# A fixed identity and clock: the same commits have the same hashes on every host, as clones
# of one repository would, so each host's stale guard can relate the others' commits.
_HISTORY = (
    "set -e; d=$(mktemp -d); cd $d; git init -q .; "
    "export GIT_AUTHOR_NAME=ci GIT_AUTHOR_EMAIL=ci@example.invalid GIT_COMMITTER_NAME=ci "
    "GIT_COMMITTER_EMAIL=ci@example.invalid GIT_AUTHOR_DATE=2026-01-01T00:00:00Z "
    "GIT_COMMITTER_DATE=2026-01-01T00:00:00Z; "
    'for i in $(seq {count}); do git commit -q --allow-empty -m "release $i"; done; '
    "echo $d; git rev-list --reverse HEAD"
)


@dataclass(frozen=True)
class FleetHost:
    """One host of the fleet: its name, testinfra handle and a checkout of the shared history."""

    name: str
    host: Any
    repo: str

    def as_runner(self, runner: str, script: str) -> Any:
        """``script`` as the runner user in a login shell, as a CI job runs: no lock flags, no token in the env."""
        return self.host.run(f"runuser -l {runner} -c {shlex.quote(script)}")

    def deploy(self, runner: str, env: str, commit: str, command: str) -> Any:
        return self.as_runner(
            runner, f"cd {self.repo} && runner-ctl deploy --env {env} --commit {commit} --json -- {command}"
        )


@dataclass(frozen=True)
class Fleet:
    hosts: list[FleetHost]
    commits: list[str]
    runner: str
    lock_host: str

    def named(self, name: str) -> FleetHost:
        return next(h for h in self.hosts if h.name == name)

    @property
    def others(self) -> list[FleetHost]:
        """The hosts that do not run the lock service."""
        return [h for h in self.hosts if h.name != self.lock_host]


def last_json(stdout: str) -> dict[str, Any]:
    lines = stdout.strip().splitlines()
    assert lines, "the command printed nothing on stdout"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


@pytest.fixture(scope="session")
def test_hosts(request: pytest.FixtureRequest) -> list[DisposableHost]:
    names = [n for n in os.environ.get(CHECK_FLEET_ENV, "").split(",") if n]
    if not names:
        report = request.getfixturevalue("fleet_rehearsal")
        assert report["hosts"], f"the suite's fleet rehearsal booted no host: {report['error']}"
        names = report["hosts"]
    assert len(names) >= 2, f"the fleet checks need two hosts or more, got {names}"
    return [get_host(name) for name in names]


@pytest.fixture(scope="session")
def settings(test_hosts: list[DisposableHost]) -> HostSettings:
    data = json.loads((Path(test_hosts[0].directory) / HOST_DATA_FILE).read_text())
    return validate_host_data(data, strict=False)


@pytest.fixture(scope="session")
def fleet(test_hosts: list[DisposableHost], settings: HostSettings) -> Fleet:
    runner = settings.of(BaseLayerSettings).runner_user
    hosts, histories = [], []
    for each in test_hosts:
        handle = testinfra.get_host(f"ssh://{each.name}", ssh_config=each.ssh_config)
        made = handle.run(f"runuser -l {runner} -c {shlex.quote(_HISTORY.format(count=len(test_hosts) + 2))}")
        assert made.rc == 0, made.stderr
        repo, *commits = made.stdout.split()
        hosts.append(FleetHost(each.name, handle, repo))
        histories.append(commits)
    assert all(h == histories[0] for h in histories), "the hosts' histories differ"
    # The layer's rule: the group's deploy_lock_host, else the first host of the inventory.
    lock_host = settings.dump().get("deploy_lock_host") or test_hosts[0].name
    return Fleet(hosts, histories[0], runner, lock_host)
