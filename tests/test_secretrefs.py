"""Secret references resolve on the operator's machine and never leak into errors."""

import os
import stat
from pathlib import Path

import pytest

from runner_ctl.errors import ConfigError
from runner_ctl.secretrefs import check_lock_secret, resolve_secret
from runner_ctl.wheelhouse import source_digest
from tests.conftest import PROJECT_ROOT


def test_env_file_and_cmd_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RC_TEST_SECRET", "from-env")
    (tmp_path / "s").write_text("from-file\n")
    assert resolve_secret("env:RC_TEST_SECRET", what="t") == "from-env"
    assert resolve_secret(f"file:{tmp_path / 's'}", what="t") == "from-file"
    assert resolve_secret("cmd:printf from-cmd", what="t") == "from-cmd"


def test_generated_secrets_are_stable_and_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_CTL_CONFIG_DIR", str(tmp_path))
    first = resolve_secret("generated:lock-ci", what="t")
    assert len(first) == 64
    assert resolve_secret("generated:lock-ci", what="t") == first
    assert resolve_secret("generated:lock-ops", what="t") != first
    assert stat.S_IMODE((tmp_path / "secrets" / "lock-ci").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("reference", "fragment"),
    [
        ("plaintext-secret-value", "is not a secret reference"),
        ("env:RC_TEST_UNSET_VARIABLE", "is not set"),
        ("file:/nonexistent/secret", "cannot read"),
        ("cmd:false", "exited 1"),
        ("generated:../escape", "expected a name"),
    ],
)
def test_bad_references_fail_without_showing_a_secret(reference: str, fragment: str) -> None:
    os.environ.pop("RC_TEST_UNSET_VARIABLE", None)
    with pytest.raises(ConfigError) as caught:
        resolve_secret(reference, what="deploy_lock_tokens ci")
    assert fragment in str(caught.value)
    assert "plaintext-secret-value" not in str(caught.value)


@pytest.mark.parametrize(
    "reference",
    ["cmd:pass show 'ci/lock", 'cmd:printf "planted-secret-value', "cmd:printf planted-secret-value\\"],
)
def test_a_cmd_reference_with_unbalanced_quotes_is_one_line(reference: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_secret(reference, what="deploy_lock_tokens ci")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("deploy_lock_tokens ci: cmd: reference cannot be split into words")
    assert "planted-secret-value" not in message


@pytest.mark.parametrize(
    "reference", ["env:RC_TEST_UNSET_VARIABLE", "file:/nonexistent/secret", "cmd:false", "generated:lock-ci"]
)
def test_stand_ins_replace_every_kind_of_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: str
) -> None:
    monkeypatch.delenv("RC_TEST_UNSET_VARIABLE", raising=False)
    monkeypatch.setenv("RUNNER_CTL_CONFIG_DIR", str(tmp_path / "real-config"))
    standins = tmp_path / "standins"
    first = resolve_secret(reference, what="deploy_lock_tokens ci", standins=standins)
    assert len(first) == 64
    check_lock_secret(first, what="t")
    assert resolve_secret(reference, what="deploy_lock_tokens ci", standins=standins) == first
    assert resolve_secret(reference, what="deploy_lock_tokens ops", standins=standins) != first
    # The real reference was never followed: no production secret was read or generated.
    assert not (tmp_path / "real-config").exists()
    files = list(standins.iterdir())
    assert len(files) == 2
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)


def test_a_stand_in_still_needs_a_well_formed_reference(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a secret reference"):
        resolve_secret("plaintext-secret-value", what="t", standins=tmp_path)


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("a" * 15, "shorter than 16"),
        ("a" * 16 + ":admin", "':'"),
        ("a" * 16 + "\n", "whitespace"),
        ("a" * 16 + "\t", "whitespace"),
        ("a" * 16 + "\x7f", "control"),
        ("a" * 16 + "\u00e9", "non-ASCII"),
    ],
)
def test_lock_secrets_the_service_would_refuse_are_named_not_shown(secret: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_lock_secret(secret, what="deploy_lock_tokens ops")
    message = str(caught.value)
    assert message.startswith("deploy_lock_tokens ops: ")
    assert problem in message
    assert secret.strip() not in message


def test_a_printable_lock_secret_is_accepted() -> None:
    check_lock_secret("A-z_0.9~!#$%&'()*+,/;<=>?@[]^`{|}", what="t")


def test_wheelhouse_digest_follows_sources_not_build_leftovers(tmp_path: Path) -> None:
    project = tmp_path / "p"
    (project / "src" / "runner_ctl").mkdir(parents=True)
    (project / "pyproject.toml").write_text((PROJECT_ROOT / "pyproject.toml").read_text())
    (project / "src" / "runner_ctl" / "a.py").write_text("x = 1\n")
    before = source_digest(project, "x86_64")
    (project / "src" / "runner_ctl.egg-info").mkdir()
    (project / "src" / "runner_ctl.egg-info" / "PKG-INFO").write_text("rewritten by every build")
    (project / "src" / "runner_ctl" / "__pycache__").mkdir()
    (project / "src" / "runner_ctl" / "__pycache__" / "a.pyc").write_bytes(b"\0")
    assert source_digest(project, "x86_64") == before
    (project / "src" / "runner_ctl" / "a.py").write_text("x = 2\n")
    assert source_digest(project, "x86_64") != before
    assert source_digest(project, "aarch64") != source_digest(project, "x86_64")
