"""Secrets in the host layers: checked on the operator's machine, written private, never shown.

These run the real layers and ``layerkit.put_secret`` through pyinfra's ``@local``
connector: ``put_secret`` writes into a temporary directory for real; the full host deploy
only with ``--dry`` (it stops at its first check, before any operation runs).
"""

import grp
import json
import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

SECRET_DEPLOY = PROJECT_ROOT / "tests" / "deploys" / "secret_file.py"
PLANTED = "planted-secret-4f1c2b9a7d"


def pyinfra_local(deploy: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", *extra, "@local", str(deploy)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYINFRA_PROGRESS": "off", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def put_secret_locally(dest: Path, content: str, *extra: str, mode: str = "640") -> subprocess.CompletedProcess[str]:
    me = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    env = {
        "RC_SECRET_DEST": str(dest),
        "RC_SECRET_CONTENT": content,
        "RC_SECRET_USER": me,
        "RC_SECRET_GROUP": group,
        "RC_SECRET_MODE": mode,
    }
    return pyinfra_local(SECRET_DEPLOY, *extra, env=env)


def changed_operations(done: subprocess.CompletedProcess[str]) -> int:
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout)["results"]["totals"]["success"])


def test_a_secret_file_is_private_before_its_content_is_written(tmp_path: Path) -> None:
    dest = tmp_path / "lock-client.token"
    done = put_secret_locally(dest, PLANTED + "\n", "-vv")
    assert done.returncode == 0, done.stderr
    commands = [line.split(">>> ", 1)[1] for line in done.stderr.splitlines() if ">>> " in line]
    staged = f"{tmp_path}/.runner-ctl-staging/lock-client.token"
    create = next(i for i, c in enumerate(commands) if c.startswith("sh -c 'install -m 640") and staged in c)
    # The @local connector uploads with cp; over SSH it is an SFTP write into the same file.
    upload = next(i for i, c in enumerate(commands) if c.startswith("sh -c 'cp ") and c.endswith(f"{staged}'"))
    rename = next(i for i, c in enumerate(commands) if c.startswith("sh -c 'mv -f") and str(dest) in c)
    assert create < upload < rename
    # Nothing ever changes the mode after the content is there (files.put chmods after uploading).
    assert not any("chmod" in c for c in commands[upload:])
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640
    assert dest.read_text() == PLANTED + "\n"
    staging = tmp_path / ".runner-ctl-staging"
    assert stat.S_IMODE(staging.stat().st_mode) == 0o700
    assert list(staging.iterdir()) == []


def test_a_secret_file_is_written_once_and_its_mode_repaired(tmp_path: Path) -> None:
    dest = tmp_path / "tokens"
    assert changed_operations(put_secret_locally(dest, PLANTED, "--json")) == 1
    assert changed_operations(put_secret_locally(dest, PLANTED, "--json")) == 0
    dest.chmod(0o644)
    assert changed_operations(put_secret_locally(dest, PLANTED, "--json")) == 1
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640
    assert changed_operations(put_secret_locally(dest, PLANTED, "--json")) == 0


def test_diff_never_shows_a_secret(tmp_path: Path) -> None:
    dest = tmp_path / "tokens"
    created = put_secret_locally(dest, PLANTED + "-old", "--diff", "-vvv")
    modified = put_secret_locally(dest, PLANTED + "-new", "--diff", "-vvv")
    for done in (created, modified):
        assert done.returncode == 0, done.stderr
        assert PLANTED not in done.stdout + done.stderr
        assert "content not shown" in done.stderr
    assert dest.read_text() == PLANTED + "-new"


def dry_deploy_with_tokens(
    tmp_path: Path, ci_reference: str, ops_reference: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """The host deploy with these lock token references, dry: it must stop before any operation."""
    group_data = tmp_path / "group_data"
    group_data.mkdir()
    (group_data / "all.py").write_text(
        # Only the layers these secrets concern: the bazel layer would first fetch Bazelisk.
        'layers = ["base", "deploy_lock"]\n'
        "deploy_lock_tokens = [\n"
        f'    {{"name": "ci", "secret": "{ci_reference}", "admin": False}},\n'
        f'    {{"name": "ops", "secret": "{ops_reference}", "admin": True}},\n'
        "]\n"
    )
    done = pyinfra_local(
        PROJECT_ROOT / "deploys" / "runner_host.py",
        "--dry",
        "--group-data",
        str(group_data),
        env={"RUNNER_CTL_CONFIG_DIR": str(tmp_path / "config"), **env},
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stdout + done.stderr
    assert "Starting operation" not in done.stdout + done.stderr
    return done


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("short-secret", "shorter than 16 characters"),
        ("0123456789abcdef:admin", "':'"),
        ("0123456789abcdef 0123", "whitespace"),
        ("0123456789abcdef\x07bell", "control"),
        ("0123456789abcdefé", "non-ASCII"),
    ],
    ids=["short", "colon", "space", "control", "non-ascii"],
)
def test_a_bad_lock_secret_stops_the_deploy_before_any_operation(tmp_path: Path, secret: str, problem: str) -> None:
    env = {"RC_TEST_OPS_SECRET": secret}
    done = dry_deploy_with_tokens(tmp_path, "generated:lock-ci", "env:RC_TEST_OPS_SECRET", env)
    output = done.stdout + done.stderr
    errors = [line for line in output.splitlines() if "deploy_lock_tokens ops" in line]
    assert len(errors) == 1, output
    assert problem in errors[0]
    assert secret not in output
    # Checked before the layer built or uploaded anything.
    assert "wheelhouse" not in output.lower()


def test_two_tokens_with_one_secret_are_refused(tmp_path: Path) -> None:
    same = "env:RC_TEST_SAME_SECRET"
    done = dry_deploy_with_tokens(tmp_path, same, same, {"RC_TEST_SAME_SECRET": "0123456789abcdef0123"})
    assert "deploy_lock_tokens ops: the secret is the same as token ci's" in done.stderr
    assert "0123456789abcdef0123" not in done.stdout + done.stderr
