"""The library of ``runners prune``: the decision, the duration flag, the offline-since state, the audit log."""

import json
import stat
from pathlib import Path

import pytest

from runner_ctl.errors import ConfigError, UsageError
from runner_ctl.forge.runners import RunnerInfo
from runner_ctl.paths import cache_dir, state_dir
from runner_ctl.runners.audit import AuditLog, AuditRecord
from runner_ctl.runners.command import FALLBACK_PREFIX, default_prefix
from runner_ctl.runners.prune import decide, format_duration, parse_duration
from runner_ctl.runners.state import OfflineSince

NOW = 1_800_000_000.0
HOUR = 3600.0


def runner(
    runner_id: int, name: str, *, online: bool = False, busy: bool = False, contacted_at: float | None = None
) -> RunnerInfo:
    status = "online" if online else "offline"
    return RunnerInfo(runner_id, name, online, busy, ("self-hosted",), status, contacted_at)


# ---- --offline-for ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("30s", 30.0), ("15m", 900.0), ("1h", 3600.0), ("2d", 172_800.0), (" 1H ", 3600.0), ("0m", 0.0)],
)
def test_durations_in_the_documented_forms(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1", "h", "1.5h", "-1h", "1w", "1h30m", "one hour", "1 h", "100000000000d"])
def test_bad_durations_are_one_line_usage_errors(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_duration(text)
    assert "--offline-for" in caught.value.message and "\n" not in caught.value.message


def test_ten_years_is_the_longest_duration() -> None:
    assert parse_duration("3650d") == 3650 * 86_400
    with pytest.raises(UsageError, match="at most 3650d"):
        parse_duration("3651d")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (12.7, "12s"),
        (250, "4m 10s"),
        (7202, "2h"),
        (90_061, "1d 1h"),
        (3900, "1h 5m"),
        (3600, "1h"),
        (183_600, "2d 3h"),
    ],
)
def test_durations_for_people(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# ---- the decision -------------------------------------------------------------------------------


def test_only_offline_idle_prefixed_runners_offline_long_enough_are_deleted() -> None:
    runners = [
        runner(1, "rc-host-1", contacted_at=NOW - 2 * HOUR),
        runner(2, "rc-host-2", online=True),
        runner(3, "rc-host-3", busy=True, contacted_at=NOW - 5 * HOUR),
        runner(4, "someone-else", contacted_at=NOW - 50 * HOUR),
        runner(5, "rc-host-5", contacted_at=NOW - 10 * 60),
        runner(6, "rc-host-6"),  # GitHub: no contact time; first seen offline 3 h ago
        runner(7, "rc-host-7"),  # GitHub: first seen offline now
    ]
    decisions = decide(runners, prefix="rc-", offline_for=HOUR, now=NOW, first_seen_offline={6: NOW - 3 * HOUR, 7: NOW})
    assert [d.runner.id for d in decisions] == [1, 2, 3, 4, 5, 6, 7]
    deleted = {d.runner.name for d in decisions if d.delete}
    assert deleted == {"rc-host-1", "rc-host-6"}
    reasons = {d.runner.name: d.reason for d in decisions}
    assert reasons["rc-host-1"] == "offline for 2h (since last contact), at least --offline-for 1h"
    assert reasons["rc-host-2"] == "online"
    assert reasons["rc-host-3"] == "busy: running a job"
    assert reasons["someone-else"] == "name does not start with 'rc-': not registered by runner-ctl"
    assert reasons["rc-host-5"] == "offline for 10m (since last contact), less than --offline-for 1h"
    assert reasons["rc-host-6"] == "offline for 3h (since first seen offline), at least --offline-for 1h"
    assert reasons["rc-host-7"] == "offline for 0s (since first seen offline), less than --offline-for 1h"


def test_offline_for_zero_deletes_every_offline_idle_prefixed_runner_now() -> None:
    runners = [
        runner(1, "rc-a"),
        runner(2, "rc-b", contacted_at=NOW),
        runner(3, "rc-c", busy=True),
        runner(4, "rc-d", online=True),
        runner(5, "x-rc-e"),
    ]
    decisions = decide(runners, prefix="rc-", offline_for=0, now=NOW, first_seen_offline={1: NOW, 3: NOW, 5: NOW})
    assert [d.runner.name for d in decisions if d.delete] == ["rc-a", "rc-b"]


def test_a_busy_offline_runner_is_never_deleted() -> None:
    (decision,) = decide(
        [runner(1, "rc-a", busy=True, contacted_at=NOW - 1000 * HOUR)],
        prefix="rc-",
        offline_for=0,
        now=NOW,
        first_seen_offline={},
    )
    assert not decision.delete and decision.reason.startswith("busy")


def test_the_prefix_is_a_prefix_not_a_substring_and_case_matters() -> None:
    runners = [runner(1, "ci-rc-a"), runner(2, "RC-b"), runner(3, "rc-")]
    decisions = decide(runners, prefix="rc-", offline_for=0, now=NOW, first_seen_offline={1: NOW, 2: NOW, 3: NOW})
    assert [d.runner.name for d in decisions if d.delete] == ["rc-"]


def test_an_empty_prefix_is_refused_it_would_match_every_runner() -> None:
    with pytest.raises(UsageError, match="--prefix is empty"):
        decide([runner(1, "anything")], prefix="", offline_for=0, now=NOW, first_seen_offline={1: NOW})


def test_an_offline_runner_without_a_sighting_counts_from_now() -> None:
    (kept,) = decide([runner(1, "rc-a")], prefix="rc-", offline_for=1, now=NOW, first_seen_offline={})
    (gone,) = decide([runner(1, "rc-a")], prefix="rc-", offline_for=0, now=NOW, first_seen_offline={})
    assert not kept.delete and gone.delete


# ---- the offline-since state file ----------------------------------------------------------------


def test_state_lives_in_the_state_dir_not_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("RUNNER_CTL_STATE_DIR", "RUNNER_CTL_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert (state_dir(), cache_dir()) == (tmp_path / "xdg" / "runner-ctl", tmp_path / ".cache" / "runner-ctl")
    monkeypatch.delenv("XDG_STATE_HOME")
    assert state_dir() == tmp_path / ".local" / "state" / "runner-ctl"


def test_first_sighting_is_kept_across_runs_and_an_online_runner_is_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "state" / "offline-since.json"
    first = OfflineSince(path, "https://api.github.com", "acme/app")
    assert first.observe([runner(1, "rc-a"), runner(2, "rc-b", online=True)], now=NOW) == {1: NOW}
    first.save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    second = OfflineSince(path, "https://api.github.com", "acme/app")
    seen = second.observe([runner(1, "rc-a"), runner(2, "rc-b")], now=NOW + HOUR)
    assert seen == {1: NOW, 2: NOW + HOUR}
    second.save()

    third = OfflineSince(path, "https://api.github.com", "acme/app")
    assert third.observe([runner(1, "rc-a", online=True), runner(2, "rc-b")], now=NOW + 2 * HOUR) == {2: NOW + HOUR}
    third.save()
    fourth = OfflineSince(path, "https://api.github.com", "acme/app")
    assert fourth.observe([runner(1, "rc-a")], now=NOW + 3 * HOUR) == {1: NOW + 3 * HOUR}


def test_state_is_keyed_by_api_url_and_scope(tmp_path: Path) -> None:
    path = tmp_path / "offline-since.json"
    one = OfflineSince(path, "https://api.github.com", "acme/app")
    one.observe([runner(1, "rc-a")], now=NOW)
    one.save()
    other_scope = OfflineSince(path, "https://api.github.com", "acme")
    assert other_scope.observe([runner(1, "rc-a")], now=NOW + HOUR) == {1: NOW + HOUR}
    other_scope.save()
    other_api = OfflineSince(path, "https://ghe.example.com/api/v3/", "acme/app")
    assert other_api.observe([runner(1, "rc-a")], now=NOW + 2 * HOUR) == {1: NOW + 2 * HOUR}
    other_api.save()
    again = OfflineSince(path, "https://api.github.com", "acme/app")
    assert again.observe([runner(1, "rc-a")], now=NOW + 3 * HOUR) == {1: NOW}  # untouched by the others


def test_a_runner_no_longer_listed_or_forgotten_leaves_the_file(tmp_path: Path) -> None:
    path = tmp_path / "offline-since.json"
    state = OfflineSince(path, "https://api.github.com", "acme/app")
    state.observe([runner(1, "rc-a"), runner(2, "rc-b"), runner(3, "rc-c")], now=NOW)
    state.forget(2)
    state.save()
    state = OfflineSince(path, "https://api.github.com", "acme/app")
    state.observe([runner(1, "rc-a")], now=NOW)
    state.save()
    entries = json.loads(path.read_text())["offline_since"]
    assert entries == {"https://api.github.com acme/app 1": NOW}


@pytest.mark.parametrize(
    "content", [b"", b"{not json", b"[]", b'{"offline_since": [1]}', b'{"offline_since": {"k": "x"}}']
)
def test_a_corrupt_state_file_counts_as_empty(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "offline-since.json"
    path.write_bytes(content)
    state = OfflineSince(path, "https://api.github.com", "acme/app")
    assert state.observe([runner(1, "rc-a")], now=NOW) == {1: NOW}
    state.save()
    assert json.loads(path.read_text())["offline_since"] == {"https://api.github.com acme/app 1": NOW}


def test_an_unwritable_state_dir_is_a_one_line_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    state = OfflineSince(blocker / "offline-since.json", "https://api.github.com", "acme/app")
    with pytest.raises(ConfigError, match=r"cannot write the prune state file .*RUNNER_CTL_STATE_DIR"):
        state.save()


# ---- the audit log ------------------------------------------------------------------------------


def test_audit_lines_are_appended_one_json_object_each_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "state" / "audit.jsonl"
    record = AuditRecord("github", "https://api.github.com", "acme/app", dry_run=False)
    with AuditLog(path, record) as log:
        log.write("deleted", 7, "rc-a", "offline for 2h", now=NOW)
    path.chmod(0o644)
    with AuditLog(path, AuditRecord("gitlab", "https://gitlab.com/api/v4", "acme", dry_run=True)) as log:
        log.write("kept", 8, "rc-b", "online", now=NOW + 1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert first == {
        "time": "2027-01-15T08:00:00Z",
        "command": "runners prune",
        "forge": "github",
        "api_url": "https://api.github.com",
        "scope": "acme/app",
        "dry_run": False,
        "action": "deleted",
        "runner_id": 7,
        "name": "rc-a",
        "reason": "offline for 2h",
    }
    assert second["action"] == "kept" and second["dry_run"] is True and second["forge"] == "gitlab"


def test_an_audit_log_behind_a_symlink_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    link = tmp_path / "audit.jsonl"
    link.symlink_to(target)
    log = AuditLog(link, AuditRecord("github", "https://api.github.com", "acme/app", dry_run=False))
    with pytest.raises(ConfigError, match="cannot append to the audit log"), log:
        pass


# ---- the default --prefix ------------------------------------------------------------------------


def checkout(root: Path, group_data: str) -> Path:
    """A runner-ctl checkout (deploys/ and inventories/group_data/) with this all.py."""
    (root / "deploys").mkdir(parents=True)
    (root / "inventories" / "group_data").mkdir(parents=True)
    (root / "inventories" / "group_data" / "all.py").write_text(group_data)
    return root


def test_the_default_prefix_is_the_checkouts_group_data_per_forge(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = checkout(tmp_path / "repo", 'github_runner_name_prefix = "gh-"\ngitlab_runner_name_prefix = "gl-"\n')
    monkeypatch.chdir(root / "inventories")
    assert default_prefix("github") == "gh-"
    assert default_prefix("gitlab") == "gl-"


def test_without_the_key_the_default_prefix_is_the_layers_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(checkout(tmp_path / "repo", "layers = ['base']\n"))
    assert default_prefix("github") == FALLBACK_PREFIX == "rc-"
    assert default_prefix("gitlab") == "rc-"


@pytest.mark.parametrize("value", ['""', "3", "None"])
def test_a_prefix_in_group_data_that_is_not_a_name_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str
) -> None:
    monkeypatch.chdir(checkout(tmp_path / "repo", f"github_runner_name_prefix = {value}\n"))
    with pytest.raises(ConfigError, match=r"github_runner_name_prefix .* is not a name prefix; .* pass --prefix P"):
        default_prefix("github")
