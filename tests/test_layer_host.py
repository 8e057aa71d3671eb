"""The deploy lock layer on the suite's rehearsal host: stand-in secrets, --diff, the health proof.

Each test leaves the host as the rehearsal left it: deployed, and a further deploy changes nothing.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner_ctl.rehearse import REAL_SECRETS_ENV, standins_dir
from runner_ctl.testhost import DisposableHost, get_host
from tests.test_deploy_safety import _assert_deploy_changes_nothing, _pyinfra, _remote
from tests.test_inventories import debug_inventory_hosts

pytestmark = pytest.mark.host

RUNNER_HOST = Path(__file__).resolve().parents[1] / "deploys" / "runner_host.py"
CLIENT_TOKEN = "/etc/runner-ctl/lock-client.token"  # noqa: S105 - a path
OLD_DB_DIR = "/var/lib/runner-ctl-lockd"
NEW_DB = "/var/lib/ci/runner-ctl/lock.db"  # data_dir's default, which the rehearsal keeps
BREAK_DROP_IN = "/etc/systemd/system/runner-ctl-lockd.service.d/90-test-break.conf"


@pytest.fixture(scope="module")
def kept_host(rehearsal: dict[str, Any]) -> DisposableHost:
    assert rehearsal["host"], rehearsal["error"]
    return get_host(rehearsal["host"])


def _standin(host: DisposableHost, token: str) -> Path:
    [path] = standins_dir(host).glob(f"rehearsal-deploy_lock_tokens-{token}-*")
    return path


def test_the_rehearsal_used_stand_ins_not_real_secrets(kept_host: DisposableHost) -> None:
    on_host = _remote(kept_host, f"cat {CLIENT_TOKEN}").strip()
    assert on_host == _standin(kept_host, "ci").read_text().strip()
    inventory = [sys.executable, "-m", "pyinfra", "inventories/testhost.py", "debug-inventory"]
    for real, expected in (("0", True), ("1", False)):
        done = subprocess.run(
            inventory,
            cwd=RUNNER_HOST.parents[1],
            env={**os.environ, "RUNNER_CTL_TESTHOST": kept_host.name, REAL_SECRETS_ENV: real},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        data = debug_inventory_hosts(done.stdout + done.stderr)[kept_host.name]
        assert ("secret_standins" in data) is expected, done.stderr


def test_diff_shows_no_secret_when_tokens_rotate(kept_host: DisposableHost, tmp_path: Path) -> None:
    old = {token: _standin(kept_host, token).read_text().strip() for token in ("ci", "ops")}
    for token in ("ci", "ops"):
        _standin(kept_host, token).unlink()
    done = _pyinfra(kept_host, RUNNER_HOST, "--diff")
    assert done.returncode == 0, done.stderr
    new = {token: _standin(kept_host, token).read_text().strip() for token in ("ci", "ops")}
    output = done.stdout + done.stderr
    for secret in (*old.values(), *new.values()):
        assert secret not in output
    assert "Prove runner-ctl-lockd accepts the CI token" in output
    assert _remote(kept_host, f"cat {CLIENT_TOKEN}").strip() == new["ci"]
    _assert_deploy_changes_nothing(kept_host, tmp_path)


def test_a_service_that_does_not_answer_fails_the_deploy(kept_host: DisposableHost, tmp_path: Path) -> None:
    """Without the proof, this deploy reported success with a service that cannot answer."""
    _remote(
        kept_host,
        f"mkdir -p {Path(BREAK_DROP_IN).parent} && printf '[Service]\\nExecStart=\\nExecStart=/bin/sleep infinity\\n' "
        f"> {BREAK_DROP_IN} && systemctl daemon-reload && systemctl restart runner-ctl-lockd.service "
        f"&& rm {CLIENT_TOKEN}",
    )
    try:
        done = _pyinfra(kept_host, RUNNER_HOST)
        assert done.returncode != 0
        assert "runner-ctl-lockd did not accept the CI token" in done.stderr
        assert "Traceback" not in done.stderr
    finally:
        _remote(
            kept_host,
            f"rm -f {BREAK_DROP_IN} && systemctl daemon-reload && systemctl restart runner-ctl-lockd.service",
        )
    repaired = _pyinfra(kept_host, RUNNER_HOST)
    assert repaired.returncode == 0, repaired.stderr
    _assert_deploy_changes_nothing(kept_host, tmp_path)


def _as_runner(host: DisposableHost, script: str) -> subprocess.CompletedProcess[str]:
    """A CI job's shell on the host: the runner user, no lock variables, no lock flags."""
    quoted = "'" + script.replace("'", "'\"'\"'") + "'"
    return subprocess.run(
        ["ssh", "-F", host.ssh_config, "-o", "BatchMode=yes", host.name,
         f"runuser -l runner -c {quoted}"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


_NEW_REPO = (
    "set -e; d=$(mktemp -d); cd $d; git init -q .; "
    "git -c user.email=ci@example.invalid -c user.name=ci commit -q --allow-empty -m check; "
)


def test_an_old_root_disk_database_moves_to_the_volume_once(kept_host: DisposableHost, tmp_path: Path) -> None:
    """A host deployed before the move keeps its last deployed commits: the layer moves the database."""
    env = f"move-{os.urandom(4).hex()}"
    done = _as_runner(kept_host, _NEW_REPO + f"runner-ctl deploy --env {env} --commit HEAD --json -- true")
    assert done.returncode == 0, done.stderr
    deployed = json.loads(done.stdout.splitlines()[-1])["commit"]
    # The host as an older layer left it: the database in the service's state directory. The
    # service stays stopped: started by today's unit, it would make a new, empty database.
    _remote(
        kept_host,
        f"systemctl stop runner-ctl-lockd && mkdir -p {OLD_DB_DIR} && "
        f"for s in '' -wal -shm; do if [ -e {NEW_DB}$s ]; then mv {NEW_DB}$s {OLD_DB_DIR}/lock.db$s; fi; done",
    )
    moved = _pyinfra(kept_host, RUNNER_HOST)
    assert moved.returncode == 0, moved.stderr
    assert _remote(kept_host, f"test -e {OLD_DB_DIR}/lock.db || echo gone").strip() == "gone"
    history = _as_runner(kept_host, f"runner-ctl deploy history --env {env} --json")
    assert history.returncode == 0, history.stderr
    assert deployed in {record["commit"] for record in json.loads(history.stdout)}
    _assert_deploy_changes_nothing(kept_host, tmp_path)


def test_a_database_imported_as_root_is_handed_to_the_service(kept_host: DisposableHost, tmp_path: Path) -> None:
    """`lock import` as root on a new lock host leaves a root-owned database; the deploy gives it to the service."""
    _remote(kept_host, f"systemctl stop runner-ctl-lockd && chown root:root {NEW_DB}")
    handed = _pyinfra(kept_host, RUNNER_HOST)
    assert handed.returncode == 0, handed.stderr
    assert _remote(kept_host, f"stat -c %U:%G {NEW_DB}").strip() == "runner-ctl-lockd:runner-ctl-lockd"
    assert _remote(kept_host, "systemctl is-active runner-ctl-lockd").strip() == "active"
    _assert_deploy_changes_nothing(kept_host, tmp_path)


def test_a_deploy_names_the_lock_host_when_its_service_is_down(kept_host: DisposableHost) -> None:
    _remote(kept_host, "systemctl stop runner-ctl-lockd")
    try:
        done = _as_runner(
            kept_host,
            _NEW_REPO + "RUNNER_CTL_LOCK_RETRY_SECONDS=1 runner-ctl deploy --env down --commit HEAD "
            "-- touch /tmp/ran-unserialized",
        )
    finally:
        _remote(kept_host, "systemctl start runner-ctl-lockd")
    assert done.returncode == 6, done.stderr
    [line] = done.stderr.strip().splitlines()[-1:]
    assert f"lock host {kept_host.name} is unreachable" in line
    assert "Traceback" not in done.stderr
    assert _remote(kept_host, "test -e /tmp/ran-unserialized || echo no").strip() == "no"
