"""Host checks for the deploy lock layer (deploys/deploy_lock.py).

They run on every host of a rehearsed fleet: the lock host (named in /etc/runner-ctl/lock.json)
serves the lock; every other host forwards to it and serves nothing.
"""

import json
import uuid
from typing import Any

import pytest

from runner_ctl.hostdata import BaseLayerSettings, DeployLockSettings, HostSettings
from runner_ctl.testhost import DisposableHost

pytestmark = pytest.mark.host

SERVICE = "runner-ctl-lockd"
FORWARD = "runner-ctl-lock-forward"


@pytest.fixture(scope="module")
def serves(host: Any, settings: HostSettings, test_host: DisposableHost) -> bool:
    """Whether this host runs the fleet's lock service."""
    if "deploy_lock" not in settings.layers:
        return False
    config = json.loads(host.file("/etc/runner-ctl/lock.json").content_string)
    assert config["url"] == f"http://{settings.of(DeployLockSettings).deploy_lock_listen}"
    return bool(config["lock_host"] == test_host.name)


def test_lock_json_names_the_lock_host(host: Any, settings: HostSettings) -> None:
    if "deploy_lock" not in settings.layers:
        assert not host.file("/etc/runner-ctl/lock.json").exists
        return
    lock_json = host.file("/etc/runner-ctl/lock.json")
    assert (lock_json.user, lock_json.group, lock_json.mode) == ("root", "root", 0o644)
    assert set(json.loads(lock_json.content_string)) == {"url", "lock_host"}


def test_the_database_lives_on_the_data_volume(host: Any, settings: HostSettings, serves: bool) -> None:
    if not serves:
        assert not host.service(SERVICE).is_running
        assert not host.file(f"/etc/systemd/system/{SERVICE}.service").exists
        assert not host.file("/etc/runner-ctl/lockd.tokens").exists, "the admin token stays on the lock host"
        return
    db_dir = f"{settings.of(BaseLayerSettings).data_dir}/runner-ctl"
    assert host.file(f"{db_dir}/lock.db").is_file
    directory = host.file(db_dir)
    assert (directory.user, directory.mode) == (SERVICE, 0o700)
    assert not host.file(f"/var/lib/{SERVICE}/lock.db").exists
    assert f"--db {db_dir}/lock.db" in host.check_output(f"systemctl show {SERVICE} -p ExecStart")


def test_only_other_hosts_run_the_forward(host: Any, settings: HostSettings, serves: bool) -> None:
    if "deploy_lock" not in settings.layers:
        return
    forward = host.service(FORWARD)
    if serves:
        assert not host.file(f"/etc/systemd/system/{FORWARD}.service").exists
        assert not host.file("/etc/runner-ctl/lock-forward.key").exists
        return
    assert forward.is_running and forward.is_enabled
    key = host.file("/etc/runner-ctl/lock-forward.key")
    assert (key.user, key.mode) == ("runner-ctl-fwd", 0o600)
    assert "Restart=always" in host.file(f"/etc/systemd/system/{FORWARD}.service").content_string


def test_service_runs_hardened_on_loopback(host: Any, settings: HostSettings, serves: bool) -> None:
    service = host.service(SERVICE)
    if not serves:
        assert not host.file(f"/etc/systemd/system/{SERVICE}.service").exists
        return
    assert service.is_running and service.is_enabled
    shown = host.check_output(f"systemctl show {SERVICE} -p User -p NoNewPrivileges -p ProtectSystem")
    assert "User=runner-ctl-lockd" in shown
    assert "NoNewPrivileges=yes" in shown
    assert "ProtectSystem=strict" in shown
    port = int(settings.of(DeployLockSettings).deploy_lock_listen.rsplit(":", 1)[1])
    listening = host.socket(f"tcp://127.0.0.1:{port}")
    assert listening.is_listening
    assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening


def test_healthz_answers(host: Any, settings: HostSettings) -> None:
    if "deploy_lock" not in settings.layers:
        assert not host.file("/opt/runner-ctl/venv").exists
        return
    url = f"http://{settings.of(DeployLockSettings).deploy_lock_listen}/healthz"
    body = host.check_output(
        f"/opt/runner-ctl/venv/bin/python -c \"import urllib.request as u; print(u.urlopen('{url}').read().decode())\""
    )
    assert '"ok":true' in body.replace(" ", "")


def test_token_files_are_private(host: Any, settings: HostSettings, serves: bool) -> None:
    if not serves:
        assert not host.file("/etc/runner-ctl/lockd.tokens").exists
        return
    service_tokens = host.file("/etc/runner-ctl/lockd.tokens")
    assert (service_tokens.user, service_tokens.group, service_tokens.mode) == ("root", SERVICE, 0o640)
    client = host.file("/etc/runner-ctl/lock-client.token")
    assert (client.user, client.group, client.mode) == ("root", settings.of(BaseLayerSettings).runner_user, 0o640)
    # CI jobs can read their own token but not the service's list (which holds the admin's).
    runner = settings.of(BaseLayerSettings).runner_user
    assert host.run(f"runuser -u {runner} -- cat /etc/runner-ctl/lock-client.token").rc == 0
    assert host.run(f"runuser -u {runner} -- cat /etc/runner-ctl/lockd.tokens").rc != 0


def test_secret_staging_directories_are_private_and_empty(host: Any, settings: HostSettings) -> None:
    """put_secret assembles each secret in a root-only directory beside it, and leaves nothing there."""
    if "deploy_lock" not in settings.layers:
        return
    staging = host.file("/etc/runner-ctl/.runner-ctl-staging")
    assert staging.is_directory
    assert (staging.user, staging.group, staging.mode) == ("root", "root", 0o700)
    assert host.check_output("find /etc/runner-ctl/.runner-ctl-staging -mindepth 1 | wc -l").strip() == "0"


def test_no_file_holding_a_lock_secret_is_world_readable(host: Any, settings: HostSettings, serves: bool) -> None:
    """Every file on the host that holds a lock secret (token files, staging, leftovers) is private.

    The secrets are grep's patterns, piped from the service's token file (never in argv).
    """
    if not serves:
        return
    roots = "/etc /opt /root /home /tmp /var/tmp /var/lib /var/backups /run /srv"
    found = host.check_output(
        f"cut -d: -f2 /etc/runner-ctl/lockd.tokens | grep -rlsF -D skip -f - {roots} || true"
    ).split()
    assert "/etc/runner-ctl/lock-client.token" in found
    assert "/etc/runner-ctl/lockd.tokens" in found
    for path in found:
        assert host.file(path).mode & 0o004 == 0, f"{path} holds a lock secret and is world-readable"
    # Nor is the token files' directory writable by others (who could swap a file).
    assert host.file("/etc/runner-ctl").mode & 0o022 == 0


def test_a_deploy_as_the_runner_user_succeeds(host: Any, settings: HostSettings) -> None:
    if "deploy_lock" not in settings.layers:
        assert not host.exists("runner-ctl")
        return
    runner = settings.of(BaseLayerSettings).runner_user
    # A fresh environment each run: the checks run again on a kept host, with a new repository.
    # No lock flag: on a host, lock.json and the CI token file are the defaults.
    script = (
        "set -e; d=$(mktemp -d); cd $d; git init -q .; "
        "git -c user.email=ci@example.invalid -c user.name=ci commit -q --allow-empty -m check; "
        "unset RUNNER_CTL_LOCK_URL RUNNER_CTL_LOCK_TOKEN; "
        f"runner-ctl deploy --env host-check-{uuid.uuid4().hex[:12]} --commit HEAD --json "
        "-- sh -c 'test -n \"$RUNNER_CTL_FENCING_TOKEN\"'; rm -rf $d"
    )
    done = host.run(f"runuser -l {runner} -c {_quote(script)}")
    assert done.rc == 0, done.stderr
    assert '"status": "succeeded"' in done.stdout.splitlines()[-1]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"
