"""Load the deploy lock service: mutual exclusion under contention, handoff latency, memory.

    .venv/bin/python benchmarks/lock.py [--clients 200] [--envs 20] [--seconds 20] [--hold-ms 1000]
                                        [--arrival staggered|lockstep]

Starts a real ``runner-ctl lock serve`` process on a free loopback port (database and
token file in a temporary directory), then measures:

- uncontended acquire+release: one client on a fresh environment, enqueue (granted at
  once) then finish, 200 times; p50/p99 of the round trip;
- contention: N clients spread evenly over M environments, each looping enqueue ->
  long-poll wait until granted -> hold --hold-ms -> finish, for --seconds. From the
  clients' own monotonic clocks it checks that no two holds of one environment overlap
  and that fencing tokens rise strictly in grant order, and it reports handoff latency:
  from the previous holder sending finish to the next (already queued) holder's wait
  returning granted. With ``--arrival staggered`` (the default) environment i's clients
  arrive i/M of a hold after the first, as independent pipelines do; ``lockstep`` starts
  every environment at the same instant, so all M release within the same millisecond
  (the worst case for a server that handles one request at a time);
- the service process's peak RSS (VmHWM) after the run.

It prints one line per figure and a goals line, and exits 0 whatever the figures are
(it measures; it does not judge) unless a client or the service failed.
"""

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import resource
import secrets
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

GOAL_HANDOFF_P99_MS = 50.0
GOAL_RSS_MB = 150.0
WAIT_TIMEOUT_S = 20.0
MAX_ITERATIONS = 10_000
# A queued client may need several long-polls when its queue is long; this caps them.
MAX_WAIT_ROUNDS = 15
UNCONTENDED_ITERATIONS = 200
STARTUP_TIMEOUT_S = 30.0
# Slack after --seconds for the requests still queued at the deadline to be served.
DRAIN_GRACE_S = 120.0


@dataclass
class Hold:
    """One granted request, timed on the benchmark's monotonic clock."""

    env: str
    request_id: int
    fencing_token: int
    enqueued: float  # the enqueue response arrived
    granted: float  # a response saying "granted" arrived
    finish_sent: float  # just before the finish request went out
    via_wait: bool  # granted by a long-poll (the request had been queued), not by the enqueue itself
    # The same moments on the wall clock, next to the service's own (wall clock) stamps, split a
    # handoff into its legs; service and benchmark run on one machine, so the clocks agree.
    granted_wall: float
    finish_sent_wall: float
    service_granted_at: float
    service_finished_at: float | None  # None when the finish was refused


@dataclass
class Results:
    holds: list[Hold] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    loop_lag: list[float] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentiles(values: list[float]) -> tuple[float, float]:
    """p50 and p99 (inclusive method), or NaN when there is nothing to summarise."""
    if not values:
        return math.nan, math.nan
    if len(values) == 1:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[98]


class Service:
    """The lock service as a child process, on 127.0.0.1 only."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.secret = secrets.token_hex(16)
        self.log = directory / "service.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        tokens = self.directory / "tokens"
        tokens.write_text(f"bench:{self.secret}\n")
        tokens.chmod(0o600)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "runner_ctl", "lock", "serve", "--db", str(self.directory / "lock.db"),
                 "--token-file", str(tokens), "--listen", f"127.0.0.1:{self.port}"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the lock service exited at start: {self.log.read_text(errors='replace')}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"the lock service did not answer /healthz within {STARTUP_TIMEOUT_S:.0f} s")

    def peak_rss_mb(self) -> float:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # the kernel reports kB
        raise RuntimeError("no VmHWM in the service's /proc status")

    def cpu_seconds(self) -> float:
        assert self.process is not None
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        # Fields after the command name, which is in parentheses and may hold spaces.
        fields = stat.rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)


@contextlib.contextmanager
def running_service() -> Iterator[Service]:
    with tempfile.TemporaryDirectory(prefix="runner-ctl-lock-bench-") as tmp:
        service = Service(Path(tmp))
        try:
            service.start()
            yield service
        finally:
            service.stop()


def new_client(service: Service, tls: ssl.SSLContext) -> httpx.AsyncClient:
    # Every client shares one TLS context: building one per client costs seconds at 200
    # clients, and the traffic is plain HTTP on loopback anyway.
    return httpx.AsyncClient(
        base_url=service.url,
        headers={"Authorization": f"Bearer {service.secret}"},
        timeout=httpx.Timeout(10.0, read=WAIT_TIMEOUT_S + 10.0),
        limits=httpx.Limits(max_connections=2, max_keepalive_connections=2),
        verify=tls,
        trust_env=False,  # a proxy from the environment must not see loopback traffic
    )


def as_object(response: httpx.Response) -> dict[str, Any]:
    response.raise_for_status()
    body = response.json()
    if not isinstance(body, dict):
        raise TypeError(f"expected a JSON object from {response.request.url}, got {body!r}")
    return body


async def one_cycle(client: httpx.AsyncClient, env: str, hold_s: float, results: Results) -> None:
    """enqueue -> wait until granted -> hold -> finish, recording its times."""
    body = {"commit": secrets.token_hex(20), "queue_policy": "all", "lease_ttl": 30}
    request = as_object(await client.post(f"/v1/envs/{env}/requests", json=body))
    own = {"X-Request-Secret": request["request_secret"]}  # acting on a request needs its secret
    enqueued = time.monotonic()
    granted, granted_wall = enqueued, time.time()
    via_wait = False
    for _ in range(MAX_WAIT_ROUNDS):
        if request["state"] != "queued":
            break
        request = as_object(
            await client.post(f"/v1/requests/{request['id']}/wait", params={"timeout": WAIT_TIMEOUT_S}, headers=own)
        )
        granted, granted_wall = time.monotonic(), time.time()
        via_wait = True
    if request["state"] != "granted":
        results.anomalies.append(f"{env} request {request['id']} ended {request['state']} ({request.get('outcome')})")
        return
    await asyncio.sleep(hold_s)
    finish_sent, finish_sent_wall = time.monotonic(), time.time()
    finished = await client.post(
        f"/v1/requests/{request['id']}/finish",
        json={"fencing_token": request["fencing_token"], "outcome": "succeeded", "exit_code": 0},
        headers=own,
    )
    finished_at = None
    if finished.status_code == 200:
        finished_at = float(as_object(finished)["finished_at"])
    else:
        results.anomalies.append(f"{env} request {request['id']}: finish answered {finished.status_code}")
    results.holds.append(
        Hold(
            env=env,
            request_id=int(request["id"]),
            fencing_token=int(request["fencing_token"]),
            enqueued=enqueued,
            granted=granted,
            finish_sent=finish_sent,
            via_wait=via_wait,
            granted_wall=granted_wall,
            finish_sent_wall=finish_sent_wall,
            service_granted_at=float(request["granted_at"]),
            service_finished_at=finished_at,
        )
    )


async def contender(
    service: Service, tls: ssl.SSLContext, env: str, args: argparse.Namespace, results: Results
) -> None:
    if args.arrival == "staggered":
        await asyncio.sleep(int(env.rpartition("-")[2]) * args.hold_ms / 1000 / args.envs)
    deadline = time.monotonic() + args.seconds
    async with new_client(service, tls) as client:
        for _ in range(MAX_ITERATIONS):
            if time.monotonic() >= deadline:
                break
            await one_cycle(client, env, args.hold_ms / 1000, results)


async def watch_loop_lag(results: Results, stop: asyncio.Event) -> None:
    """How late this process's event loop wakes a 10 ms sleep: the benchmark's own share of
    every latency it reports, since all clients share one loop."""
    for _ in range(MAX_ITERATIONS * 10):
        if stop.is_set():
            return
        asked = time.monotonic()
        await asyncio.sleep(0.01)
        results.loop_lag.append(time.monotonic() - asked - 0.01)


async def contention(service: Service, args: argparse.Namespace) -> tuple[Results, float, int]:
    """Run the clients; return what they saw, the wall time, and how many clients failed."""
    results = Results()
    tls = ssl.create_default_context()
    envs = [f"bench-{index:03d}" for index in range(args.envs)]
    started = time.monotonic()
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_loop_lag(results, stop))
    tasks = [
        asyncio.create_task(contender(service, tls, envs[index % len(envs)], args, results))
        for index in range(args.clients)
    ]
    done, pending = await asyncio.wait(tasks, timeout=args.seconds + DRAIN_GRACE_S)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    stop.set()
    await watcher
    failed = len(pending)
    for task in done:
        if task.exception() is not None:
            failed += 1
            results.anomalies.append(f"client failed: {task.exception()!r}")
    return results, time.monotonic() - started, failed


async def uncontended(service: Service) -> list[float]:
    """Round trips of enqueue (granted at once) + finish on an environment nobody else uses."""
    rounds: list[float] = []
    async with new_client(service, ssl.create_default_context()) as client:
        for _ in range(UNCONTENDED_ITERATIONS):
            started = time.monotonic()
            body = {"commit": secrets.token_hex(20), "queue_policy": "all", "lease_ttl": 30}
            request = as_object(await client.post("/v1/envs/bench-solo/requests", json=body))
            if request["state"] != "granted":
                raise RuntimeError(f"uncontended request {request['id']} was not granted at once: {request['state']}")
            as_object(
                await client.post(
                    f"/v1/requests/{request['id']}/finish",
                    json={"fencing_token": request["fencing_token"], "outcome": "succeeded", "exit_code": 0},
                    headers={"X-Request-Secret": request["request_secret"]},
                )
            )
            rounds.append(time.monotonic() - started)
    return rounds


@dataclass
class Safety:
    overlaps: int = 0
    out_of_order: int = 0
    duplicates: int = 0

    @property
    def total(self) -> int:
        return self.overlaps + self.out_of_order + self.duplicates


def check_safety(by_env: dict[str, list[Hold]]) -> Safety:
    """Overlapping holds and fencing tokens that do not rise strictly, per environment.

    A hold runs from its grant arriving to its finish being sent. A correct service grants
    the next request only after it has processed the finish, so on one clock the next grant
    arrives after the previous finish was sent; any earlier arrival is a double grant.
    """
    safety = Safety()
    for holds in by_env.values():
        ordered = sorted(holds, key=lambda hold: hold.granted)
        released = -math.inf
        for hold in ordered:
            if hold.granted < released:
                safety.overlaps += 1
            released = max(released, hold.finish_sent)
        safety.out_of_order += sum(
            1 for previous, hold in itertools.pairwise(ordered) if hold.fencing_token < previous.fencing_token
        )
        tokens = [hold.fencing_token for hold in holds]
        safety.duplicates += len(tokens) - len(set(tokens))
    return safety


@dataclass
class Handoffs:
    """Seconds from a finish being sent to the next holder's wait returning granted, and its legs."""

    total: list[float] = field(default_factory=list)
    to_release: list[float] = field(default_factory=list)  # finish sent -> the service ended the hold
    to_grant: list[float] = field(default_factory=list)  # the service ended the hold -> it granted the next
    to_waiter: list[float] = field(default_factory=list)  # the service granted -> the waiter had the answer
    gaps: int = 0  # token gaps (grants no client saw), which would make "next" ambiguous


def handoffs(by_env: dict[str, list[Hold]]) -> Handoffs:
    """Counted only when the next request was queued before the finish went out, so the time
    is the service's handoff and not a client arriving late."""
    found = Handoffs()
    for holds in by_env.values():
        by_token = sorted(holds, key=lambda hold: hold.fencing_token)
        for previous, following in itertools.pairwise(by_token):
            if following.fencing_token != previous.fencing_token + 1:
                found.gaps += 1
                continue
            if following.via_wait and following.enqueued < previous.finish_sent:
                found.total.append(following.granted - previous.finish_sent)
                if previous.service_finished_at is not None:
                    found.to_release.append(previous.service_finished_at - previous.finish_sent_wall)
                    found.to_grant.append(following.service_granted_at - previous.service_finished_at)
                    found.to_waiter.append(following.granted_wall - following.service_granted_at)
    return found


def service_succeeded(metrics_text: str) -> float | None:
    """The service's own count of requests finished as succeeded, from /metrics."""
    for line in metrics_text.splitlines():
        if line.startswith('runner_ctl_lock_outcomes_total{status="succeeded"}'):
            return float(line.rsplit(" ", 1)[1])
    return None


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200, help="concurrent clients (default 200)")
    parser.add_argument("--envs", type=int, default=20, help="environments the clients share (default 20)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long clients keep enqueueing (default 20)")
    parser.add_argument("--hold-ms", type=float, default=1000.0, help="how long a holder keeps the lock (default 1000)")
    parser.add_argument(
        "--arrival",
        choices=("staggered", "lockstep"),
        default="staggered",
        help="environments start spread over one hold (default) or all at once",
    )
    args = parser.parse_args()
    if args.clients < 1 or args.envs < 1 or args.seconds <= 0 or args.hold_ms < 0:
        parser.error("--clients and --envs must be >= 1, --seconds > 0, --hold-ms >= 0")

    with running_service() as service:
        solo = asyncio.run(uncontended(service))
        results, wall, failed = asyncio.run(contention(service, args))
        metrics = httpx.get(f"{service.url}/metrics", timeout=10).text
        rss_mb = service.peak_rss_mb()
        service_cpu = service.cpu_seconds()

    by_env: dict[str, list[Hold]] = defaultdict(list)
    for hold in results.holds:
        by_env[hold.env].append(hold)
    safety = check_safety(by_env)
    handoff = handoffs(by_env)
    handoff_p50, handoff_p99 = percentiles(handoff.total)
    solo_p50, solo_p99 = percentiles(solo)
    succeeded = service_succeeded(metrics)

    print(
        f"setup: {args.clients} clients over {args.envs} environments, {args.seconds:g} s, "
        f"hold {args.hold_ms:g} ms, arrival {args.arrival}"
    )
    print(f"grants: {len(results.holds)} ({len(results.holds) / wall:.0f}/s over {wall:.1f} s)")
    print(
        f"double grants: {safety.total} (overlapping holds {safety.overlaps}, fencing tokens going back "
        f"{safety.out_of_order}, duplicate tokens {safety.duplicates})"
    )
    print(
        f"handoff latency ms: p50 {ms(handoff_p50)} p99 {ms(handoff_p99)} "
        f"({len(handoff.total)} handoffs, {handoff.gaps} token gaps)"
    )
    legs = [
        ("finish sent -> service ended hold", handoff.to_release),
        ("-> service granted next", handoff.to_grant),
        ("-> waiter got grant", handoff.to_waiter),
    ]
    print(
        "handoff legs ms (p50/p99): "
        + ", ".join(f"{name} {ms(percentiles(values)[0])}/{ms(percentiles(values)[1])}" for name, values in legs)
    )
    lag_p50, lag_p99 = percentiles(results.loop_lag)
    print(f"benchmark event-loop lag ms: p50 {ms(lag_p50)} p99 {ms(lag_p99)}")
    print(f"uncontended acquire+release ms: p50 {ms(solo_p50)} p99 {ms(solo_p99)} ({len(solo)} round trips)")
    print(f"service peak RSS MB: {rss_mb:.1f}")
    # Clients and service share the machine's CPUs; busy ones inflate every latency above.
    own = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"CPU s (both phases): service {service_cpu:.1f}, benchmark clients {own.ru_utime + own.ru_stime:.1f}, "
        f"on {os.cpu_count()} CPUs"
    )
    # The service's succeeded count also includes the uncontended phase.
    expected = len(results.holds) + len(solo)
    print(f"service succeeded outcomes: {succeeded if succeeded is None else int(succeeded)} (clients saw {expected})")
    print(f"anomalies: {len(results.anomalies)}, failed clients: {failed}")
    for anomaly in results.anomalies[:10]:
        print(f"  {anomaly}")
    met = safety.total == 0 and handoff_p99 <= GOAL_HANDOFF_P99_MS / 1000 and rss_mb <= GOAL_RSS_MB
    print(
        f"goals: double grants 0, handoff p99 <= {GOAL_HANDOFF_P99_MS:.0f} ms, RSS <= {GOAL_RSS_MB:.0f} MB: "
        f"{'met' if met else 'NOT met'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
