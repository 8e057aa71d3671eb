"""Fleet checks: a fleet of runner hosts has one deploy queue per environment, reached from every host.

Run once per fleet by ``runner-ctl rehearse --hosts N`` (N > 1), after the host checks of each host.
"""

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.fleet.conftest import Fleet, last_json

pytestmark = pytest.mark.host

SERVICE = "runner-ctl-lockd"
# Bounded waits: the lock host's service coming back, a deploy's COMMAND getting going.
WAIT_SECONDS = 120.0


def _env(label: str) -> str:
    # A fresh environment per run: the checks run again on a kept fleet.
    return f"fleet-{label}-{uuid.uuid4().hex[:10]}"


def _running(fleet: Fleet) -> list[str]:
    return [h.name for h in fleet.hosts if h.host.run(f"systemctl is-active --quiet {SERVICE}").rc == 0]


def test_exactly_one_host_runs_the_lock_service(fleet: Fleet) -> None:
    # A start can fail once inside systemd-nspawn (219/CGROUP while the stopped unit's cgroup
    # is still being removed); the unit's Restart= brings it back within seconds: wait for that.
    deadline = time.monotonic() + WAIT_SECONDS
    running = _running(fleet)
    while fleet.lock_host not in running and time.monotonic() < deadline:
        time.sleep(1)
        running = _running(fleet)
    assert running == [fleet.lock_host]


def test_every_host_deploys_through_the_one_lock_service(fleet: Fleet) -> None:
    """Each host, as the runner user with no lock flags, deploys the next commit of one environment,
    and sees the commit the host before it deployed: one queue, one stale guard, for the whole fleet."""
    env = _env("each")
    previous = None
    for index, each in enumerate(fleet.hosts):
        commit = fleet.commits[index]
        done = each.deploy(fleet.runner, env, commit, "true")
        assert done.rc == 0, f"{each.name}: {done.stderr}"
        result = last_json(done.stdout)
        assert (result["status"], result["commit"]) == ("succeeded", commit), f"{each.name}: {result}"
        assert result["previous_commit"] == previous, f"{each.name} sees another queue: {result}"
        previous = commit


def test_concurrent_deploys_from_two_hosts_run_one_after_the_other(fleet: Fleet) -> None:
    first, second = fleet.hosts[0], fleet.hosts[1]
    env = _env("both")
    older, newer = fleet.commits[0], fleet.commits[1]

    def command(host_repo: str) -> str:
        # Records when it ran, by the clock every test host shares with the controller.
        return f"sh -c 'date +%s.%N > {host_repo}/ran.start; sleep 4; date +%s.%N > {host_repo}/ran.end'"

    with ThreadPoolExecutor(max_workers=2) as pool:
        one = pool.submit(first.deploy, fleet.runner, env, older, command(first.repo))
        # The second starts while the first's COMMAND runs, so the order is known.
        deadline, polls = time.monotonic() + WAIT_SECONDS, 0
        while time.monotonic() < deadline and polls < 1000 and not one.done():
            polls += 1
            if first.host.run(f"test -e {first.repo}/ran.start").rc == 0:
                break
            time.sleep(0.2)
        assert not one.done(), f"the first deploy ended before its COMMAND ran: {one.result().stderr}"
        two = pool.submit(second.deploy, fleet.runner, env, newer, command(second.repo))
        done_one, done_two = one.result(timeout=WAIT_SECONDS), two.result(timeout=WAIT_SECONDS)
    assert done_one.rc == 0, done_one.stderr
    assert done_two.rc == 0, done_two.stderr
    first_ran = [float(first.host.check_output(f"cat {first.repo}/ran.{edge}")) for edge in ("start", "end")]
    second_ran = [float(second.host.check_output(f"cat {second.repo}/ran.{edge}")) for edge in ("start", "end")]
    assert first_ran[1] <= second_ran[0], f"the deploys overlapped: {first_ran} and {second_ran}"
    result = last_json(done_two.stdout)
    assert result["status"] == "succeeded", result
    assert result["previous_commit"] == older, result
    assert result["queued_seconds"] > 0


def test_a_deploy_exits_6_naming_the_lock_host_when_its_service_is_down(fleet: Fleet) -> None:
    lock_host, other = fleet.named(fleet.lock_host), fleet.others[0]
    marker = f"{other.repo}/ran-{uuid.uuid4().hex[:8]}"
    stopped = lock_host.host.run(f"systemctl stop {SERVICE}")
    assert stopped.rc == 0, stopped.stderr
    try:
        done = other.deploy(fleet.runner, _env("down"), fleet.commits[0], f"touch {marker}")
        assert done.rc == 6, (done.rc, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and fleet.lock_host in lines[0], done.stderr
        assert other.host.run(f"test -e {marker}").rc != 0, "COMMAND ran without the lock"
    finally:
        # Back as it was for whatever runs next (the idempotent second deploy): every host deploys
        # again. A start may fail once inside systemd-nspawn (219/CGROUP, see above): ask again.
        env, deadline, attempts = _env("back"), time.monotonic() + WAIT_SECONDS, 0
        while True:
            attempts += 1
            lock_host.host.run(f"systemctl is-active --quiet {SERVICE} || systemctl start {SERVICE}")
            again = other.deploy(fleet.runner, env, fleet.commits[0], "true")
            if again.rc == 0 or time.monotonic() > deadline or attempts >= 60:
                break
            time.sleep(1)
        assert again.rc == 0, f"after restarting {SERVICE} on {fleet.lock_host}: {again.stderr}"
