"""Host checks for the Bazel layer (deploys/bazel.py), with the real Bazel on the host.

Test hosts take Bazel from apt (``runner_ctl.layers.bazel.TESTHOST_DATA``): Debian's
bazel-bootstrap, which builds the genrule workspace under tests/workspaces/ offline.
"""

import shlex
import time
from typing import Any

import pytest
from tests.standins.actions_runner import cleanup_command
from tests.workspaces import GENRULES, copy_to_host

from runner_ctl.hostdata import HostSettings
from runner_ctl.layers.base import BaseLayerSettings
from runner_ctl.layers.bazel import TESTHOST_DATA, BazelSettings
from runner_ctl.testhost import DisposableHost

pytestmark = pytest.mark.host

PRUNE = "runner-ctl-bazel-prune"
STARTING = "Starting local Bazel server"


@pytest.fixture(scope="module")
def bazel(settings: HostSettings) -> BazelSettings:
    # The deploy ran with the test host's Bazel source (inventories/testhost.py applies it too).
    return BazelSettings.model_validate({**settings.of(BazelSettings).model_dump(), **TESTHOST_DATA})


@pytest.fixture(scope="module")
def deployed(settings: HostSettings) -> bool:
    return "bazel" in settings.layers


@pytest.fixture(scope="module")
def workspace(test_host: DisposableHost, base: BaseLayerSettings, deployed: bool) -> str:
    dest = f"/home/{base.runner_user}/genrules"
    if deployed:
        copy_to_host(test_host, GENRULES, user=base.runner_user, dest=dest)
    return dest


class Runner:
    """Commands run as the runner user in a login shell, as a CI job's steps are."""

    def __init__(self, host: Any, user: str, workspace: str) -> None:
        self.host, self.user, self.workspace = host, user, workspace

    def run(self, command: str, *, job: str | None = None, cwd: str | None = None) -> Any:
        env = f"RUNNER_TRACKING_ID={shlex.quote(job)} " if job else ""
        script = f"cd {shlex.quote(cwd or self.workspace)} && {env}{command}"
        return self.host.run(f"runuser -l {self.user} -c {shlex.quote(script)}")

    def ok(self, command: str, **kwargs: Any) -> Any:
        done = self.run(command, **kwargs)
        assert done.rc == 0, f"{command}: exit {done.rc}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        return done

    def output_base(self, cwd: str | None = None) -> str:
        return str(self.ok("bazel info output_base", cwd=cwd).stdout.strip())

    def server_pid(self, output_base: str) -> int | None:
        done = self.host.run(f"cat {output_base}/server/server.pid.txt")
        if done.rc != 0:
            return None
        pid = int(done.stdout.strip())
        return pid if self.host.run(f"kill -0 {pid}").rc == 0 else None


@pytest.fixture(scope="module")
def runner(host: Any, base: BaseLayerSettings, workspace: str) -> Runner:
    return Runner(host, base.runner_user, workspace)


def _cleanup(host: Any, job: str) -> list[int]:
    done = host.run(cleanup_command(job))
    assert done.rc == 0, done.stderr
    return [int(pid) for pid in done.stdout.split()]


def test_files_owners_and_modes(host: Any, base: BaseLayerSettings, bazel: BazelSettings, deployed: bool) -> None:
    wrapper = host.file("/usr/local/bin/bazel")
    if not deployed:
        assert not wrapper.exists
        return
    assert (wrapper.user, wrapper.group, wrapper.mode) == ("root", "root", 0o755)
    assert wrapper.contains("^unset RUNNER_TRACKING_ID$")
    rc = host.file("/etc/bazel.bazelrc")
    assert (rc.user, rc.group, rc.mode) == ("root", "root", 0o644)
    root = f"{base.data_dir}/bazel"
    assert rc.contains(f"^startup --output_user_root={root}/output$")
    assert rc.contains(f"^startup --max_idle_secs={bazel.bazel_max_idle_secs}$")
    assert rc.contains(f"^build --repository_cache={root}/repository-cache$")
    assert rc.contains("^try-import /etc/bazel.d/buildbuddy.bazelrc$")
    assert rc.contains("^try-import /etc/bazel.d/local.bazelrc$")
    assert not rc.contains("disk_cache_gc")  # Bazel 4 has no such flag
    rc_dir = host.file("/etc/bazel.d")
    assert rc_dir.is_directory and (rc_dir.user, rc_dir.mode) == ("root", 0o755)
    for path in (root, f"{root}/output", f"{root}/repository-cache"):
        directory = host.file(path)
        assert directory.is_directory, path
        assert (directory.user, directory.group, directory.mode) == (base.runner_user, base.runner_user, 0o700), path
    prune = host.file("/usr/local/libexec/runner-ctl/bazel-prune")
    assert (prune.user, prune.group, prune.mode) == ("root", "root", 0o755)
    timer = host.service(f"{PRUNE}.timer")
    assert timer.is_enabled and timer.is_running
    # The runner's login PATH finds the wrapper, not Debian's /usr/bin/bazel.
    assert host.check_output(f"runuser -l {base.runner_user} -c 'command -v bazel'") == "/usr/local/bin/bazel"


def test_real_bazel_builds_the_workspace_with_the_rc_files(
    runner: Runner, base: BaseLayerSettings, deployed: bool
) -> None:
    if not deployed:
        return
    built = runner.ok("bazel build //...")
    assert "Build completed successfully" in built.stderr
    # The host's rc file is in effect: the output base is on the data volume.
    assert runner.output_base().startswith(f"{base.data_dir}/bazel/output/")
    announced = runner.ok("bazel build --announce_rc //:gen_0").stderr
    assert "/etc/bazel.bazelrc" in announced


def test_server_survives_the_runners_orphan_cleanup(runner: Runner, host: Any, deployed: bool) -> None:
    if not deployed:
        return
    runner.ok("bazel shutdown")
    job1 = runner.ok("bazel build //...", job="job1")
    assert STARTING in job1.stderr  # job 1's client started this server
    output_base = runner.output_base()
    pid = runner.server_pid(output_base)
    assert pid is not None
    _cleanup(host, "job1")
    assert runner.server_pid(output_base) == pid
    job2 = runner.ok("bazel build //...", job="job2")
    assert STARTING not in job2.stderr
    assert runner.server_pid(output_base) == pid


def test_without_the_wrapper_the_cleanup_kills_the_server(runner: Runner, host: Any, deployed: bool) -> None:
    """The counter-test: the same steps with the real binary, whose server inherits the job's ID."""
    if not deployed:
        return
    real = host.check_output("sed -n 's/^exec \\([^ ]*\\) .*/\\1/p' /usr/local/bin/bazel")
    assert real and real != "/usr/local/bin/bazel"
    runner.ok("bazel shutdown")
    runner.ok(f"{real} build //...", job="job3")
    output_base = runner.output_base()
    pid = runner.server_pid(output_base)
    assert pid is not None
    assert pid in _cleanup(host, "job3")
    deadline = time.monotonic() + 30
    while runner.server_pid(output_base) == pid and time.monotonic() < deadline:
        time.sleep(0.5)
    assert runner.server_pid(output_base) is None
    assert STARTING in runner.ok("bazel build //...", job="job4").stderr


def test_prune_frees_an_old_output_base_and_keeps_a_running_one(
    runner: Runner, host: Any, test_host: DisposableHost, base: BaseLayerSettings, deployed: bool
) -> None:
    if not deployed:
        return
    other = f"/home/{base.runner_user}/genrules-old"
    copy_to_host(test_host, GENRULES, user=base.runner_user, dest=other)
    runner.ok("bazel build //:gen_0", cwd=other)
    old_base = runner.output_base(cwd=other)
    runner.ok("bazel shutdown", cwd=other)
    runner.ok("bazel build //...")
    live_base = runner.output_base()
    live_pid = runner.server_pid(live_base)
    assert live_pid is not None and old_base != live_base
    for output_base in (old_base, live_base):  # both look unused for a month
        host.check_output(f"find {output_base} -maxdepth 1 -exec touch -h -d '30 days ago' {{}} +")
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    host.check_output(f"systemctl start {PRUNE}.service")
    assert not host.file(old_base).exists
    assert host.file(live_base).is_directory
    assert runner.server_pid(live_base) == live_pid
    journal = host.check_output(f"journalctl -u {PRUNE}.service --since {shlex.quote(since)} --no-pager -o cat")
    assert f"freed output base {old_base}: " in journal
    assert f"kept output base {live_base}: its Bazel server (PID {live_pid}) is running" in journal
    runner.ok("bazel build //...")  # the kept server still serves
    host.run(f"rm -rf {other}")
