"""``latency report --write-tfvars``: runner_count from the replay, within the limits, written atomically."""

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.latencyfixtures import DAY0, assert_one_line_error, github, report_cli, runner_ctl_latency, write_trace
from tests.standins.github_api import GitHubStandIn, iso

__all__ = ["github"]  # the fixture, imported to be found


@pytest.fixture
def six_at_once(tmp_path: Path) -> Path:
    """Three bursts of six 10-minute jobs on six runners: a queue p95 within 60 s needs 6 slots."""
    lines = [
        {
            "created_at": iso(DAY0 + burst * 3600),
            "started_at": iso(DAY0 + burst * 3600 + 2),
            "completed_at": iso(DAY0 + burst * 3600 + 602),
            "labels": ["self-hosted", "linux"],
            "runner_name": f"ci-{slot}",
            "workflow": "CI",
            "name": f"shard-{slot}",
            "conclusion": "success",
            "run_id": burst,
        }
        for burst in range(3)
        for slot in range(6)
    ]
    return write_trace(tmp_path / "six.jsonl", lines)


def report(trace: Path, tfvars: Path, *more: str) -> tuple[int, dict[str, Any], str]:
    return report_cli("--from-jsonl", str(trace), "--write-tfvars", str(tfvars), *more)


def test_writes_the_hosts_whose_slots_meet_the_recommendation(six_at_once: Path, tmp_path: Path) -> None:
    tfvars = tmp_path / "runner-count.auto.tfvars.json"
    code, document, stderr = report(six_at_once, tfvars, "--slots-per-host", "4")
    assert code == 0, stderr
    assert document["recommendation"]["recommended_slots"] == 6
    assert json.loads(tfvars.read_text()) == {"runner_count": 2}  # 6 slots, 4 a host
    assert document["tfvars"] == {
        "file": str(tfvars),
        "slots_per_host": 4,
        "previous": None,
        "runner_count": 2,
        "changed": True,
        "reason": "6 slots recommended, 4 per host",
    }
    assert "wrote runner_count 2" in stderr


def test_other_keys_are_kept_and_an_unchanged_count_is_not_rewritten(six_at_once: Path, tmp_path: Path) -> None:
    tfvars = tmp_path / "fleet.auto.tfvars.json"
    tfvars.write_text(json.dumps({"region": "fra1", "runner_count": 1, "droplet_size": "s-4vcpu-8gb"}))
    tfvars.chmod(0o640)
    code, _, stderr = report(six_at_once, tfvars, "--slots-per-host", "2")
    assert code == 0, stderr
    assert json.loads(tfvars.read_text()) == {"region": "fra1", "runner_count": 3, "droplet_size": "s-4vcpu-8gb"}
    assert tfvars.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    before = tfvars.stat().st_mtime_ns
    os.utime(tfvars, ns=(before - 10**9, before - 10**9))
    code, again, _ = report(six_at_once, tfvars, "--slots-per-host", "2")
    assert code == 0 and again["tfvars"]["changed"] is False
    assert tfvars.stat().st_mtime_ns == before - 10**9


def test_never_fewer_hosts_than_the_file_has_unless_allowed(six_at_once: Path, tmp_path: Path) -> None:
    tfvars = tmp_path / "t.auto.tfvars.json"
    tfvars.write_text('{"runner_count": 5}')
    code, document, _ = report(six_at_once, tfvars, "--slots-per-host", "4")
    assert code == 0 and json.loads(tfvars.read_text()) == {"runner_count": 5}
    assert document["tfvars"]["changed"] is False and "no --allow-scale-in" in document["tfvars"]["reason"]
    code, document, _ = report(six_at_once, tfvars, "--slots-per-host", "4", "--allow-scale-in")
    assert code == 0 and json.loads(tfvars.read_text()) == {"runner_count": 2}


def test_never_more_hosts_than_max_hosts(six_at_once: Path, tmp_path: Path) -> None:
    tfvars = tmp_path / "t.auto.tfvars.json"
    code, document, _ = report(six_at_once, tfvars, "--slots-per-host", "1", "--max-hosts", "4")
    assert code == 0 and json.loads(tfvars.read_text()) == {"runner_count": 4}
    assert "capped at --max-hosts 4" in document["tfvars"]["reason"]


def test_max_hosts_lets_the_replay_try_enough_slots(six_at_once: Path, tmp_path: Path) -> None:
    tfvars = tmp_path / "t.auto.tfvars.json"
    # --max-slots 2 alone finds no count that meets the target; 4 hosts of 2 slots are tried
    code, document, _ = report(six_at_once, tfvars, "--max-slots", "2", "--slots-per-host", "2", "--max-hosts", "4")
    assert code == 0 and document["recommendation"]["recommended_slots"] == 6
    assert json.loads(tfvars.read_text()) == {"runner_count": 3}


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("[1, 2]", "holds a JSON list, not an object"),
        ('"runner_count = 2"', "holds a JSON str, not an object"),
        ("runner_count = 2\n", "is not JSON (line 1"),
        ('{"runner_count": "two"}', "runner_count is 'two', not a whole number of hosts"),
    ],
)
def test_a_file_that_is_not_a_json_object_is_refused_before_any_api_call(
    github: GitHubStandIn, tmp_path: Path, content: str, fragment: str
) -> None:
    tfvars = tmp_path / "terraform.tfvars.json"
    tfvars.write_text(content)
    env = {"GITHUB_TOKEN": github.token, "RUNNER_CTL_CACHE_DIR": str(tmp_path / "cache")}
    done = runner_ctl_latency(
        "report", "--github", github.repo, "--api-url", github.url, "--write-tfvars", str(tfvars),
        "--slots-per-host", "2", env=env,
    )  # fmt: skip
    assert_one_line_error(done, 2, str(tfvars), fragment)
    assert tfvars.read_text() == content and github.requests == 0


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "--write-tfvars needs --slots-per-host K"),
        (["--slots-per-host", "0"], "--slots-per-host must be from 1"),
        (["--slots-per-host", "2", "--max-hosts", "0"], "--max-hosts must be from 1"),
    ],
)
def test_bad_tfvars_flags(six_at_once: Path, tmp_path: Path, args: list[str], fragment: str) -> None:
    tfvars = tmp_path / "t.auto.tfvars.json"
    done = runner_ctl_latency("report", "--from-jsonl", str(six_at_once), "--write-tfvars", str(tfvars), *args)
    assert_one_line_error(done, 2, fragment)
    assert not tfvars.exists()


def test_tfvars_limits_without_the_file_are_an_error(six_at_once: Path) -> None:
    done = runner_ctl_latency("report", "--from-jsonl", str(six_at_once), "--slots-per-host", "2")
    assert_one_line_error(done, 2, "go with --write-tfvars FILE")


def test_a_file_over_max_hosts_needs_allow_scale_in(six_at_once: Path, tmp_path: Path) -> None:
    tfvars = tmp_path / "t.auto.tfvars.json"
    tfvars.write_text('{"runner_count": 9}')
    done = runner_ctl_latency(
        "report", "--from-jsonl", str(six_at_once), "--write-tfvars", str(tfvars), "--slots-per-host", "2",
        "--max-hosts", "4",
    )  # fmt: skip
    assert_one_line_error(done, 2, "runner_count 9, more than --max-hosts 4")
    assert tfvars.read_text() == '{"runner_count": 9}'
