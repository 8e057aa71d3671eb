"""`runner-ctl deploy` against a real lock service process and real git repositories."""

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PROJECT_ROOT
from tests.lockfixtures import History, LockService, free_port, git, history, lock_service, wait_for

__all__ = ["history", "lock_service"]  # fixtures, imported to be found

RECORDER = textwrap.dedent(
    """
    import json, os, sys, time
    log, hold = sys.argv[1], sys.argv[2]
    started = time.time()
    if hold.startswith("gate:"):  # hold the lock until the test opens the gate (bounded)
        deadline = time.time() + 120
        while not os.path.exists(hold[5:]) and time.time() < deadline:
            time.sleep(0.02)
    else:
        time.sleep(float(hold))
    entry = {key: os.environ.get(key) for key in (
        "RUNNER_CTL_ENV", "RUNNER_CTL_COMMIT", "RUNNER_CTL_PREVIOUS_COMMIT", "RUNNER_CTL_DEPLOY_ID",
        "RUNNER_CTL_FENCING_TOKEN", "RUNNER_CTL_LOCK_TOKEN")}
    entry.update(started=started, ended=time.time())
    with open(log, "a") as handle:
        handle.write(json.dumps(entry) + "\\n")
    sys.exit(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    """
)


@pytest.fixture
def recorder(tmp_path: Path) -> tuple[Path, Path]:
    script = tmp_path / "record.py"
    script.write_text(RECORDER)
    return script, tmp_path / "runs.jsonl"


def _argv(
    service: LockService, history: History, commit: str, command: list[str], *extra: str, env: str = "production"
) -> list[str]:
    return [
        sys.executable, "-m", "runner_ctl", "deploy", "--env", env, "--commit", commit,
        "--repo-dir", str(history.clone), "--json", *extra, "--", *command,
    ]  # fmt: skip


def deploy(
    service: LockService, history: History, commit: str, command: list[str], *extra: str, env: str = "production",
    secret: str | None = None,
) -> tuple[int, dict[str, Any], str]:  # fmt: skip
    done = subprocess.run(
        _argv(service, history, commit, command, *extra, env=env),
        capture_output=True, text=True, timeout=300, check=False, env=service.env(secret), cwd=PROJECT_ROOT,
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    return done.returncode, result, done.stderr


def spawn(
    service: LockService, history: History, commit: str, command: list[str], *extra: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _argv(service, history, commit, command, *extra),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=service.env(), cwd=PROJECT_ROOT,
    )  # fmt: skip


def finish(process: subprocess.Popen[str]) -> tuple[int, dict[str, Any]]:
    stdout, _ = process.communicate(timeout=300)
    lines = stdout.strip().splitlines()
    return process.returncode, (json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {})


@pytest.fixture
def sleeper() -> Iterator[list[str]]:
    """A long-running deploy command with a unique marker, killed by that marker afterwards
    (a deploy CLI killed with -9 leaves its command behind, as it would on a real host)."""
    marker = f"runner-ctl-test-sleeper-{uuid.uuid4().hex}"
    try:
        yield [sys.executable, "-c", "import time, sys; time.sleep(600)", marker]
    finally:
        subprocess.run(["pkill", "-f", marker], check=False)


def abandon(process: subprocess.Popen[str]) -> None:
    """Kill a deploy CLI with SIGKILL without waiting on pipes its orphaned command holds."""
    process.kill()
    process.wait(timeout=30)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def runs(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def queue_length(service: LockService, env: str = "production") -> int:
    with service.api() as api:
        response = api.get(f"/v1/envs/{env}")
        return len(response.json()["queue"]) if response.status_code == 200 else 0


def holder(service: LockService, env: str = "production") -> dict[str, Any] | None:
    with service.api() as api:
        response = api.get(f"/v1/envs/{env}")
        return response.json()["holder"] if response.status_code == 200 else None


def test_a_deploy_runs_with_its_context_and_never_sees_the_token(
    lock_service: LockService, history: History, recorder: tuple[Path, Path]
) -> None:
    script, log = recorder
    c2 = history.commits["c2"]
    code, result, _ = deploy(lock_service, history, c2, [sys.executable, str(script), str(log), "0"])
    assert code == 0
    assert result["status"] == "succeeded"
    assert set(result) == {
        "env", "commit", "status", "deploy_id", "fencing_token", "previous_commit", "queued_seconds", "run_seconds",
        "exit_code",
    }  # fmt: skip
    (entry,) = runs(log)
    assert entry["RUNNER_CTL_ENV"] == "production"
    assert entry["RUNNER_CTL_COMMIT"] == c2
    assert entry["RUNNER_CTL_PREVIOUS_COMMIT"] == ""
    assert entry["RUNNER_CTL_DEPLOY_ID"] == str(result["deploy_id"])
    assert entry["RUNNER_CTL_FENCING_TOKEN"] == str(result["fencing_token"])
    assert entry["RUNNER_CTL_LOCK_TOKEN"] is None
    # The next deploy learns the previous commit and gets a larger fencing token.
    code, second, _ = deploy(lock_service, history, history.commits["c3"], [sys.executable, str(script), str(log), "0"])
    assert code == 0
    assert runs(log)[1]["RUNNER_CTL_PREVIOUS_COMMIT"] == c2
    assert second["fencing_token"] > result["fencing_token"]


def test_a_failing_command_is_recorded_failed_with_its_exit_code(
    lock_service: LockService, history: History, recorder: tuple[Path, Path]
) -> None:
    script, log = recorder
    code, result, _ = deploy(
        lock_service, history, history.commits["c2"], [sys.executable, str(script), str(log), "0", "7"]
    )
    assert (code, result["status"], result["exit_code"]) == (7, "failed", 7)
    # A failed deploy does not count as deployed: the next one still has no previous commit.
    deploy(lock_service, history, history.commits["c3"], [sys.executable, str(script), str(log), "0"])
    assert runs(log)[1]["RUNNER_CTL_PREVIOUS_COMMIT"] == ""


def test_stale_guard_skips_older_refuses_diverged_allows_rollback(
    lock_service: LockService, history: History, recorder: tuple[Path, Path]
) -> None:
    script, log = recorder
    command = [sys.executable, str(script), str(log), "0"]
    assert deploy(lock_service, history, history.commits["c3"], command)[0] == 0
    code, result, _ = deploy(lock_service, history, history.commits["c2"], command)
    assert (code, result["status"]) == (0, "skipped_stale")
    code, result, stderr = deploy(lock_service, history, history.commits["s1"], command)
    assert (code, result["status"]) == (3, "refused")
    assert "--allow-rollback" in stderr
    assert len(runs(log)) == 1  # neither ran
    code, result, _ = deploy(lock_service, history, history.commits["s1"], command, "--allow-rollback")
    assert (code, result["status"]) == (0, "succeeded")
    with lock_service.api() as api:
        events = [r["event"] for r in api.get("/v1/envs/production/history").json()]
    assert "succeeded (rollback)" in events
    # Redeploying the deployed commit is allowed (same commit).
    assert deploy(lock_service, history, history.commits["s1"], command)[1]["status"] == "succeeded"


def test_deploys_of_one_environment_never_overlap_and_run_fifo(
    lock_service: LockService, history: History, recorder: tuple[Path, Path]
) -> None:
    script, log = recorder
    gate = log.with_name("gate")
    slow = [sys.executable, str(script), str(log), f"gate:{gate}"]
    first = spawn(lock_service, history, history.commits["c1"], slow, "--queue-policy", "all")
    wait_for(lambda: holder(lock_service) is not None, "the first grant")
    second = spawn(lock_service, history, history.commits["c2"], slow, "--queue-policy", "all")
    wait_for(lambda: queue_length(lock_service) == 1, "the second to queue")
    third = spawn(lock_service, history, history.commits["c3"], slow, "--queue-policy", "all")
    wait_for(lambda: queue_length(lock_service) == 2, "the third to queue")
    other_env = deploy(lock_service, history, history.commits["c1"], [sys.executable, str(script), str(log), "0"],
                       env="staging")  # fmt: skip
    assert other_env[0] == 0  # another environment is not held up by production's queue
    gate.touch()
    results = [finish(p) for p in (first, second, third)]
    assert [r[1]["status"] for r in results] == ["succeeded"] * 3
    production = [r for r in runs(log) if r["RUNNER_CTL_ENV"] == "production"]
    assert [r["RUNNER_CTL_COMMIT"] for r in production] == [history.commits[c] for c in ("c1", "c2", "c3")]
    for earlier, later in itertools.pairwise(production):
        assert earlier["ended"] <= later["started"]
    tokens = [int(r["RUNNER_CTL_FENCING_TOKEN"]) for r in production]
    assert tokens == sorted(tokens) and len(set(tokens)) == 3


def test_policy_latest_supersedes_a_queued_commit_with_a_newer_one_behind_it(
    lock_service: LockService, history: History, recorder: tuple[Path, Path]
) -> None:
    script, log = recorder
    gate = log.with_name("gate")
    first = spawn(lock_service, history, history.commits["c1"], [sys.executable, str(script), str(log), f"gate:{gate}"])
    wait_for(lambda: holder(lock_service) is not None, "the first grant")
    second = spawn(lock_service, history, history.commits["c2"], [sys.executable, str(script), str(log), "0"])
    wait_for(lambda: queue_length(lock_service) == 1, "c2 to queue")
    third = spawn(lock_service, history, history.commits["c4"], [sys.executable, str(script), str(log), "0"])
    wait_for(lambda: queue_length(lock_service) == 2, "c4 to queue")
    gate.touch()
    statuses = [finish(p)[1]["status"] for p in (first, second, third)]
    assert statuses == ["succeeded", "superseded", "succeeded"]
    assert [r["RUNNER_CTL_COMMIT"] for r in runs(log)] == [history.commits["c1"], history.commits["c4"]]


def test_a_killed_holder_expires_and_the_next_deploy_proceeds(
    lock_service: LockService, history: History, recorder: tuple[Path, Path], sleeper: list[str]
) -> None:
    script, log = recorder
    doomed = spawn(lock_service, history, history.commits["c2"], sleeper, "--lease-ttl", "3")
    wait_for(lambda: holder(lock_service) is not None, "the doomed grant")
    # kill -9 the CLI: its command is orphaned and nobody renews the lease.
    abandon(doomed)
    started = time.monotonic()
    code, result, _ = deploy(lock_service, history, history.commits["c3"], [sys.executable, str(script), str(log), "0"])
    assert (code, result["status"]) == (0, "succeeded")
    assert time.monotonic() - started < 30  # within the TTL plus a bounded margin, not forever
    assert result["previous_commit"] is None  # the expired deploy never counted
    with lock_service.api() as api:
        events = [r["event"] for r in api.get("/v1/envs/production/history").json()]
    assert "expired" in events


def test_killing_the_service_loses_nothing(
    lock_service: LockService, history: History, recorder: tuple[Path, Path]
) -> None:
    """kill -9 the service with a holder and a waiter; restart it: no overlap, no double grant."""
    script, log = recorder
    gate = log.with_name("gate")
    first = spawn(lock_service, history, history.commits["c1"], [sys.executable, str(script), str(log), f"gate:{gate}"],
                  "--queue-policy", "all", "--lease-ttl", "6")  # fmt: skip
    wait_for(lambda: holder(lock_service) is not None, "the first grant")
    second = spawn(lock_service, history, history.commits["c2"], [sys.executable, str(script), str(log), "0"],
                   "--queue-policy", "all", "--lease-ttl", "6")  # fmt: skip
    wait_for(lambda: queue_length(lock_service) == 1, "the waiter")
    lock_service.kill(signal.SIGKILL)
    time.sleep(1.0)
    lock_service.start()
    gate.touch()  # the holder finishes only after the restart, so it must renew and report to the new process
    results = [finish(p) for p in (first, second)]
    assert [r[1]["status"] for r in results] == ["succeeded", "succeeded"], results
    entries = runs(log)
    assert [e["RUNNER_CTL_COMMIT"] for e in entries] == [history.commits["c1"], history.commits["c2"]]
    assert entries[0]["ended"] <= entries[1]["started"]
    assert int(entries[1]["RUNNER_CTL_FENCING_TOKEN"]) == int(entries[0]["RUNNER_CTL_FENCING_TOKEN"]) + 1


def test_sigterm_while_waiting_withdraws_and_while_running_cancels(
    lock_service: LockService, history: History, tmp_path: Path
) -> None:
    marker = tmp_path / "got-term"
    trap = ["sh", "-c", f"trap 'echo term > {marker}; kill $!; exit 143' TERM; sleep 30 & wait"]
    running = spawn(lock_service, history, history.commits["c2"], trap)
    wait_for(lambda: holder(lock_service) is not None, "the grant")
    waiting = spawn(lock_service, history, history.commits["c3"], ["true"])
    wait_for(lambda: queue_length(lock_service) == 1, "the waiter")
    waiting.send_signal(signal.SIGTERM)
    code, result = finish(waiting)
    assert (code, result["status"]) == (130, "withdrawn")
    time.sleep(0.5)  # let the trap be installed
    running.send_signal(signal.SIGTERM)
    code, result = finish(running)
    assert (code, result["status"]) == (130, "cancelled")
    assert marker.read_text().strip() == "term"  # the signal reached the command
    assert holder(lock_service) is None


def test_wait_timeout_gives_up_and_leaves_the_queue(lock_service: LockService, history: History) -> None:
    blocker = spawn(lock_service, history, history.commits["c2"], ["sleep", "5"])
    wait_for(lambda: holder(lock_service) is not None, "the grant")
    code, result, _ = deploy(lock_service, history, history.commits["c3"], ["true"], "--wait-timeout", "1")
    assert (code, result["status"]) == (4, "timeout")
    assert queue_length(lock_service) == 0
    finish(blocker)


def test_shallow_clone_fetches_the_history_it_needs(
    lock_service: LockService, history: History, tmp_path: Path
) -> None:
    assert deploy(lock_service, history, history.commits["c2"], ["true"])[0] == 0
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{history.origin}", str(shallow)], check=True)
    assert git(shallow, "rev-parse", "--is-shallow-repository") == "true"
    shallow_history = History(history.origin, shallow, history.commits)
    code, result, _ = deploy(lock_service, shallow_history, history.commits["c4"], ["true"])
    assert (code, result["status"]) == (0, "succeeded")
    # Without a reachable origin the guard cannot know, so it refuses and says how to fix it.
    lonely = tmp_path / "lonely"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{history.origin}", str(lonely)], check=True)
    git(lonely, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    older = git(lonely, "rev-parse", "HEAD")  # c4 is deployed; HEAD of main is c4 too, so use the side branch
    assert older == history.commits["c4"]
    code, result, stderr = deploy(lock_service, History(history.origin, lonely, history.commits),
                                  history.commits["c4"], ["true"])  # fmt: skip
    assert (code, result["status"]) == (0, "succeeded")  # same commit: no history needed
    subprocess.run(["git", "-C", str(lonely), "commit", "-q", "--allow-empty", "-m", "local"], check=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"})  # fmt: skip
    local = git(lonely, "rev-parse", "HEAD")
    code, result, stderr = deploy(lock_service, History(history.origin, lonely, history.commits), local, ["true"])
    assert (code, result["status"]) == (3, "refused")
    assert "fetch-depth: 0" in stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--env", "bad/env"], "environment name 'bad/env' is invalid"),
        (["--commit", "0123456789abcdef0123456789abcdef01234567"], "does not resolve"),
        (["--lease-ttl", "1"], "--lease-ttl 1 is out of range"),
        (["--queue-policy", "newest"], "--queue-policy 'newest' is invalid"),
    ],
)
def test_bad_deploy_input_is_one_line_and_exit_2(
    lock_service: LockService, history: History, args: list[str], fragment: str
) -> None:
    base = {"--env": "production", "--commit": history.commits["c2"]}
    extra = []
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag in base:
            base[flag] = value
        else:
            extra += [flag, value]
    argv = [sys.executable, "-m", "runner_ctl", "deploy", *[x for kv in base.items() for x in kv],
            "--repo-dir", str(history.clone), *extra, "--", "true"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, env=lock_service.env(), timeout=120, check=False)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], done.stderr
    assert queue_length(lock_service) == 0 and holder(lock_service) is None


def test_a_wrong_token_is_refused(lock_service: LockService, history: History) -> None:
    code, _, stderr = deploy(lock_service, history, history.commits["c2"], ["true"], secret="x" * 32)
    assert code == 2
    assert "rejected the token" in stderr


def test_an_unreachable_service_exits_6(history: History, tmp_path: Path) -> None:
    service = LockService(tmp_path, free_port())  # never started
    env = {**service.env(), "RUNNER_CTL_LOCK_RETRY_SECONDS": "1"}
    done = subprocess.run(
        _argv(service, history, history.commits["c2"], ["true"]),
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 6
    assert "unreachable" in done.stderr


def test_admin_release_breaks_a_stuck_lock(lock_service: LockService, history: History, sleeper: list[str]) -> None:
    stuck = spawn(lock_service, history, history.commits["c2"], sleeper)
    wait_for(lambda: holder(lock_service) is not None, "the grant")
    release = [sys.executable, "-m", "runner_ctl", "lock", "release", "--env", "production", "--reason", "stuck"]
    refused = subprocess.run(release, capture_output=True, text=True, env=lock_service.env(), timeout=60, check=False)
    assert refused.returncode == 2 and "admin" in refused.stderr
    done = subprocess.run(release, capture_output=True, text=True, timeout=60, check=False,
                          env=lock_service.env(lock_service.admin_secret))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert holder(lock_service) is None
    abandon(stuck)


def test_an_outage_keeps_the_command_running_and_a_lost_lease_is_reported(
    lock_service: LockService, history: History, recorder: tuple[Path, Path]
) -> None:
    """The service dies while a deploy runs; the command carries on. After the restart an
    admin breaks the lock, so the holder learns its lease is gone: lease_lost, exit 5."""
    script, log = recorder
    gate = log.with_name("gate")
    running = spawn(lock_service, history, history.commits["c2"],
                    [sys.executable, str(script), str(log), f"gate:{gate}"], "--lease-ttl", "3")  # fmt: skip
    wait_for(lambda: holder(lock_service) is not None, "the grant")
    lock_service.kill(signal.SIGKILL)
    time.sleep(2.5)  # heartbeats (every 1 s) fail meanwhile; the CLI must not give up the command
    assert running.poll() is None
    lock_service.start()
    with lock_service.api(lock_service.admin_secret) as api:
        assert api.post("/v1/envs/production/release", json={"reason": "test"}).status_code == 200
    gate.touch()
    code, result = finish(running)
    assert (code, result["status"]) == (5, "lease_lost")
    assert len(runs(log)) == 1  # the command ran to its end
