"""``runner-ctl deploy``: wait for the environment's lock, guard against stale commits, run, record.

Flow: enqueue -> long-poll until granted -> from the grant on, a heartbeat thread renews the
lease every TTL/3 -> the stale guard (git ancestry against the last successfully deployed
commit, fetching history if needed) and the queue policy -> run COMMAND in its own process
group with its output streamed -> stop and join the heartbeat -> report the outcome, which
releases the lock to the next request at once.

SIGINT/SIGTERM are handled from before the request is queued until the outcome is reported, so
a signal at any moment leaves nothing held or queued: a queued request is withdrawn, a granted
one is finished as ``cancelled``, and a running COMMAND gets the signal, then SIGKILL for its
whole process group after the grace period.

Exit codes: 0 succeeded, skipped_stale or superseded; COMMAND's own code when it failed;
2 usage or configuration error; 3 refused; 4 timeout; 5 lease_lost; 6 service unreachable;
130 withdrawn or cancelled (a signal).
"""

import contextlib
import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from runner_ctl.errors import RunnerCtlError, UsageError
from runner_ctl.gitrepo import GitRepo
from runner_ctl.lock.client import LeaseLost, LockClient
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
MAX_WAIT_TIMEOUT = 7 * 24 * 3600.0
POLL_SECONDS = 0.1  # how often the COMMAND wait loop looks at signals and the grace deadline
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
    """A signal arrived inside an interruptible stretch (waiting for the lock, the stale guard)."""


def _check_seconds(flag: str, value: float, low: float, high: float) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        raise UsageError(f"{flag} {value:g} is out of range; expected {low:g} to {high:g} seconds")


def _validate(options: DeployOptions) -> None:
    try:
        validate_env(options.env)
    except ValueError as error:
        raise UsageError(f"--env: {error}") from None
    if options.queue_policy not in ("latest", "all"):
        raise UsageError(f"--queue-policy {options.queue_policy!r} is invalid; expected 'latest' or 'all'")
    _check_seconds("--lease-ttl", options.lease_ttl, 3, 3600)
    if options.wait_timeout is not None:
        _check_seconds("--wait-timeout", options.wait_timeout, 0, MAX_WAIT_TIMEOUT)
    _check_seconds("--grace-seconds", options.grace_seconds, 0, 3600)
    if not options.command:
        raise UsageError("no COMMAND to run; put it after '--', e.g. runner-ctl deploy ... -- ./deploy.sh")
    if len(options.reason) > 500:
        raise UsageError("--reason is longer than 500 characters")


class _Signals:
    """SIGINT/SIGTERM for the whole deploy, installed before anything is queued.

    The handler only records the signal, except in two places: inside ``interruptible()`` (the
    long-poll and the stale guard, where giving up early is safe because the request id is known)
    it raises once; once COMMAND runs it forwards the signal to COMMAND's process group. It never
    prints: a write to stderr from a handler can collide with the write it interrupted."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.group: int | None = None
        self._raise = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_Signals":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if self.group is not None:
            self.send(signum)
        elif self._raise:
            self._raise = False  # a second signal is only noted, never a second exception
            raise _InterruptedError

    def send(self, signum: int) -> None:
        if self.group is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.group, signum)

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        self._raise = True
        try:
            if self.received:
                self._raise = False
                raise _InterruptedError
            yield
        finally:
            self._raise = False


class _Heartbeat(threading.Thread):
    """Renews the lease every TTL/3 from the grant until stopped. A failed renewal is announced at
    once and retried; when none has succeeded for a whole TTL, the lease is treated as lost."""

    def __init__(self, client: LockClient, request_id: int, fencing_token: int, ttl: float, progress: Progress) -> None:
        super().__init__(name="runner-ctl-heartbeat", daemon=True)
        self.client, self.request_id, self.fencing_token = client, request_id, fencing_token
        self.ttl, self.interval = ttl, ttl / 3
        self.progress = progress
        self.stopping = threading.Event()
        self.lost: str | None = None
        self.last_renewal = time.monotonic()  # the grant renews nothing, but the lease starts there

    def run(self) -> None:
        delay = self.interval
        while not self.stopping.wait(delay):
            try:
                self.client.heartbeat(self.request_id, self.fencing_token)
            except LeaseLost as error:
                self.lost = error.message
                self.progress(f"warning: {error.message}; another deploy may now hold the environment")
                return
            except Exception as error:  # any failed renewal must be seen; it never ends the thread
                # Only our own errors' messages are known to be free of header values.
                why = error.message if isinstance(error, RunnerCtlError) else f"unexpected {type(error).__name__}"
                if time.monotonic() - self.last_renewal >= self.ttl:
                    self.lost = f"no lease renewal succeeded for {self.ttl:g} s ({why})"
                    self.progress(f"warning: {self.lost}; treating the lease as lost")
                    return
                self.progress(f"warning: lease renewal failed, retrying: {why}")
                delay = min(self.interval, 1.0)
                continue
            self.last_renewal = time.monotonic()
            delay = self.interval

    def halt(self) -> None:
        """Stop renewing and wait for a renewal in flight, so none reaches the service after the finish."""
        self.stopping.set()
        if self.is_alive():
            self.join()


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


def _release(client: LockClient, request_id: int) -> str:
    """After a signal before the deploy began: leave the queue, or if the request was granted
    meanwhile, finish it as cancelled, so nothing stays held. Returns the status to report."""
    left = client.withdraw(request_id, "withdrawn")
    if left.get("state") == "granted":
        with contextlib.suppress(LeaseLost):
            client.finish(request_id, fencing_token=int(left["fencing_token"]), outcome=str(Outcome.CANCELLED),
                          exit_code=None, rollback=False, detail="signalled before the deploy began")  # fmt: skip
        return "cancelled"
    return "withdrawn"


def run_deploy(options: DeployOptions, client: LockClient, progress: Progress) -> DeployResult:
    """The whole flow. Expected failures come back as a result with a status, not an exception,
    except usage errors before anything was queued."""
    _validate(options)
    repo = GitRepo(options.repo_dir)
    commit = repo.resolve(options.commit)
    result = DeployResult(env=options.env, commit=commit, status="")
    started = time.monotonic()
    with _Signals() as signals:
        if signals.received:
            result.status = "withdrawn"
            return _finish_result(result, started)
        # Not interruptible: the service may create the request before its answer arrives, and the
        # id in that answer is what a withdrawal needs. A signal meanwhile is acted on just below.
        request = client.enqueue(
            options.env, commit=commit, reason=options.reason, queue_policy=options.queue_policy,
            lease_ttl=options.lease_ttl,
        )  # fmt: skip
        result.deploy_id = request["id"]
        try:
            with signals.interruptible():
                request = _wait_for_grant(client, request, options, progress)
        except _InterruptedError:
            pass
        if signals.received:
            progress(f"signal {signals.received[0]}: leaving the queue")
            result.status = _release(client, result.deploy_id)
            return _finish_result(result, started)
        result.queued_seconds = time.monotonic() - started
        if request["state"] == "queued":
            left = client.withdraw(request["id"], "timeout")
            if left.get("state") != "granted":
                result.status = "timeout"
                return _finish_result(result, None)
            request = left  # granted just as the wait ran out: take it
        if request["state"] == "done":  # the service ended it while we waited (our lease ran out)
            result.status = "lease_lost"
            return _finish_result(result, None)
        heartbeat = _Heartbeat(client, request["id"], int(request["fencing_token"]), options.lease_ttl, progress)
        heartbeat.start()
        return _holding(_Held(options, client, repo, request, result, progress, heartbeat, signals))


def _finish_result(result: DeployResult, started: float | None) -> DeployResult:
    if started is not None:
        result.queued_seconds = time.monotonic() - started
    result.exit_code = EXIT_CODES.get(result.status, result.exit_code)
    return result


@dataclass
class _Verdict:
    outcome: Outcome
    detail: str
    exit_code: int | None = None
    rollback: bool = False


def _stale_guard(
    options: DeployOptions, repo: GitRepo, request: dict[str, Any], commit: str, progress: Progress
) -> _Verdict | bool:
    """Why not to deploy, or whether deploying is a rollback."""
    last = request["previous_commit"]
    rollback = False
    try:
        if last:
            relation = repo.relation(commit, last)
            if relation.candidate_is_ancestor:
                progress(f"skipping: {commit[:12]} is older than the deployed {last[:12]}")
                return _Verdict(Outcome.SKIPPED_STALE, f"ancestor of the deployed {last}")
            if relation.diverged:
                if not options.allow_rollback:
                    progress(
                        f"refusing: {commit[:12]} and the deployed {last[:12]} have diverged; "
                        "pass --allow-rollback to deploy it anyway"
                    )
                    return _Verdict(Outcome.REFUSED, f"diverged from the deployed {last}")
                rollback = True
        if options.queue_policy == "latest":
            newer = next((c for c in request["queued_behind"] if repo.is_strict_descendant(c, of=commit)), None)
            if newer:
                progress(f"superseded: {newer[:12]}, a descendant, is queued behind")
                return _Verdict(Outcome.SUPERSEDED, f"descendant {newer} queued behind")
    except RunnerCtlError as error:  # the history is unavailable, or git itself failed
        progress(f"refusing: {error.message}")
        return _Verdict(Outcome.REFUSED, error.message)
    return rollback


@dataclass
class _Held:
    """A granted request and what acts on it until the finish."""

    options: DeployOptions
    client: LockClient
    repo: GitRepo
    request: dict[str, Any]
    result: DeployResult
    progress: Progress
    heartbeat: _Heartbeat
    signals: _Signals


def _holding(held: _Held) -> DeployResult:
    client, request, result, heartbeat = held.client, held.request, held.result, held.heartbeat
    token = int(request["fencing_token"])
    result.fencing_token, result.previous_commit = token, request["previous_commit"]
    try:
        verdict = _hold(held)
    except BaseException:
        # A bug: still release the lock rather than leave it to expire, then let the error show.
        heartbeat.halt()
        with contextlib.suppress(Exception):
            client.finish(request["id"], fencing_token=token, outcome=str(Outcome.FAILED), exit_code=None,
                          rollback=False, detail="runner-ctl failed unexpectedly")  # fmt: skip
        raise
    heartbeat.halt()
    if heartbeat.lost:
        result.status, result.exit_code = "lease_lost", EXIT_CODES["lease_lost"]
        # The audit trail still learns how the command ended, but never as a success: another
        # deploy may have run meanwhile, so this one must not count as the deployed commit.
        with contextlib.suppress(RunnerCtlError):
            client.finish(request["id"], fencing_token=token, outcome=str(Outcome.FAILED),
                          exit_code=verdict.exit_code, rollback=verdict.rollback,
                          detail=f"lease lost ({heartbeat.lost}); {verdict.outcome}: {verdict.detail}")  # fmt: skip
        return result
    try:
        client.finish(request["id"], fencing_token=token, outcome=str(verdict.outcome), exit_code=verdict.exit_code,
                      rollback=verdict.rollback, detail=verdict.detail)  # fmt: skip
        result.status = str(verdict.outcome)
    except LeaseLost:
        result.status = "lease_lost"
    if result.status == "failed":
        result.exit_code = verdict.exit_code or 1
    else:
        result.exit_code = EXIT_CODES.get(result.status, 0)
    return result


def _hold(held: _Held) -> _Verdict:
    """From the grant to COMMAND's end, with the heartbeat running: what to report."""
    options, repo, request, result = held.options, held.repo, held.request, held.result
    progress, heartbeat, signals = held.progress, held.heartbeat, held.signals
    commit, last, token = result.commit, request["previous_commit"], int(request["fencing_token"])
    guard: _Verdict | bool = False
    try:
        with signals.interruptible():
            guard = _stale_guard(options, repo, request, commit, progress)
    except _InterruptedError:
        pass
    if signals.received:
        progress(f"signal {signals.received[0]}: cancelled before the deploy command started")
        return _Verdict(Outcome.CANCELLED, "signalled before the deploy command started")
    if isinstance(guard, _Verdict):
        return guard
    rollback = guard
    if heartbeat.lost:
        return _Verdict(Outcome.FAILED, "the lease was lost before the deploy command started")

    env = {k: v for k, v in os.environ.items() if k != "RUNNER_CTL_LOCK_TOKEN"}  # never hand the secret on
    env.update(
        RUNNER_CTL_ENV=options.env,
        RUNNER_CTL_COMMIT=commit,
        RUNNER_CTL_PREVIOUS_COMMIT=last or "",
        RUNNER_CTL_DEPLOY_ID=str(request["id"]),
        RUNNER_CTL_FENCING_TOKEN=str(token),
    )
    progress(f"deploying {commit[:12]} to {options.env} (fencing token {token}{', rollback' if rollback else ''})")
    started = time.monotonic()
    try:
        code, cancelled = _run_command(options, env, signals, progress)
    except OSError as error:
        result.run_seconds = time.monotonic() - started
        return _Verdict(Outcome.FAILED, f"could not start the command: {error}", exit_code=127)
    result.run_seconds = time.monotonic() - started
    if cancelled:
        return _Verdict(Outcome.CANCELLED, f"signalled; the command exited {code}", exit_code=code)
    if code == 0:
        return _Verdict(Outcome.SUCCEEDED, "", exit_code=0, rollback=rollback)
    return _Verdict(Outcome.FAILED, f"the command exited {code}", exit_code=code, rollback=rollback)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_command(
    options: DeployOptions, env: dict[str, str], signals: _Signals, progress: Progress
) -> tuple[int, bool]:
    """Run COMMAND (output streamed) in its own process group; signals go to that group, and after
    the grace period SIGKILL does. Returns (exit code, cancelled)."""
    process = subprocess.Popen(list(options.command), env=env, start_new_session=True)
    signals.group = process.pid
    if signals.received:  # arrived while COMMAND was starting: it gets it now
        signals.send(signals.received[-1])
    noted = 0
    deadline: float | None = None
    killed = False
    try:
        while True:
            try:
                code = process.wait(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pass
            if len(signals.received) > noted:
                noted = len(signals.received)
                if deadline is None:
                    deadline = time.monotonic() + options.grace_seconds
                    progress(
                        f"signal {signals.received[0]}: forwarded to the deploy command, "
                        f"then {options.grace_seconds:g} s grace"
                    )
                else:
                    progress(f"signal {signals.received[-1]}: forwarded too; the grace period still ends as set")
            if deadline is not None and not killed and time.monotonic() >= deadline:
                progress("the deploy command outlived its grace period; killing its process group")
                signals.send(signal.SIGKILL)
                killed = True
        if signals.received:
            # COMMAND's children may outlive it: they get the rest of the grace, then SIGKILL.
            end = time.monotonic() + options.grace_seconds if deadline is None else deadline
            while _group_alive(process.pid) and time.monotonic() < end:
                time.sleep(POLL_SECONDS)
            signals.send(signal.SIGKILL)
    finally:
        signals.group = None
    return (128 - code if code < 0 else code), bool(signals.received)
