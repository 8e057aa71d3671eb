"""``runner-ctl deploy``: wait for the environment's lock, guard against stale commits, run, record.

Flow: enqueue -> long-poll until granted -> at the grant, the stale guard (git ancestry
against the last successfully deployed commit) and the queue policy -> run COMMAND with
its output streamed while a heartbeat thread renews the lease every TTL/3 -> report the
outcome, which releases the lock to the next request at once.

Exit codes: 0 succeeded, skipped_stale or superseded; COMMAND's own code when it failed;
2 usage or configuration error; 3 refused; 4 timeout; 5 lease_lost; 6 service unreachable;
130 withdrawn or cancelled (a signal).
"""

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from runner_ctl.errors import RunnerCtlError, UsageError
from runner_ctl.gitrepo import AncestryUnavailableError, GitRepo
from runner_ctl.lock.client import LeaseLost, LockClient, ServiceUnreachableError
from runner_ctl.lock.states import Outcome, validate_env

__all__ = ["EXIT_CODES", "DeployOptions", "DeployResult", "run_deploy"]

EXIT_CODES: dict[str, int] = {
    "succeeded": 0,
    "skipped_stale": 0,
    "superseded": 0,
    "refused": 3,
    "timeout": 4,
    "lease_lost": 5,
    "withdrawn": 130,
    "cancelled": 130,
    "expired": 5,
}
GRACE_SECONDS = 30.0
Progress = Callable[[str], None]


@dataclass(frozen=True)
class DeployOptions:
    env: str
    commit: str
    command: Sequence[str]
    repo_dir: Path
    queue_policy: str = "latest"
    lease_ttl: float = 30.0
    wait_timeout: float | None = None
    allow_rollback: bool = False
    reason: str = ""
    grace_seconds: float = GRACE_SECONDS


@dataclass
class DeployResult:
    env: str
    commit: str
    status: str
    deploy_id: int | None = None
    fencing_token: int | None = None
    previous_commit: str | None = None
    queued_seconds: float = 0.0
    run_seconds: float = 0.0
    exit_code: int = 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["queued_seconds"] = round(self.queued_seconds, 3)
        data["run_seconds"] = round(self.run_seconds, 3)
        return data


class _InterruptedError(Exception):
    """A signal arrived while waiting for the lock."""


def _validate(options: DeployOptions) -> None:
    try:
        validate_env(options.env)
    except ValueError as error:
        raise UsageError(f"--env: {error}") from None
    if options.queue_policy not in ("latest", "all"):
        raise UsageError(f"--queue-policy {options.queue_policy!r} is invalid; expected 'latest' or 'all'")
    if not 3 <= options.lease_ttl <= 3600:
        raise UsageError(f"--lease-ttl {options.lease_ttl:g} is out of range; expected 3 to 3600 seconds")
    if options.wait_timeout is not None and options.wait_timeout < 0:
        raise UsageError(f"--wait-timeout {options.wait_timeout:g} is negative; expected seconds >= 0")
    if not options.command:
        raise UsageError("no COMMAND to run; put it after '--', e.g. runner-ctl deploy ... -- ./deploy.sh")
    if len(options.reason) > 500:
        raise UsageError("--reason is longer than 500 characters")


class _Heartbeat(threading.Thread):
    """Renews the lease every TTL/3 while COMMAND runs; rides out an unreachable service."""

    def __init__(self, client: LockClient, request_id: int, fencing_token: int, ttl: float, progress: Progress) -> None:
        super().__init__(name="runner-ctl-heartbeat", daemon=True)
        self.client, self.request_id, self.fencing_token = client, request_id, fencing_token
        self.interval = ttl / 3
        self.progress = progress
        self.stop = threading.Event()
        self.lost: str | None = None

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                self.client.heartbeat(self.request_id, self.fencing_token)
            except LeaseLost as error:
                self.lost = error.message
                self.progress(f"warning: {error.message}; another deploy may now hold the environment")
                return
            except ServiceUnreachableError as error:
                # Keep COMMAND running and keep trying: the lease may well survive a short outage.
                self.progress(f"warning: lease renewal failed, retrying: {error.message}")


def _wait_for_grant(
    client: LockClient, request: dict[str, Any], options: DeployOptions, progress: Progress
) -> dict[str, Any]:
    deadline = None if options.wait_timeout is None else time.monotonic() + options.wait_timeout
    poll = max(1.0, min(25.0, options.lease_ttl / 2))  # a waiter renews its place with each long-poll
    last_position = None
    while request["state"] == "queued":
        if request["position"] != last_position:
            progress(f"waiting for {options.env}: position {request['position']} in the queue")
            last_position = request["position"]
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            break
        request = client.wait(request["id"], poll if remaining is None else max(0.0, min(poll, remaining)))
    return request


def _run_command(
    options: DeployOptions, env: dict[str, str], heartbeat: _Heartbeat, progress: Progress
) -> tuple[int, bool]:
    """Run COMMAND (output streamed); forward SIGINT/SIGTERM to it. Returns (exit code, cancelled)."""
    process = subprocess.Popen(list(options.command), env=env)
    received: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        progress(f"signal {signum}: forwarding it to the deploy command, then {options.grace_seconds:g} s grace")
        if process.poll() is None:
            process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    heartbeat.start()
    try:
        while True:
            try:
                code = process.wait(timeout=options.grace_seconds if received else None)
                break
            except subprocess.TimeoutExpired:
                progress("the deploy command outlived its grace period; killing it")
                process.kill()
    finally:
        heartbeat.stop.set()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return (128 - code if code < 0 else code), bool(received)


def run_deploy(options: DeployOptions, client: LockClient, progress: Progress) -> DeployResult:
    """The whole flow. Expected failures come back as a result with a status, not an exception,
    except usage errors before anything was queued."""
    _validate(options)
    repo = GitRepo(options.repo_dir)
    commit = repo.resolve(options.commit)
    result = DeployResult(env=options.env, commit=commit, status="")
    started = time.monotonic()

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise _InterruptedError

    previous = {sig: signal.signal(sig, interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    request: dict[str, Any] | None = None
    try:
        request = client.enqueue(
            options.env,
            commit=commit,
            reason=options.reason,
            queue_policy=options.queue_policy,
            lease_ttl=options.lease_ttl,
        )
        result.deploy_id = request["id"]
        request = _wait_for_grant(client, request, options, progress)
    except _InterruptedError:
        if request is not None:
            client.withdraw(request["id"], "withdrawn")
        result.status = "withdrawn"
        return _finish_result(result, started)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    result.queued_seconds = time.monotonic() - started
    if request["state"] == "queued":
        client.withdraw(request["id"], "timeout")
        result.status = "timeout"
        return _finish_result(result, None)
    if request["state"] == "done":  # the service ended it while we waited (our lease ran out)
        result.status = "lease_lost"
        return _finish_result(result, None)
    return _holding(options, client, repo, request, result, progress)


def _finish_result(result: DeployResult, started: float | None) -> DeployResult:
    if started is not None:
        result.queued_seconds = time.monotonic() - started
    result.exit_code = EXIT_CODES.get(result.status, result.exit_code)
    return result


def _holding(
    options: DeployOptions,
    client: LockClient,
    repo: GitRepo,
    request: dict[str, Any],
    result: DeployResult,
    progress: Progress,
) -> DeployResult:
    token = int(request["fencing_token"])
    last = request["previous_commit"]
    result.fencing_token, result.previous_commit = token, last
    commit = result.commit

    def report(outcome: Outcome, detail: str, exit_code: int | None = None, rollback: bool = False) -> DeployResult:
        try:
            client.finish(
                request["id"], fencing_token=token, outcome=str(outcome), exit_code=exit_code, rollback=rollback,
                detail=detail,
            )  # fmt: skip
            result.status = str(outcome)
        except LeaseLost:
            result.status = "lease_lost"
        if result.status == "failed":
            result.exit_code = exit_code if exit_code else 1
        else:
            result.exit_code = EXIT_CODES.get(result.status, 0)
        return result

    rollback = False
    try:
        if last:
            relation = repo.relation(commit, last)
            if relation.candidate_is_ancestor:
                progress(f"skipping: {commit[:12]} is older than the deployed {last[:12]}")
                return report(Outcome.SKIPPED_STALE, f"ancestor of the deployed {last}")
            if relation.diverged:
                if not options.allow_rollback:
                    progress(
                        f"refusing: {commit[:12]} and the deployed {last[:12]} have diverged; "
                        "pass --allow-rollback to deploy it anyway"
                    )
                    return report(Outcome.REFUSED, f"diverged from the deployed {last}")
                rollback = True
        if options.queue_policy == "latest":
            newer = next((c for c in request["queued_behind"] if repo.is_strict_descendant(c, of=commit)), None)
            if newer:
                progress(f"superseded: {newer[:12]}, a descendant, is queued behind")
                return report(Outcome.SUPERSEDED, f"descendant {newer} queued behind")
    except AncestryUnavailableError as error:
        progress(f"refusing: {error.message}")
        return report(Outcome.REFUSED, error.message)

    env = {k: v for k, v in os.environ.items() if k != "RUNNER_CTL_LOCK_TOKEN"}  # never hand the secret on
    env.update(
        RUNNER_CTL_ENV=options.env,
        RUNNER_CTL_COMMIT=commit,
        RUNNER_CTL_PREVIOUS_COMMIT=last or "",
        RUNNER_CTL_DEPLOY_ID=str(request["id"]),
        RUNNER_CTL_FENCING_TOKEN=str(token),
    )
    progress(f"deploying {commit[:12]} to {options.env} (fencing token {token}{', rollback' if rollback else ''})")
    heartbeat = _Heartbeat(client, request["id"], token, options.lease_ttl, progress)
    started = time.monotonic()
    try:
        code, cancelled = _run_command(options, env, heartbeat, progress)
    except OSError as error:
        result.run_seconds = time.monotonic() - started
        return report(Outcome.FAILED, f"could not start the command: {error}", exit_code=127)
    result.run_seconds = time.monotonic() - started
    if heartbeat.lost:
        result.status, result.exit_code = "lease_lost", EXIT_CODES["lease_lost"]
        # The audit trail still learns how the command ended (the service records it as lease_lost).
        with contextlib.suppress(RunnerCtlError):
            client.finish(request["id"], fencing_token=token, outcome="failed" if code else "succeeded",
                          exit_code=code, rollback=rollback, detail="finished after its lease was lost")  # fmt: skip
        return result
    if cancelled:
        return report(Outcome.CANCELLED, f"signalled; the command exited {code}", exit_code=code)
    if code == 0:
        return report(Outcome.SUCCEEDED, "", exit_code=0, rollback=rollback)
    return report(Outcome.FAILED, f"the command exited {code}", exit_code=code, rollback=rollback)
