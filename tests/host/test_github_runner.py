"""Host checks for the GitHub Actions runner layer (deploys/github_runner.py).

The rehearsal's default group data has no registrations, so the layer installed nothing.
These checks deploy it against the stand-ins of tests/standins/github_runner_rehearsal.py —
the GitHub REST API on the controller's end of the host's veth, a release download on the
operator's loopback — with two repositories on the host, one runner each, and then:

- the services are active and run as the runner user, and GitHub (the stand-in) lists both;
- no token is in any argument list seen during the deploy, the journal, or a file others can read;
- a second deploy changes nothing and asks for no token;
- a label change is one PUT to the labels API, with no new registration and no restart;
- a new release version is extracted in place, keeping the registration;
- a registration dropped from the list is deregistered (its slot carries the prefix);
- ``present: False`` deregisters the rest and leaves nothing behind.

They run in order (each starts from the state the one before left); at the end the layer's
registrations are removed whatever happened, and the host is deployed with its own data again.
Every deploy here carries the host's saved data for the other layers, so they (and runners a
rehearsal registered through its stand-ins) stay as they were.
Their runners carry a prefix of their own (``rct-``), so runners a rehearsal registered with
the default prefix are neither touched nor pruned by them.
"""

import json
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from deploys.github_runner import unit_name
from tests.standins.forge_api import Reply
from tests.standins.github_api import GitHubStandIn
from tests.standins.github_runner_rehearsal import (
    REPOSITORIES,
    VERSIONS,
    RehearsalWorld,
    operator_token,
    registrations,
    rehearsal_world,
)
from tests.test_deploy_safety import _pyinfra

from runner_ctl.hostdata import HostSettings
from runner_ctl.layers.base import BaseLayerSettings
from runner_ctl.layers.github_runner import RUNNER_ROOT
from runner_ctl.pyinfra_run import parse_results
from runner_ctl.rehearse import standins_dir
from runner_ctl.testhost import DisposableHost

pytestmark = pytest.mark.host

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PREFIX = "rct-"
SECRET_ROOTS = "/etc /opt /root /home /tmp /var/tmp /var/lib /var/log /var/backups /run /srv"  # noqa: S105 - paths
ARGV_LOG = "/root/.runner-ctl-argv-samples"
# Samples every process's argument list while a deploy registers runners: bounded (300 s, or
# until the stop file appears), root-only output.
SAMPLER = (
    f"umask 077; : > {ARGV_LOG}; end=$(( $(date +%s) + 300 )); "
    "while [ $(date +%s) -lt $end ] && [ ! -e /run/runner-ctl-argv.stop ]; do "
    f"for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f 2>/dev/null; echo; done >> {ARGV_LOG}; sleep 0.02; done"
)


@dataclass
class Runners:
    test_host: DisposableHost
    world: RehearsalWorld
    runner_user: str
    data_dir: str
    saved: dict[str, Any]  # every key as the host was deployed (a rehearsal's stand-in data included)
    live_layers: list[str]  # the host's layers that can be deployed again (conftest.live_layers)
    tmp: Path
    names: list[str]
    operator_token: str
    slots_before: list[str]

    @property
    def api(self) -> GitHubStandIn:
        return self.world.api

    def deploy(self, label: str, **overrides: Any) -> tuple[int, tuple[str, ...], str]:
        """Deploy the host's layers plus this one with the world's data and ``overrides``."""
        done = self.run(label, **overrides)
        assert done.returncode == 0, f"{label} failed (log {self.tmp / label}.log): {done.stderr[-3000:]}"
        _, changed, errors, names = parse_results(json.loads(done.stdout))
        assert errors == 0, names
        return changed, names, done.stdout + done.stderr

    def run(self, label: str, **overrides: Any) -> subprocess.CompletedProcess[str]:
        # The other layers keep the data they were deployed with (their stand-ins' too).
        data = {
            **self.saved,
            **self.world.group_data,
            "layers": [*(layer for layer in self.live_layers if layer != "github_runner"), "github_runner"],
            "github_runner_name_prefix": PREFIX,
            **overrides,
        }
        group_data = self.tmp / label
        group_data.mkdir()
        (group_data / "all.py").write_text("".join(f"{key} = {value!r}\n" for key, value in data.items()))
        done = _pyinfra(self.test_host, PROJECT_ROOT / "deploys" / "runner_host.py", "--json", "--group-data",
                        str(group_data))  # fmt: skip
        (self.tmp / f"{label}.log").write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
        return done

    def remote(self, command: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ssh", "-F", self.test_host.ssh_config, "-o", "BatchMode=yes", self.test_host.name, command],
            input=stdin, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    def units(self) -> list[str]:
        return [unit_name(repo, name) for repo, name in zip(REPOSITORIES, self.names, strict=True)]


@pytest.fixture(scope="module")
def runners(
    test_host: DisposableHost, settings: HostSettings, live_layers: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runners]:
    base = settings.of(BaseLayerSettings)
    # On a test host every secret reference resolves to its stand-in: the API must accept that one.
    token = operator_token(standins_dir(test_host))
    tmp = tmp_path_factory.mktemp("github-runner")
    with rehearsal_world(test_host.controller_address, token, tmp) as world:
        names = [f"{PREFIX}{test_host.name}-{repo.split('/')[1]}-1" for repo in REPOSITORIES]
        state = Runners(
            test_host, world, base.runner_user, base.data_dir, settings.dump(), live_layers, tmp, names, token, []
        )
        state.slots_before = state.remote(f"ls -A {RUNNER_ROOT} 2>/dev/null || true").stdout.split()
        try:
            yield state
        finally:
            state.deploy("cleanup", github_runner_registrations=registrations(present=False))
            # The host as it was deployed: this layer's own registrations (a rehearsal's) included,
            # while the stand-ins they name still run.
            if "github_runner" in live_layers:
                restore = tmp / "restore"
                restore.mkdir()
                saved = "".join(f"{key} = {value!r}\n" for key, value in state.saved.items())
                (restore / "all.py").write_text(saved)
                _pyinfra(test_host, PROJECT_ROOT / "deploys" / "runner_host.py", "--group-data", str(restore))


def _tokens(state: Runners) -> list[str]:
    return [state.operator_token, *state.api.issued]


def test_both_repositories_get_an_active_runner_running_as_the_runner_user(runners: Runners) -> None:
    started = runners.remote(f"nohup sh -c {shlex.quote(SAMPLER)} >/dev/null 2>&1 &")
    assert started.returncode == 0, started.stderr
    try:
        changed, _, output = runners.deploy("first")
    finally:
        runners.remote("touch /run/runner-ctl-argv.stop")
    assert changed > 0
    assert "Register" in output
    for unit, name, repo in zip(runners.units(), runners.names, REPOSITORIES, strict=True):
        active = runners.remote(f"systemctl is-active {unit}; systemctl is-enabled {unit}")
        assert active.stdout.split() == ["active", "enabled"], (unit, active.stdout, active.stderr)
        pid = runners.remote(f"systemctl show -p MainPID --value {unit}").stdout.strip()
        user = runners.remote(f"ps -o user= -p {pid}").stdout.strip()
        assert user == runners.runner_user, (unit, pid, user)
        unit_text = runners.remote(f"systemctl cat {unit}").stdout
        for line in ("KillMode=process", f"User={runners.runner_user}", "Restart=on-failure"):
            assert line in unit_text.splitlines(), unit_text
        listed = runners.api.runners(f"/repos/{repo}")
        assert [(runner["name"], runner["status"]) for runner in listed] == [(name, "online")]
        custom = [label["name"] for label in listed[0]["labels"] if label["type"] == "custom"]
        assert custom == ["bazel"]
        config = json.loads(runners.remote(f"cat {RUNNER_ROOT}/{name}/.runner").stdout)
        assert config["workFolder"] == f"{runners.data_dir}/actions-runner/{name}"
        assert config["gitHubUrl"] == f"{runners.api.url}/{repo}"
        assert config["disableUpdate"] is True  # the pinned release is what runs
    assert len(runners.api.calls_to("POST", "/actions/runner-registration")) == 2


def test_no_token_in_argv_journal_or_a_readable_file(runners: Runners) -> None:
    tokens = _tokens(runners)
    assert len(tokens) >= 3  # the operator's and one registration token per runner
    patterns = "\n".join(tokens) + "\n"
    # The patterns travel on stdin into a root-only file: never in an argument list themselves.
    holder = "/root/.runner-ctl-token-patterns"
    assert runners.remote(f"umask 077; cat > {holder}", stdin=patterns).returncode == 0
    try:
        sampled = runners.remote(f"wc -l < {ARGV_LOG}; grep -cF -f {holder} {ARGV_LOG} || true").stdout.split()
        assert int(sampled[0]) > 0, "the argv sampler saw nothing"
        assert sampled[1] == "0", "a token was in a process's argument list during the deploy"
        journal = runners.remote(f"journalctl --no-pager -o cat | grep -cF -f {holder} || true").stdout.strip()
        assert journal == "0", "a token is in the journal"
        found = runners.remote(
            f"grep -rlsF -D skip -f {holder} {SECRET_ROOTS} | grep -vx -e {holder} -e {ARGV_LOG} || true"
        ).stdout.split()
        for path in found:
            readable = runners.remote(f"runuser -u nobody -- test -r {shlex.quote(path)}").returncode == 0
            assert not readable, f"{path} holds a token and any user can read it"
        assert runners.remote(f"ls -A {RUNNER_ROOT}/.tokens").stdout.split() == [".runner-ctl-staging"]
    finally:
        runners.remote(f"rm -f {holder} {ARGV_LOG} /run/runner-ctl-argv.stop")


def test_a_second_deploy_changes_nothing(runners: Runners) -> None:
    before = len(runners.api.calls)
    changed, names, _ = runners.deploy("second")
    assert changed == 0, names
    assert not [call for call in runners.api.calls[before:] if call[0] != "GET"]


def test_a_label_change_goes_through_the_labels_api(runners: Runners) -> None:
    # Refused first (the token lost its permission since the deploy read the runners): one line, no traceback.
    runners.api.write_faults.append(Reply(403, {"message": "Resource not accessible by integration"}))
    refused = runners.run("labels-refused", github_runner_registrations=registrations(("bazel", "big-disk")))
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "Traceback" not in output
    assert len([line for line in output.splitlines() if "HTTP 403" in line and "administration: write" in line]) == 1
    pids = [runners.remote(f"systemctl show -p MainPID --value {unit}").stdout.strip() for unit in runners.units()]
    before = len(runners.api.calls)
    changed, _, _ = runners.deploy("labels", github_runner_registrations=registrations(("bazel", "big-disk")))
    assert changed == 2
    writes = [call for call in runners.api.calls[before:] if call[0] != "GET"]
    assert [(method, path.rsplit("/", 1)[-1], body) for method, path, body in writes] == [
        ("PUT", "labels", {"labels": ["bazel", "big-disk"]}),
        ("PUT", "labels", {"labels": ["bazel", "big-disk"]}),
    ]
    for repo in REPOSITORIES:
        [runner] = runners.api.runners(f"/repos/{repo}")
        assert [label["name"] for label in runner["labels"] if label["type"] == "custom"] == ["bazel", "big-disk"]
    after = [runners.remote(f"systemctl show -p MainPID --value {unit}").stdout.strip() for unit in runners.units()]
    assert after == pids, "a label change restarted a runner"
    again, names, _ = runners.deploy("labels-again", github_runner_registrations=registrations(("bazel", "big-disk")))
    assert again == 0, names


def test_a_new_version_is_extracted_in_place(runners: Runners) -> None:
    ids = [runner["id"] for runner in runners.api.runners()]
    older = VERSIONS[0]
    data = {**runners.world.release_data(older), "github_runner_registrations": registrations(("bazel", "big-disk"))}
    changed, _, _ = runners.deploy("older-version", **data)
    assert changed > 0
    for unit, name in zip(runners.units(), runners.names, strict=True):
        assert runners.remote(f"{RUNNER_ROOT}/{name}/bin/Runner.Listener --version").stdout.strip() == older
        assert runners.remote(f"systemctl is-active {unit}").stdout.strip() == "active"
    assert [runner["id"] for runner in runners.api.runners()] == ids, "the upgrade registered again"
    assert runners.remote(f"ls {RUNNER_ROOT}/.releases").stdout.split() == [f"actions-runner-linux-x64-{older}.tar.gz"]


def test_a_registration_dropped_from_the_list_is_deregistered(runners: Runners) -> None:
    """A prefixed slot that no registration wants any more is an orphan: deregistered and removed."""
    app_only = [item for item in registrations(("bazel", "big-disk")) if item["scope"] == REPOSITORIES[0]]
    changed, _, output = runners.deploy("drop-lib", **runners.world.release_data(VERSIONS[0]),
                                        github_runner_registrations=app_only)  # fmt: skip
    assert changed > 0
    assert f"Deregister {runners.names[1]}" in output
    assert [runner["name"] for runner in runners.api.runners()] == [runners.names[0]]
    assert runners.remote(f"test -e {RUNNER_ROOT}/{runners.names[1]}").returncode != 0
    assert runners.remote(f"test -e /etc/systemd/system/{runners.units()[1]}").returncode != 0
    assert runners.remote(f"systemctl is-active {runners.units()[0]}").stdout.strip() == "active"


def test_present_false_leaves_nothing_behind(runners: Runners) -> None:
    changed, _, output = runners.deploy("absent", github_runner_registrations=registrations(present=False))
    assert changed > 0
    assert "Deregister" in output
    assert runners.api.runners() == []
    assert len(runners.api.calls_to("POST", "/remove-token")) == 2
    assert len([call for call in runners.api.calls_to("POST", "/actions/runner-registration")
                if call[2].get("runner_event") == "remove"]) == 2  # fmt: skip
    for unit in runners.units():
        assert runners.remote(f"test -e /etc/systemd/system/{unit}").returncode != 0
        assert runners.remote(f"systemctl is-active {unit}").stdout.strip() in ("inactive", "unknown")
    for name in runners.names:
        assert runners.remote(f"test -e {RUNNER_ROOT}/{name}").returncode != 0
        assert runners.remote(f"test -e {runners.data_dir}/actions-runner/{name}").returncode != 0
        assert runners.remote(f"pgrep -f {RUNNER_ROOT}/{name}/").returncode == 1, f"{name}'s listener still runs"
    if not runners.slots_before:
        # Nothing of the layer's was on the host before: nothing of it is left.
        assert runners.remote(f"test -e {RUNNER_ROOT}").returncode != 0
        assert runners.remote(f"test -e {runners.data_dir}/actions-runner").returncode != 0
    again, names, _ = runners.deploy("absent-again", github_runner_registrations=registrations(present=False))
    assert again == 0, names
