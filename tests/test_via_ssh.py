"""An operator's laptop deploys through an SSH tunnel to the lock service on the runner host."""

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from runner_ctl.rehearse import standins_dir
from runner_ctl.testhost import get_host
from tests.conftest import PROJECT_ROOT
from tests.lockfixtures import git

pytestmark = pytest.mark.host


def test_deploy_via_ssh_joins_the_hosts_queue(rehearsal: dict[str, Any], tmp_path: Path) -> None:
    assert rehearsal["host"], rehearsal["error"]
    host = get_host(rehearsal["host"])
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "-c", "user.email=t@example.invalid", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "x")
    env_name = f"laptop-{uuid.uuid4().hex[:8]}"
    token = tmp_path / "token"
    # What the rehearsal wrote to the host: its stand-in for the ci token, never a real secret.
    [standin] = standins_dir(host).glob("rehearsal-deploy_lock_tokens-ci-*")
    token.write_text(standin.read_text())
    token.chmod(0o600)
    done = subprocess.run(
        [sys.executable, "-m", "runner_ctl", "deploy", "--env", env_name, "--commit", "HEAD", "--repo-dir", str(repo),
         "--via-ssh", host.name, "--token-file", str(token), "--json", "--", "true"],
        capture_output=True, text=True, timeout=300, check=False, cwd=PROJECT_ROOT,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(Path.home()),
             "RUNNER_CTL_SSH_CONFIG": host.ssh_config},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["status"] == "succeeded"
    # The host's own service recorded it: the same queue CI jobs on the host use.
    history = subprocess.run(
        ["ssh", "-F", host.ssh_config, host.name,
         f"runner-ctl deploy history --env {env_name} --json --token-file /etc/runner-ctl/lock-client.token"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    events = [record["event"] for record in json.loads(history.stdout)]
    assert events[0] == "succeeded"
    assert "queued" in events


def test_via_ssh_to_an_unknown_host_is_one_line(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("x" * 32)
    done = subprocess.run(
        [sys.executable, "-m", "runner_ctl", "deploy", "--env", "e", "--commit", "HEAD",
         "--repo-dir", str(PROJECT_ROOT), "--via-ssh", "no-such-host.invalid",
         "--token-file", str(token), "--", "true"],
        capture_output=True, text=True, timeout=120, check=False, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--via-ssh no-such-host.invalid" in lines[0], done.stderr
