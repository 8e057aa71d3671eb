"""Host checks for the BuildBuddy layer (deploys/buildbuddy.py).

The rehearsal deploys the default group data, which has no API key: the layer is off and
its files are absent. The end-to-end check then deploys with a key (the test host's
stand-in) and the remote cache pointed at a loopback-style HTTP cache stand-in listening on
the controller's end of the host's veth, builds a sample workspace as the runner user, wipes
the output base and builds again: the rebuild must be served from that cache, as Bazel's
own process summary counts it. It also looks for the key everywhere it must not be. At the
end it deploys the default group data again, so the host is as the rehearsal left it.
"""

import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.standins.remote_cache import RemoteCache, serve_remote_cache
from tests.test_deploy_safety import _pyinfra

from runner_ctl.hostdata import HostSettings
from runner_ctl.layers.base import BaseLayerSettings
from runner_ctl.layers.buildbuddy import BuildBuddySettings
from runner_ctl.rehearse import standins_dir
from runner_ctl.testhost import DisposableHost

pytestmark = pytest.mark.host

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RC_FILE = "/etc/bazel.d/buildbuddy.bazelrc"
AUTH_FILE = "/etc/bazel.d/buildbuddy-auth.bazelrc"
GENRULES = 6
# A chain of genrules (each reads the one before), so every action is a cacheable spawn.
BUILD_FILE = 'genrule(name = "step0", outs = ["step0.txt"], cmd = "echo step 0 > $@")\n' + "".join(
    f'genrule(name = "step{i}", srcs = [":step{i - 1}"], outs = ["step{i}.txt"], '
    f'cmd = "(cat $<; echo step {i}) > $@")\n'
    for i in range(1, GENRULES)
)
# Reads the key from its file into grep's pattern list: never in an argument list.
KEY_PATTERN = f"sed -n 's/.*x-buildbuddy-api-key=//p' {AUTH_FILE}"
SECRET_ROOTS = "/etc /opt /root /home /tmp /var/tmp /var/lib /var/log /var/backups /run /srv"  # noqa: S105 - paths
CACHE_HIT = re.compile(r"(\d+) remote cache hit")


def _deploy(test_host: DisposableHost, group_data: Path | None, log: Path) -> subprocess.CompletedProcess[str]:
    extra = ["--group-data", str(group_data)] if group_data else []
    done = _pyinfra(test_host, PROJECT_ROOT / "deploys" / "runner_host.py", *extra)
    log.write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    assert done.returncode == 0, f"deploy failed (log: {log}): {done.stderr[-2000:]}"
    return done


def _as_runner(host: Any, runner: str, workspace: str, command: str) -> Any:
    # A login shell: the runner's own HOME and PATH, as a CI job has them.
    return host.run(f"runuser -l {runner} -c {shlex.quote(f'cd {workspace} && {command}')}")


def test_the_default_has_no_buildbuddy_config(host: Any, settings: HostSettings) -> None:
    mine = settings.of(BuildBuddySettings)
    if "buildbuddy" in settings.layers and mine.enabled:
        assert host.file(RC_FILE).exists
        return
    assert not host.file(RC_FILE).exists
    assert not host.file(AUTH_FILE).exists


@pytest.fixture
def cache_deployed(
    test_host: DisposableHost, settings: HostSettings, tmp_path: Path
) -> Iterator[tuple[RemoteCache, str]]:
    """The host deployed with a key and the cache stand-in; afterwards, the default group data again."""
    assert "buildbuddy" in settings.layers and "bazel" in settings.layers, (
        f"the BuildBuddy checks need the bazel and buildbuddy layers; the host has {settings.layers}"
    )
    with serve_remote_cache(test_host.controller_address) as cache:
        group_data = tmp_path / "group_data"
        group_data.mkdir()
        (group_data / "all.py").write_text(
            'buildbuddy_api_key = "env:RUNNER_CTL_TEST_BUILDBUDDY_KEY"\n'  # a stand-in on a test host
            f"buildbuddy_endpoint = {cache.url(test_host.controller_address)!r}\n"
            "buildbuddy_bes = False\n"
            "buildbuddy_results_url = None\n"
        )
        try:
            _deploy(test_host, group_data, tmp_path / "deploy-with-key.log")
            [standin] = standins_dir(test_host).glob("rehearsal-buildbuddy_api_key-*")
            yield cache, standin.read_text().strip()
        finally:
            restored = _deploy(test_host, None, tmp_path / "deploy-default.log")
            assert "BuildBuddy off" in restored.stdout + restored.stderr


def test_a_rebuild_after_clean_expunge_is_served_by_the_remote_cache(
    host: Any, settings: HostSettings, cache_deployed: tuple[RemoteCache, str]
) -> None:
    cache, key = cache_deployed
    runner = settings.of(BaseLayerSettings).runner_user
    key_file = host.file(AUTH_FILE)
    assert (key_file.user, key_file.group, key_file.mode) == ("root", runner, 0o640)
    assert key in key_file.content_string
    assert key not in host.file(RC_FILE).content_string
    assert host.file(RC_FILE).mode == 0o644

    workspace = host.check_output(
        f"runuser -u {runner} -- mktemp -d {settings.of(BaseLayerSettings).data_dir}/bb-XXXXXX"
    )
    try:
        host.run_expect([0], f"runuser -u {runner} -- touch {workspace}/WORKSPACE")
        host.run_expect([0], f"printf %s {shlex.quote(BUILD_FILE)} | runuser -u {runner} -- tee {workspace}/BUILD")
        # --disk_cache= keeps a disk cache (if the Bazel layer configures one) out of the count.
        first = _as_runner(host, runner, workspace, "bazel build --disk_cache= //...")
        assert first.rc == 0, first.stderr
        assert cache.counts.puts >= GENRULES, (cache.counts, first.stderr)
        assert _as_runner(host, runner, workspace, "bazel clean --expunge").rc == 0
        served_before = cache.counts.ac_hits
        again = _as_runner(host, runner, workspace, "bazel build --disk_cache= //...")
        assert again.rc == 0, again.stderr
        hits = [int(n) for n in CACHE_HIT.findall(again.stderr)]
        assert hits and hits[-1] >= GENRULES, again.stderr
        # Served by this stand-in, not by anything local.
        assert cache.counts.ac_hits - served_before >= GENRULES, cache.counts

        # The key, with the Bazel server up: in no process's argv ...
        cmdlines = host.run(
            "t=$(mktemp); for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f 2>/dev/null; echo; done > $t; "
            f"{KEY_PATTERN} | grep -cF -f - $t; rm -f $t"
        )
        assert cmdlines.stdout.strip() == "0", "the API key is in a process's argument list"
        # ... no journal line ...
        journal = host.run(
            f"t=$(mktemp); journalctl --no-pager -o cat > $t; {KEY_PATTERN} | grep -cF -f - $t; rm -f $t"
        )
        assert journal.stdout.strip() == "0", "the API key is in the journal"
        # ... and no file another user can read: Bazel writes every rc option, the key's header
        # included, into java.log in the output base, so the directories above it must keep
        # others out. access(2) as nobody answers for the file and every directory above it.
        found = host.check_output(f"{KEY_PATTERN} | grep -rlsF -D skip -f - {SECRET_ROOTS} || true").split()
        assert AUTH_FILE in found
        for path in found:
            readable = host.run(f"runuser -u nobody -- test -r {shlex.quote(path)}").rc == 0
            assert not readable, f"{path} holds the API key and any user can read it"
    finally:
        _as_runner(host, runner, workspace, "bazel shutdown")
        host.run(f"rm -rf {workspace}")
