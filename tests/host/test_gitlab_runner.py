"""Host checks for the GitLab runner layer (deploys/gitlab_runner.py).

GitLab and its packages are out of reach, so the layer meets stand-ins listening on the
controller's end of the host's veth: the GitLab REST API (tests/standins/gitlab_api.py,
which records every call) and a signed apt repository of stand-in ``gitlab-runner``
packages (tests/standins/gitlab_runner_package.py), reached through the layer's real path:
its key fetched and checked against the pinned fingerprint, ``signed-by``, version pinned
and held. The API token is the test host's stand-in secret for ``gitlab_runner_api_token``.

In order: two registrations (two projects) are created and run as the runner user; no token
is in any argv, journal line or world-readable file; a second deploy changes nothing; a tag
change is one ``PUT /runners/:id`` and no new registration; ``present: False`` deletes both
runners and leaves nothing on the host. At the end the layer is deployed again with the
settings the rehearsal used, so the host is as the rehearsal left it.
"""

import json
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.standins.gitlab_api import GitLabStandIn
from tests.standins.gitlab_runner_package import STANDIN_VERSION, AptRepo, build_apt_repo, serve_apt_repo
from tests.test_deploy_safety import _pyinfra

from runner_ctl.hostdata import HostSettings
from runner_ctl.layers.base import BaseLayerSettings
from runner_ctl.layers.gitlab_runner import GitLabRunnerSettings
from runner_ctl.pyinfra_run import parse_results
from runner_ctl.rehearse import standins_dir
from runner_ctl.secretrefs import _standin_name, resolve_secret  # the file a test host's stand-in secret is in
from runner_ctl.testhost import DisposableHost

pytestmark = pytest.mark.host

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TOKENS = "/etc/gitlab-runner/runner-ctl-tokens"
# Reads every runner token from the host's own files into grep's pattern list: never an argument.
TOKEN_PATTERNS = f"cat {TOKENS}/*"
SECRET_ROOTS = "/etc /opt /root /home /tmp /var/tmp /var/lib /var/log /var/backups /run /srv"  # noqa: S105 - paths
LEFT_BEHIND = (
    "/usr/bin/gitlab-runner",
    "/etc/gitlab-runner",
    "/etc/systemd/system/gitlab-runner.service",
    "/etc/systemd/system/gitlab-runner.service.d",
    "/etc/apt/sources.list.d/runner-ctl-gitlab-runner.list",
    "/etc/apt/preferences.d/runner-ctl-gitlab-runner",
    "/usr/share/keyrings/runner-ctl-gitlab-runner.gpg",
    "/home/gitlab-runner",
)


@dataclass
class World:
    test_host: DisposableHost
    gitlab: GitLabStandIn
    repo_url: str
    repo: AptRepo
    layers: list[str]
    workdir: Path

    def deploy(
        self, label: str, registrations: list[dict[str, Any]] | None, restore: dict[str, Any] | None = None
    ) -> tuple[int, tuple[str, ...]]:
        """Deploy with these registrations (None: the layer's settings in ``restore``); (changed, their names)."""
        group_data = self.workdir / label
        group_data.mkdir()
        data: dict[str, Any] = {"layers": self.layers, **(restore or {})}
        if registrations is not None:
            data.update(
                gitlab_runner_registrations=registrations,
                gitlab_runner_api_url=f"{self.gitlab.url}/api/v4",
                gitlab_runner_api_token="env:RC_TEST_GITLAB_TOKEN",  # noqa: S106 - a reference (a stand-in on a test host)
                gitlab_runner_version=STANDIN_VERSION,
                gitlab_runner_apt_repo=f"{self.repo_url}/",
                gitlab_runner_apt_key_url=f"{self.repo_url}/gpg.key",
                gitlab_runner_apt_key_fingerprint=self.repo.fingerprint,
                gitlab_runner_check_interval=1,
            )
        (group_data / "all.py").write_text("".join(f"{key} = {value!r}\n" for key, value in data.items()))
        done = _pyinfra(self.test_host, PROJECT_ROOT / "deploys" / "runner_host.py", "--json", "--group-data",
                        str(group_data))  # fmt: skip
        (self.workdir / f"{label}.log").write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
        assert done.returncode == 0, f"{label} failed (log: {self.workdir / label}.log): {done.stderr[-3000:]}"
        _, changed, errors, names = parse_results(json.loads(done.stdout))
        assert errors == 0, done.stderr[-3000:]
        return changed, names


TWO = [
    {"project": "acme/app", "tags": ["bazel", "linux"]},
    {"project": "acme/tools", "tags": ["bazel"], "name": "tools"},
]


@pytest.fixture(scope="module")
def world(
    test_host: DisposableHost, settings: HostSettings, live_layers: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("gitlab-runner")
    # What the host's reference resolves to: the stand-in secret of this test host.
    token = resolve_secret("env:UNUSED", what="gitlab_runner_api_token", standins=standins_dir(test_host))
    gitlab = GitLabStandIn(token=token)
    gitlab.add_project("acme/tools", 43)
    gitlab.serve_on(test_host.controller_address)
    repo = build_apt_repo(workdir)
    layers = [*(layer for layer in live_layers if layer != "gitlab_runner"), "gitlab_runner"]
    with gitlab.running(), serve_apt_repo(repo, test_host.controller_address) as url:
        made = World(test_host, gitlab, url, repo, layers, workdir)
        try:
            made.deploy("deploy-two-runners", TWO)
            yield made
        finally:
            # As the rehearsal deployed it, while the stand-ins it names still run.
            if "gitlab_runner" in live_layers:
                made.deploy("deploy-restore", None, settings.of(GitLabRunnerSettings).model_dump(mode="json"))


def _runner(world: World, project_id: int) -> Any:
    found = [r for r in world.gitlab.runners.values() if r.project_ids == [project_id]]
    assert len(found) == 1, [r.description for r in world.gitlab.runners.values()]
    return found[0]


def test_two_projects_get_a_runner_each_running_as_the_runner_user(
    world: World, host: Any, settings: HostSettings
) -> None:
    runner_user = settings.of(BaseLayerSettings).runner_user
    created = world.gitlab.calls_to("POST", "/user/runners")
    assert sorted(body["project_id"] for _, _, body in created) == [42, 43]
    app, tools = _runner(world, 42), _runner(world, 43)
    host_part = world.test_host.name
    assert (app.description, tools.description) == (f"rc-{host_part}-1", f"rc-{host_part}-tools-1")
    assert app.tags == ["bazel", "linux"] and tools.tags == ["bazel"]
    service = host.service("gitlab-runner")
    assert service.is_running and service.is_enabled
    pid = host.check_output("systemctl show -p MainPID --value gitlab-runner")
    assert host.check_output(f"ps -o user= -p {pid}").strip() == runner_user
    # Both runners talk to GitLab with their tokens: the stand-in sees them poll for jobs.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (app.status == tools.status == "online"):
        time.sleep(1)
    assert app.status == tools.status == "online", (app.status, tools.status)
    config = host.file("/etc/gitlab-runner/config.toml")
    assert (config.user, config.mode) == (runner_user, 0o600)
    assert config.content_string.count("[[runners]]") == 2 and 'executor = "shell"' in config.content_string
    dropin = host.file("/etc/systemd/system/gitlab-runner.service.d/runner-ctl.conf").content_string
    assert "KillSignal=SIGQUIT" in dropin and "KillMode=process" in dropin
    held = host.check_output("apt-mark showhold").split()
    assert sorted(held) == ["gitlab-runner", "gitlab-runner-helper-images"]
    assert host.package("gitlab-runner").version == f"{STANDIN_VERSION}-1"


def test_no_token_in_any_argv_journal_line_or_world_readable_file(world: World, host: Any) -> None:
    assert host.run(f"{TOKEN_PATTERNS} | grep -c glrt-").stdout.strip() == "2"
    cmdlines = host.run(
        "t=$(mktemp); for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f 2>/dev/null; echo; done > $t; "
        f"{TOKEN_PATTERNS} | grep -cF -f - $t; rm -f $t"
    )
    assert cmdlines.stdout.strip() == "0", "a runner token is in a process's argument list"
    journal = host.run(f"t=$(mktemp); journalctl --no-pager -o cat > $t; {TOKEN_PATTERNS} | grep -cF -f - $t; rm -f $t")
    assert journal.stdout.strip() == "0", "a runner token is in the journal"
    found = host.check_output(f"{TOKEN_PATTERNS} | grep -rlsF -D skip -f - {SECRET_ROOTS} || true").split()
    assert "/etc/gitlab-runner/config.toml" in found
    for path in found:
        readable = host.run(f"runuser -u nobody -- test -r {shlex.quote(path)}").rc == 0
        assert not readable, f"{path} holds a runner token and any user can read it"


def test_a_second_deploy_changes_nothing(world: World) -> None:
    changed, names = world.deploy("deploy-again", TWO)
    assert changed == 0, names


def test_a_tag_change_goes_through_the_api_without_a_new_registration(world: World, host: Any) -> None:
    app = _runner(world, 42)
    before = len(world.gitlab.calls_to("POST", "/user/runners"))
    token_file = host.check_output(f"sha256sum {TOKENS}/{app.description}")
    retagged = [{**TWO[0], "tags": ["bazel", "linux", "arm64"]}, TWO[1]]
    changed, names = world.deploy("deploy-retag", retagged)
    assert changed >= 1, names
    assert world.gitlab.calls_to("PUT") == [
        ("PUT", f"/api/v4/runners/{app.id}", {"tag_list": ["bazel", "linux", "arm64"]})
    ]
    assert len(world.gitlab.calls_to("POST", "/user/runners")) == before
    assert app.tags == ["bazel", "linux", "arm64"] and world.gitlab.runners[app.id] is app
    assert host.check_output(f"sha256sum {TOKENS}/{app.description}") == token_file
    again, names = world.deploy("deploy-retag-again", retagged)
    assert again == 0, names


def test_present_false_deletes_the_runners_and_leaves_nothing_behind(
    world: World, host: Any, settings: HostSettings
) -> None:
    ids = {r.id for r in world.gitlab.runners.values()}
    assert len(ids) == 2
    gone = [{**registration, "present": False} for registration in TWO]
    world.deploy("deploy-absent", gone)
    assert world.gitlab.runners == {}
    deleted = {path for _, path, _ in world.gitlab.calls_to("DELETE")}
    assert deleted == {f"/api/v4/runners/{runner_id}" for runner_id in ids}
    assert not host.package("gitlab-runner").is_installed
    assert not host.package("gitlab-runner-helper-images").is_installed
    for path in LEFT_BEHIND:
        assert not host.file(path).exists, f"{path} is left behind"
    assert not host.file(f"{settings.of(BaseLayerSettings).data_dir}/gitlab-runner").exists
    assert not host.user("gitlab-runner").exists
    assert host.run("pgrep -f gitlab-runner").rc == 1
    assert "gitlab-runner" not in host.check_output("apt-mark showhold")
    again, names = world.deploy("deploy-absent-again", gone)
    assert again == 0, names


def test_a_runner_made_in_gitlab_joins_through_its_token_reference(world: World, host: Any) -> None:
    made = world.gitlab.add_runner("made in the UI", project="acme/app", tags=["old"], status="never_contacted")
    # On a test host every reference resolves to its stand-in secret: make that the runner's token.
    what = "gitlab_runner_registrations[1].token (env:…)"
    standin = standins_dir(world.test_host) / _standin_name(what)
    standin.parent.mkdir(parents=True, exist_ok=True)
    standin.write_text(made.token + "\n")
    created_before = len(world.gitlab.calls_to("POST", "/user/runners"))
    joined = [{"project": "acme/app", "tags": ["bazel"], "name": "ui", "token": "env:RC_TEST_RUNNER_TOKEN"}]
    world.deploy("deploy-token-reference", joined)
    assert len(world.gitlab.calls_to("POST", "/user/runners")) == created_before  # no new registration
    assert ("POST", "/api/v4/runners/verify", {"token": made.token}) in world.gitlab.calls_to("POST")
    assert made.tags == ["bazel"]  # set through PUT /runners/:id
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and made.status != "online":
        time.sleep(1)
    assert made.status == "online"
    assert host.service("gitlab-runner").is_running
    again, names = world.deploy("deploy-token-reference-again", joined)
    assert again == 0, names
    world.deploy("deploy-token-reference-absent", [{**joined[0], "present": False}])
    assert made.id not in world.gitlab.runners
    assert not host.file("/etc/gitlab-runner").exists
