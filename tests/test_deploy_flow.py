"""`runner-ctl deploy` from the grant to the finish: the lease, heartbeat failures, signals.

Against a real lock service process on loopback and real git repositories (a slow origin is a
real one whose upload-pack sleeps first)."""

import functools
import itertools
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from runner_ctl import gitrepo
from runner_ctl.errors import RunnerCtlError
from tests.conftest import PROJECT_ROOT
from tests.deployfixtures import (
    Deploy,
    Relay,
    assert_free,
    deploys,
    kill_pids,
    lock_state,
    process_gone,
    record,
    recorded,
    settle,
    slow_clone,
)
from tests.lockfixtures import History, LockService, history, lock_service, wait_for

__all__ = ["history", "lock_service"]  # fixtures, imported to be found

GATE = (
    "import os, sys, time\n"
    "deadline = time.time() + 120\n"
    "while not os.path.exists(sys.argv[1]) and time.time() < deadline:\n"
    "    time.sleep(0.05)\n"
)


def gated(gate: Path) -> list[str]:
    """A COMMAND that holds the lock until the test creates ``gate`` (120 s at most)."""
    return [sys.executable, "-c", GATE, str(gate)]


def holder_id(service: LockService, env: str = "production") -> int | None:
    with service.api() as api:
        response = api.get(f"/v1/envs/{env}")
        holder = response.json()["holder"] if response.status_code == 200 else None
        return None if holder is None else int(holder["id"])


def queued(service: LockService, env: str = "production") -> int:
    with service.api() as api:
        response = api.get(f"/v1/envs/{env}")
        return len(response.json()["queue"]) if response.status_code == 200 else 0


def deploy_now(service: LockService, history: History, commit: str) -> None:
    """The next deploy of the environment is granted at once: it may not wait for a lease to run out."""
    with deploys() as started:
        started.append(Deploy(service.env(), history.clone, commit, ["true"], "--wait-timeout", "3"))
        code, result, stderr = started[0].result()
    assert (code, result.get("status")) == (0, "succeeded"), stderr


def interrupt(deploy: Deploy, signals: list[int], status: str) -> None:
    """Signal a deploy (one signal, or two in quick succession): it ends with exit 130 and
    ``status`` within a bounded time, and without a traceback."""
    for sig in signals:
        deploy.signal(sig)
    code, result, stderr = deploy.result(timeout=60)
    assert (code, result.get("status")) == (130, status), stderr
    assert "Traceback" not in stderr


def test_the_lease_covers_a_slow_fetch_in_the_stale_guard(
    lock_service: LockService, history: History, tmp_path: Path
) -> None:
    """The stale guard deepens a shallow clone from a slow origin for longer than the lease's TTL;
    a second deploy waits behind it. Renewals from the grant on keep the first one's lease, so
    the two never overlap and both succeed."""
    log = tmp_path / "runs.jsonl"
    with deploys() as started:
        started.append(Deploy(lock_service.env(), history.clone, history.commits["c2"], record(log)))
        assert started[0].result()[0] == 0  # c2 is deployed: the next guard needs history
        slow = slow_clone(history, tmp_path / "slow", 3)  # two fetches (c2, then --unshallow): 6 s > TTL 3
        first = Deploy(lock_service.env(), slow.clone, history.commits["c4"], record(log, 0.5),
                       "--lease-ttl", "3", "--queue-policy", "all")  # fmt: skip
        started.append(first)
        wait_for(lambda: holder_id(lock_service) is not None, "the first grant")
        second = Deploy(lock_service.env(), history.clone, history.commits["c4"], record(log, 0.5),
                        "--lease-ttl", "3", "--queue-policy", "all")  # fmt: skip
        started.append(second)
        wait_for(lambda: queued(lock_service) == 1, "the second deploy to queue")
        results = [first.result(), second.result()]
    assert [(code, result.get("status")) for code, result, _ in results] == [(0, "succeeded")] * 2, results
    entries = sorted(recorded(log)[1:], key=lambda entry: entry["started"])
    assert len(entries) == 2
    for earlier, later in itertools.pairwise(entries):
        assert earlier["ended"] <= later["started"], entries
    assert_free(lock_service)


def test_rejected_renewals_warn_at_once_and_end_as_lease_lost(
    lock_service: LockService, history: History, tmp_path: Path
) -> None:
    """A redeploy rotates the service's tokens while a deploy runs: every renewal gets 401. The
    deploy says so at once, treats the lease as lost after a TTL without a renewal, and never
    reports success for its command."""
    gate = tmp_path / "gate"
    with deploys() as started:
        running = Deploy(lock_service.env(), history.clone, history.commits["c2"], gated(gate), "--lease-ttl", "3")
        started.append(running)
        wait_for(lambda: holder_id(lock_service) is not None, "the grant")
        running.wait_line("deploying")
        lock_service.kill(signal.SIGTERM)
        lock_service.ci_secret = "rotated-" + lock_service.ci_secret
        lock_service.token_file.write_text(f"ci:{lock_service.ci_secret}\nops:{lock_service.admin_secret}:admin\n")
        lock_service.start()
        running.wait_line("warning: lease renewal failed", seconds=30)
        assert running.process.poll() is None  # the warning came while the command still ran
        running.wait_line("treating the lease as lost", seconds=30)
        gate.touch()
        code, result, stderr = running.result()
    assert (code, result.get("status")) == (5, "lease_lost"), stderr
    assert "Traceback" not in stderr and "Exception in thread" not in stderr
    assert "rotated-" not in stderr


def test_heartbeats_answered_with_a_404_page_end_as_lease_lost_never_success(
    lock_service: LockService, history: History, tmp_path: Path
) -> None:
    """Between the deploy and the service, something answers renewals with a 404 HTML page (not
    the service's JSON): the deploy warns at once, then gives the lease up and does not report
    its command's success, which the service must not count as the deployed commit either."""
    gate = tmp_path / "gate"
    with deploys() as started, Relay(lock_service.url, refuse="/heartbeat") as relay:
        env = {**lock_service.env(), "RUNNER_CTL_LOCK_URL": relay.url}
        running = Deploy(env, history.clone, history.commits["c2"], gated(gate), "--lease-ttl", "3")
        started.append(running)
        running.wait_line("warning: lease renewal failed", seconds=30)
        assert running.process.poll() is None  # the warning came while the command still ran
        running.wait_line("treating the lease as lost", seconds=30)
        gate.touch()
        code, result, stderr = running.result()
        assert relay.refused >= 1
    assert (code, result.get("status")) == (5, "lease_lost"), stderr
    assert "Traceback" not in stderr and "Exception in thread" not in stderr
    assert lock_state(lock_service)["last_commit"] is None
    assert_free(lock_service)


def test_a_command_that_ignores_sigterm_is_killed_after_the_grace_period(
    lock_service: LockService, history: History, tmp_path: Path
) -> None:
    parent, child = tmp_path / "parent.pid", tmp_path / "child.pid"
    stubborn = ["sh", "-c", f'trap "" TERM INT; sleep 600 & echo $! > {child}; echo $$ > {parent}; wait']
    pids: list[int] = []
    try:
        with deploys() as started:
            running = Deploy(lock_service.env(), history.clone, history.commits["c2"], stubborn, "--grace-seconds", "1")
            started.append(running)
            wait_for(lambda: all(f.exists() and f.read_text().strip() for f in (parent, child)), "the pid files")
            pids = [int(parent.read_text()), int(child.read_text())]
            running.signal(signal.SIGTERM)
            code, result, stderr = running.result(timeout=60)
        assert (code, result.get("status")) == (130, "cancelled"), stderr
        for pid in pids:
            wait_for(functools.partial(process_gone, pid), f"process {pid} (COMMAND's group) to be gone", 10)
        assert "grace" in stderr
        assert_free(lock_service)
        deploy_now(lock_service, history, history.commits["c3"])
    finally:
        kill_pids(*pids)


@pytest.mark.parametrize(
    ("busy", "signals"),
    [(False, [signal.SIGTERM]), (True, [signal.SIGTERM]), (True, [signal.SIGINT, signal.SIGTERM])],
    ids=["granted-at-once", "queued", "queued-two-signals"],
)
def test_a_signal_during_enqueue_leaves_nothing_behind(
    lock_service: LockService, history: History, tmp_path: Path, busy: bool, signals: list[int]
) -> None:
    """The service has made the request (queued it, or granted it at once on a free environment)
    but its answer has not reached the client when the signal arrives: the client still learns
    the id, then withdraws a queued request or finishes a granted one as cancelled."""
    gate = tmp_path / "gate"
    with deploys() as started:
        holding = None
        if busy:
            holding = Deploy(lock_service.env(), history.clone, history.commits["c2"], gated(gate))
            wait_for(lambda: holder_id(lock_service) is not None, "the holder's grant")

        def interrupt() -> None:
            for sig in signals:
                started[0].signal(sig)
            settle(1.0)

        with Relay(lock_service.url, "/requests", interrupt) as relay:
            env = {**lock_service.env(), "RUNNER_CTL_LOCK_URL": relay.url}
            started.append(Deploy(env, history.clone, history.commits["c3"], ["true"]))
            if holding is not None:
                started.append(holding)
            code, result, stderr = started[0].result()
            assert relay.held.is_set()
        assert (code, result.get("status")) == (130, "withdrawn" if busy else "cancelled"), stderr
        assert "Traceback" not in stderr
        assert queued(lock_service) == 0
        if holding is not None:
            gate.touch()
            assert holding.result()[0] == 0
    assert_free(lock_service)
    deploy_now(lock_service, history, history.commits["c3"])


def test_a_signal_while_waiting_withdraws(lock_service: LockService, history: History, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with deploys() as started:
        holding = Deploy(lock_service.env(), history.clone, history.commits["c2"], gated(gate))
        started.append(holding)
        wait_for(lambda: holder_id(lock_service) is not None, "the grant")
        waiting = Deploy(lock_service.env(), history.clone, history.commits["c3"], ["true"])
        started.append(waiting)
        waiting.wait_line("waiting for production")
        interrupt(waiting, [signal.SIGINT, signal.SIGTERM], "withdrawn")
        assert queued(lock_service) == 0
        gate.touch()
        assert holding.result()[0] == 0
    assert_free(lock_service)
    deploy_now(lock_service, history, history.commits["c3"])


@pytest.mark.parametrize("signals", [[signal.SIGTERM], [signal.SIGTERM, signal.SIGINT]], ids=["one", "two"])
def test_a_signal_during_the_stale_guard_releases_the_lease(
    lock_service: LockService, history: History, tmp_path: Path, signals: list[int]
) -> None:
    """Granted, then deepening a shallow clone from a slow origin: a signal ends the fetch and
    finishes the request as cancelled, so the lock is free at once, not when the lease runs out."""
    log = tmp_path / "runs.jsonl"
    with deploys() as started:
        started.append(Deploy(lock_service.env(), history.clone, history.commits["c2"], ["true"]))
        assert started[0].result()[0] == 0
        slow = slow_clone(history, tmp_path / "slow", 60)
        guarded = Deploy(lock_service.env(), slow.clone, history.commits["c4"], record(log), "--lease-ttl", "60")
        started.append(guarded)
        wait_for(lambda: holder_id(lock_service) is not None, "the grant")
        settle(1.0)  # into the fetch
        interrupt(guarded, signals, "cancelled")
    assert recorded(log) == []  # the command never started
    assert_free(lock_service)
    deploy_now(lock_service, history, history.commits["c4"])


@pytest.mark.parametrize("signals", [[signal.SIGTERM], [signal.SIGINT, signal.SIGTERM]], ids=["one", "two"])
def test_a_signal_while_the_command_runs_cancels_and_releases(
    lock_service: LockService, history: History, tmp_path: Path, signals: list[int]
) -> None:
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    with deploys() as started:
        running = Deploy(lock_service.env(), history.clone, history.commits["c2"], sleeper, "--lease-ttl", "60")
        started.append(running)
        running.wait_line("deploying")
        interrupt(running, signals, "cancelled")
    assert_free(lock_service)
    deploy_now(lock_service, history, history.commits["c2"])


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--wait-timeout", "nan"),
        ("--wait-timeout", "inf"),
        ("--wait-timeout", "-1"),
        ("--lease-ttl", "nan"),
        ("--grace-seconds", "nan"),
        ("--grace-seconds", "-1"),
        ("--grace-seconds", "3601"),
    ],
)
def test_bad_seconds_are_one_line_and_exit_2(
    lock_service: LockService, history: History, flag: str, value: str
) -> None:
    with deploys() as started:
        started.append(Deploy(lock_service.env(), history.clone, history.commits["c2"], ["true"], flag, value))
        code, _, stderr = started[0].result()
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert len(lines) == 1 and f"{flag} {value}" in lines[0] and "out of range" in lines[0], stderr
    assert_free(lock_service)


def test_git_missing_from_path_is_one_line(lock_service: LockService, history: History, tmp_path: Path) -> None:
    empty = tmp_path / "no-git"
    empty.mkdir()
    argv = [sys.executable, "-m", "runner_ctl", "deploy", "--env", "production", "--commit", history.commits["c2"],
            "--repo-dir", str(history.clone), "--", "true"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, cwd=PROJECT_ROOT,
                          env={**lock_service.env(), "PATH": str(empty)})  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "install git" in lines[0], done.stderr
    assert_free(lock_service)


def test_a_git_timeout_is_one_line_and_ends_the_fetch(
    history: History, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fetch that outlives FETCH_TIMEOUT: a one-line error, and git's helpers (here the slow
    upload-pack) are ended with it rather than left holding the pipes until they finish."""
    monkeypatch.setattr(gitrepo, "FETCH_TIMEOUT", 1.0)
    slow = slow_clone(history, tmp_path / "slow", 30)
    repo = gitrepo.GitRepo(slow.clone)
    with pytest.raises(RunnerCtlError) as caught:
        repo.resolve(history.commits["c2"])  # not in the depth-1 clone: fetched from the slow origin
    assert "took longer than 1 s" in caught.value.message
    assert "\n" not in caught.value.message
