"""The deploy lock layer on a fleet of two test hosts on one private network.

The first host serves the lock; the second reaches it through the SSH forward, at the same
loopback URL, with no lock flags. The forward's key opens that one forward on the lock host
and nothing else: no shell, no pty, no other port. A second deploy changes nothing.
"""

import json
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from runner_ctl.pyinfra_run import run_deploy
from runner_ctl.testhost import DisposableHost, boot_host, destroy_host
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.host

# What the forward unit passes to ssh, as the forward user would: the key, the pinned host key.
FORWARD_SSH = (
    "ssh -F none -i /etc/runner-ctl/lock-forward.key -o IdentitiesOnly=yes -o BatchMode=yes -o ConnectTimeout=10 "
    "-o StrictHostKeyChecking=yes -o UserKnownHostsFile=/etc/runner-ctl/lock-host.known_hosts "
    "-o HostKeyAlgorithms=ssh-ed25519"
)


def _on(host: DisposableHost, command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-F", host.ssh_config, "-o", "BatchMode=yes", host.name, command],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def _as_forward_user(host: DisposableHost, command: str) -> subprocess.CompletedProcess[str]:
    return _on(host, f"runuser -u runner-ctl-fwd -- {command}", timeout=120)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DisposableHost, DisposableHost]]:
    """Two fresh hosts on one private network, deployed with the base and deploy lock layers."""
    tag = uuid.uuid4().hex[:4]
    network, names, booted = f"lkn{tag}", [f"lka{tag}", f"lkb{tag}"], []
    work = tmp_path_factory.mktemp("fleet")
    group_data = work / "group_data"
    group_data.mkdir()
    (group_data / "all.py").write_text('layers = ["base", "deploy_lock"]\n')
    try:
        for name in names:
            booted.append(boot_host(name, volume_mb=256, network=network))
        for label in ("first deploy", "second deploy"):
            run = run_deploy(
                project_root=PROJECT_ROOT,
                inventory=PROJECT_ROOT / "inventories" / "testhost.py",
                deploy=PROJECT_ROOT / "deploys" / "runner_host.py",
                env={"RUNNER_CTL_TESTHOST": ",".join(names)},
                log_path=work / f"{label}.log",
                label=label,
                group_data=group_data,
                timeout=1800,
            )
        assert run.changed == 0, run.changed_names
        yield booted[0], booted[1]
    finally:
        for host in booted:
            destroy_host(host.name)


def test_only_the_lock_host_serves_and_the_other_forwards(fleet: tuple[DisposableHost, DisposableHost]) -> None:
    lock_host, other = fleet
    assert _on(lock_host, "systemctl is-active runner-ctl-lockd").stdout.strip() == "active"
    assert _on(other, "systemctl is-active runner-ctl-lockd").stdout.strip() != "active"
    assert _on(other, "systemctl is-active runner-ctl-lock-forward").stdout.strip() == "active"
    for host in fleet:
        assert f'"lock_host": "{lock_host.name}"' in _on(host, "cat /etc/runner-ctl/lock.json").stdout
    # The admin token stays on the lock host; the forward key only on the others, the forward user's alone.
    assert _on(other, "test -e /etc/runner-ctl/lockd.tokens").returncode != 0
    assert _on(lock_host, "test -e /etc/runner-ctl/lock-forward.key").returncode != 0
    assert _on(other, "stat -c %U:%a /etc/runner-ctl/lock-forward.key").stdout.strip() == "runner-ctl-fwd:600"
    assert _on(other, "runuser -u runner -- cat /etc/runner-ctl/lock-forward.key").returncode != 0


def test_a_deploy_on_either_host_goes_through_the_one_queue(fleet: tuple[DisposableHost, DisposableHost]) -> None:
    """The second host's deploy sees the first host's commit as last deployed: one queue, one stale guard."""
    env = f"fleet-{uuid.uuid4().hex[:8]}"
    # A fixed author and date: the same commit has the same hash on both hosts.
    commit = (
        "GIT_AUTHOR_DATE=@1700000000 GIT_COMMITTER_DATE=@1700000000 "
        "git -c user.email=ci@example.invalid -c user.name=ci commit -q --allow-empty -m {0}; "
    )
    repo = "set -e; d=$(mktemp -d); cd $d; git init -q .; " + commit.format("one")
    deploy = f"runner-ctl deploy --env {env} --commit HEAD --json -- true"
    results = []
    for host, script in zip(fleet, (repo + deploy, repo + commit.format("two") + deploy), strict=True):
        done = _on(host, f"runuser -l runner -c {_quote(script)}")
        assert done.returncode == 0, f"{host.name}: {done.stderr}"
        results.append(json.loads(done.stdout.splitlines()[-1]))
    assert results[0]["status"] == results[1]["status"] == "succeeded", results
    assert results[1]["previous_commit"] == results[0]["commit"], results


def test_the_forward_key_opens_no_shell_on_the_lock_host(fleet: tuple[DisposableHost, DisposableHost]) -> None:
    lock_host, other = fleet
    address = lock_host.private_address
    assert address
    shell = _as_forward_user(other, f"{FORWARD_SSH} runner-ctl-fwd@{address} echo planted-shell-ran")
    assert shell.returncode != 0
    assert "planted-shell-ran" not in shell.stdout
    pty = _as_forward_user(other, f"{FORWARD_SSH} -tt runner-ctl-fwd@{address} true")
    assert pty.returncode != 0


def test_the_forward_key_opens_no_other_port(fleet: tuple[DisposableHost, DisposableHost]) -> None:
    """A forward to the lock host's sshd is refused by the lock host; nothing answers through it."""
    lock_host, other = fleet
    script = (
        f"{FORWARD_SSH} -N -o ExitOnForwardFailure=yes -L 127.0.0.1:2222:127.0.0.1:22 "
        f"runner-ctl-fwd@{lock_host.private_address} 2>/tmp/fwd.err & pid=$!; "
        # Bounded: up to 20 tries for the local end to listen.
        "for i in $(seq 20); do ss -ltn | grep -q 127.0.0.1:2222 && break; sleep 0.5; done; "
        "banner=$(timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/2222 && head -c 8 <&3' || true); "
        'kill $pid 2>/dev/null; wait $pid 2>/dev/null; echo "banner=[$banner]"; cat /tmp/fwd.err'
    )
    done = _on(other, f"runuser -u runner-ctl-fwd -- bash -c {_quote(script)}")
    assert "banner=[]" in done.stdout, done.stdout + done.stderr
    assert "administratively prohibited" in done.stdout + done.stderr


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def test_the_lock_hosts_authorized_keys_restrict_the_key(fleet: tuple[DisposableHost, DisposableHost]) -> None:
    lock_host, _ = fleet
    line = _on(lock_host, "cat /var/lib/runner-ctl-fwd/.ssh/authorized_keys").stdout.strip()
    assert line.startswith('restrict,port-forwarding,permitopen="127.0.0.1:7465",command="/bin/false" ssh-ed25519 ')
    # Root's file: the forward user cannot widen its own key's rights.
    assert _on(lock_host, "stat -c %U:%a /var/lib/runner-ctl-fwd/.ssh/authorized_keys").stdout.strip() == "root:644"
