"""The slot simulation against answers known in advance: hand-worked cases and queueing theory."""

import heapq
import math
import random
import statistics

import pytest

from runner_ctl.latency.simulate import SimJob, allocate, fifo_waits, matching_waits, predict_p95, runner_pools

LINUX = frozenset({"self-hosted", "linux"})


def test_one_slot_serves_in_arrival_order() -> None:
    assert fifo_waits([0, 1, 2], [10, 10, 10], 1) == [0, 9, 18]
    assert fifo_waits([0, 20, 25], [10, 10, 10], 1) == [0, 0, 5]
    assert fifo_waits([0, 0, 0, 0], [5, 5, 5, 5], 2) == [0, 0, 5, 5]
    assert fifo_waits([0, 1, 2], [10, 1, 1], 2) == [0, 0, 0]
    assert fifo_waits([0, 1, 2, 3], [10, 10, 1, 1], 2) == [0, 0, 8, 8]


def mm1_trace(arrival_rate: float, service_rate: float, jobs: int, seed: int) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)  # noqa: S311 - queueing input, not secrets
    arrivals, now = [], 0.0
    for _ in range(jobs):
        now += rng.expovariate(arrival_rate)
        arrivals.append(now)
    return arrivals, [rng.expovariate(service_rate) for _ in range(jobs)]


def test_poisson_arrivals_on_one_slot_match_the_mm1_queue() -> None:
    arrival_rate, service_rate = 0.5, 1.0
    rho = arrival_rate / service_rate
    arrivals, services = mm1_trace(arrival_rate, service_rate, 200_000, seed=7)
    waits = fifo_waits(arrivals, services, 1)
    # M/M/1: mean wait Wq = rho / (mu - lambda); P(wait > 0) = rho; P(wait > t) = rho e^{-(mu - lambda) t}
    assert statistics.fmean(waits) == pytest.approx(rho / (service_rate - arrival_rate), rel=0.05)
    assert sum(w > 0 for w in waits) / len(waits) == pytest.approx(rho, abs=0.01)
    p95 = math.log(rho / 0.05) / (service_rate - arrival_rate)
    jobs = [SimJob(a, s, LINUX, "ci-1") for a, s in zip(arrivals, services, strict=True)]
    assert predict_p95(jobs, [1])[1] == pytest.approx(p95, rel=0.05)


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in M/M/c with offered load a = lambda/mu."""
    top = offered**servers / math.factorial(servers) * servers / (servers - offered)
    return top / (sum(offered**k / math.factorial(k) for k in range(servers)) + top)


def test_poisson_arrivals_on_two_slots_match_the_mm2_queue() -> None:
    arrival_rate, service_rate, servers = 1.5, 1.0, 2
    arrivals, services = mm1_trace(arrival_rate, service_rate, 200_000, seed=11)
    waits = fifo_waits(arrivals, services, servers)
    expected = erlang_c(servers, arrival_rate / service_rate) / (servers * service_rate - arrival_rate)
    assert statistics.fmean(waits) == pytest.approx(expected, rel=0.06)


def test_label_matching_equals_fifo_when_every_slot_serves_every_job() -> None:
    arrivals, services = mm1_trace(0.8, 1.0, 5_000, seed=3)
    trace = [(a, s, LINUX) for a, s in zip(arrivals, services, strict=True)]
    for slots in (1, 2, 3):
        matched = matching_waits(trace, [(LINUX, slots)])
        assert matched == pytest.approx(fifo_waits(arrivals, services, slots))


def test_a_job_runs_only_on_slots_with_its_labels() -> None:
    gpu, cpu = frozenset({"gpu"}), frozenset({"cpu"})
    trace = [(0.0, 10.0, cpu), (0.0, 10.0, cpu), (1.0, 10.0, gpu)]
    # the gpu slot is free when the second cpu job arrives, but cannot take it
    assert matching_waits(trace, [(cpu, 1), (gpu, 1)]) == [0.0, 10.0, 0.0]
    assert matching_waits(trace, [(cpu | gpu, 2)]) == [0.0, 0.0, 9.0]
    assert matching_waits(trace, [(cpu, 3)]) is None  # nothing can serve the gpu job


def test_a_freed_slot_takes_the_longest_waiting_job_it_can_serve() -> None:
    small, big = frozenset({"linux"}), frozenset({"linux", "large"})
    trace = [(0.0, 10.0, big), (1.0, 5.0, small), (2.0, 5.0, big)]
    # one large slot: the small job (waiting since 1) goes before the second big one (since 2)
    assert matching_waits(trace, [(big, 1)]) == [0.0, 9.0, 13.0]


def test_slots_are_shared_in_proportion_to_busy_time() -> None:
    assert allocate([3.0, 1.0], 1) is None
    assert allocate([3.0, 1.0], 2) == [1, 1]
    assert allocate([3.0, 1.0], 4) == [3, 1]
    assert allocate([1.0, 1.0, 1.0], 5) in ([2, 2, 1], [2, 1, 2], [1, 2, 2])
    previous = [1, 1]
    for slots in range(3, 20):  # never takes a slot away from a kind
        shares = allocate([5.0, 2.0], slots)
        assert shares is not None and all(a >= b for a, b in zip(shares, previous, strict=True))
        previous = shares


def test_runner_kinds_are_the_label_unions_of_what_each_runner_ran() -> None:
    bazel = LINUX | {"bazel"}
    gpu = LINUX | {"gpu"}
    jobs = [
        SimJob(0, 10, LINUX, "ci-1"),
        SimJob(0, 20, bazel, "ci-1"),
        SimJob(0, 30, bazel, "ci-2"),
        SimJob(0, 5, gpu, "gpu-1"),
        SimJob(0, 7, LINUX, "gpu-1"),
    ]
    assert runner_pools(jobs) == [(bazel, 60.0), (gpu, 12.0)]


def test_predictions_fall_as_slots_are_added_and_reach_zero() -> None:
    arrivals, services = mm1_trace(0.9, 1.0, 20_000, seed=5)
    jobs = [SimJob(a, s * 5, LINUX, "ci-1") for a, s in zip(arrivals, services, strict=True)]  # load 4.5 slots
    predicted = predict_p95(jobs, range(1, 17))
    values = [value for value in (predicted[c] for c in range(1, 17)) if value is not None]
    assert len(values) == 16
    assert values == sorted(values, reverse=True)
    assert values[0] > 1000 and values[-1] == 0.0


def test_two_kinds_of_runner_are_simulated_with_matching() -> None:
    gpu = frozenset({"self-hosted", "gpu"})
    jobs = [SimJob(float(i), 50.0, LINUX, "ci-1") for i in range(0, 400, 10)]
    jobs += [SimJob(float(i), 30.0, gpu, "gpu-1") for i in range(0, 400, 100)]
    predicted = predict_p95(jobs, [1, 2, 3, 6])
    assert predicted[1] is None  # one slot cannot be both kinds
    two, three, six = predicted[2], predicted[3], predicted[6]
    assert two is not None and three is not None and six is not None
    assert two > three > six == 0.0


def event_by_event_waits(
    jobs: list[tuple[float, float, frozenset[str]]], pools: list[tuple[frozenset[str], int]]
) -> list[float]:
    """The matching rule simulated literally, event by event (slot frees and arrivals in time
    order, waiting lines per label set): the reference the job-by-job replay must equal."""
    eligible = {labels: [p for p, (kind, n) in enumerate(pools) if n > 0 and labels <= kind] for _, _, labels in jobs}
    free = [n for _, n in pools]
    waiting: list[tuple[float, int, float, frozenset[str]]] = []  # oldest first
    busy: list[tuple[float, int]] = []
    waits = [0.0] * len(jobs)
    position = 0
    while position < len(jobs) or waiting:
        if busy and (position >= len(jobs) or busy[0][0] <= jobs[position][0]):
            now, pool = heapq.heappop(busy)
            taker = next((w for w in waiting if pool in eligible[w[3]]), None)
            if taker is None:
                free[pool] += 1
                continue
            waiting.remove(taker)
            waits[taker[1]] = now - taker[0]
            heapq.heappush(busy, (now + taker[2], pool))
            continue
        arrival, service, labels = jobs[position]
        chosen = max(eligible[labels], key=free.__getitem__)  # the first of the most free
        if free[chosen] > 0:
            free[chosen] -= 1
            heapq.heappush(busy, (arrival + service, chosen))
        else:
            waiting.append((arrival, position, service, labels))
        position += 1
    return waits


@pytest.mark.parametrize("seed", range(6))
def test_the_job_by_job_replay_equals_the_event_by_event_simulation(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - queueing input, not secrets
    small, big, gpu = LINUX, LINUX | {"large"}, LINUX | {"gpu"}
    kinds = [small, big, gpu]
    arrivals, services = mm1_trace(2.0, 1.0, 3_000, seed=seed)
    # whole seconds, as forges stamp them: ties between frees and arrivals happen
    trace = [(float(round(a)), float(round(s * 3)), rng.choice(kinds)) for a, s in zip(arrivals, services, strict=True)]
    trace.sort(key=lambda job: job[0])
    for shares in ([1, 1, 1], [3, 1, 2], [6, 2, 1], [2, 4, 4]):
        pools = [(small, shares[0]), (big, shares[1]), (gpu | {"large"}, shares[2])]
        assert matching_waits(trace, pools) == event_by_event_waits(trace, pools)
