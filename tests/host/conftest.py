"""Fixtures for the host checks.

The target is the test host named by ``RUNNER_CTL_CHECK_HOST`` (set by ``runner-ctl
rehearse``); without it, the suite's own rehearsal host (tests/conftest.py). The expected
values are the settings the deploy ran with, which rehearse saves beside the host.
"""

import json
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import testinfra

from runner_ctl.hostchecks import CHECK_HOST_ENV
from runner_ctl.hostdata import BaseLayerSettings, DeployLockSettings, HostSettings, validate_host_data
from runner_ctl.rehearse import HOST_DATA_FILE
from runner_ctl.testhost import DisposableHost, get_host


@pytest.fixture(scope="session")
def test_host(request: pytest.FixtureRequest) -> DisposableHost:
    name = os.environ.get(CHECK_HOST_ENV)
    if not name:
        report = request.getfixturevalue("rehearsal")
        assert report["host"], f"the suite's rehearsal booted no host: {report['error']}"
        name = report["host"]
    return get_host(name)


@pytest.fixture(scope="session")
def settings(test_host: DisposableHost) -> HostSettings:
    data = json.loads((Path(test_host.directory) / HOST_DATA_FILE).read_text())
    return validate_host_data(data, strict=False)


# The runner layers' registrations name a forge API; a rehearsal's is a stand-in that lives only
# as long as the rehearsal (the suite's own rehearsal host is checked again after it ended).
_RUNNER_APIS = {
    "github_runner": ("github_runner_registrations", "github_runner_api_url"),
    "gitlab_runner": ("gitlab_runner_registrations", "gitlab_runner_api_url"),
}


def _answers(url: str) -> bool:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def live_layers(settings: HostSettings) -> list[str]:
    """The host's layers that can be deployed again as they were: a runner layer whose
    registrations point at a stand-in API that has stopped since (the rehearsal ended) is left
    out, so checks that redeploy the host never touch it."""
    saved = settings.dump()
    return [
        layer
        for layer in settings.layers
        if layer not in _RUNNER_APIS
        or not saved.get(_RUNNER_APIS[layer][0])
        or _answers(str(saved[_RUNNER_APIS[layer][1]]))
    ]


@pytest.fixture(scope="session")
def base(settings: HostSettings) -> BaseLayerSettings:
    return settings.of(BaseLayerSettings)


@pytest.fixture(scope="session")
def lock(settings: HostSettings) -> DeployLockSettings:
    return settings.of(DeployLockSettings)


@pytest.fixture(scope="session")
def host(test_host: DisposableHost) -> Any:
    """testinfra over SSH, with the host's own ssh_config (its key and pinned host key)."""
    return testinfra.get_host(f"ssh://{test_host.name}", ssh_config=test_host.ssh_config)
