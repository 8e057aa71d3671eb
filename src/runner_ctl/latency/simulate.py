"""Replay a job trace through c runner slots: the predicted queue time for each c.

Jobs arrive when they started waiting for a runner and occupy a slot for the time they
really ran. Slots serve FIFO; a job runs only on a slot whose labels include all it asks
for. Slot kinds ("pools") are the label sets of the observed runners: a runner's labels
are the union of the labels of the jobs it ran. (Kinds are not merged: a GPU runner that
also carries ``linux`` is a superset of the plain runners, yet not one of them.) c slots
are shared among the kinds in proportion to the busy time each kind had (D'Hondt's
method, at least one each, so adding a slot never takes one from a kind).

One kind — the usual fleet of identical runners — takes the fast path: the FCFS c-server
recursion over a heap of the slots' free times, O(n log c) per c.
"""

import heapq
from collections import defaultdict, deque
from collections.abc import Sequence
from operator import itemgetter
from typing import NamedTuple

from runner_ctl.latency.stats import percentile

__all__ = ["SimJob", "allocate", "fifo_waits", "matching_waits", "predict_p95", "runner_pools"]


class SimJob(NamedTuple):  # a tuple: 100k of them are made per report
    arrival: float
    service: float
    labels: frozenset[str]
    runner: str


def fifo_waits(arrivals: Sequence[float], services: Sequence[float], slots: int) -> list[float]:
    """Waits of FCFS jobs on ``slots`` identical slots (arrivals sorted ascending)."""
    waits: list[float] = []
    append = waits.append
    if slots == 1:  # no heap needed: the one slot's free time
        free_at = float("-inf")
        for arrival, service in zip(arrivals, services, strict=True):
            if arrival >= free_at:
                free_at = arrival + service
                append(0.0)
            else:
                append(free_at - arrival)
                free_at += service
        return waits
    free = [float("-inf")] * slots  # a heap of the times the slots become free
    replace = heapq.heapreplace
    for arrival, service in zip(arrivals, services, strict=True):
        earliest = free[0]
        if arrival >= earliest:
            replace(free, arrival + service)
            append(0.0)
        else:
            replace(free, earliest + service)
            append(earliest - arrival)
    return waits


def matching_waits(
    jobs: Sequence[tuple[float, float, frozenset[str]]], pools: Sequence[tuple[frozenset[str], int]]
) -> list[float] | None:
    """Waits of jobs (arrival, service, labels; arrivals sorted) on pools of (labels, slots).

    A freed slot takes the longest-waiting job it can serve; an arriving job takes a free
    slot of a pool that can serve it (the one with most free slots), else waits. None when
    some job has no pool with a slot that could serve it.
    """
    class_of: dict[frozenset[str], int] = {}
    for _, _, labels in jobs:
        class_of.setdefault(labels, len(class_of))
    eligible: list[list[int]] = [[] for _ in class_of]
    serves: list[list[int]] = [[] for _ in pools]
    for labels, index in class_of.items():
        for pool, (pool_labels, count) in enumerate(pools):
            if count > 0 and labels <= pool_labels:
                eligible[index].append(pool)
                serves[pool].append(index)
        if not eligible[index]:
            return None
    free = [count for _, count in pools]
    waiting: list[deque[tuple[float, int, float]]] = [deque() for _ in class_of]
    busy: list[tuple[float, int]] = []  # (time a slot frees, its pool)
    waits = [0.0] * len(jobs)
    queued = 0
    position = 0
    while position < len(jobs) or (busy and queued):
        if busy and (position >= len(jobs) or busy[0][0] <= jobs[position][0]):
            now, pool = heapq.heappop(busy)
            best: deque[tuple[float, int, float]] | None = None
            for index in serves[pool]:
                line = waiting[index]
                if line and (best is None or line[0] < best[0]):
                    best = line
            if best is None:
                free[pool] += 1
                continue
            arrival, job, service = best.popleft()
            queued -= 1
            waits[job] = now - arrival
            heapq.heappush(busy, (now + service, pool))
            continue
        arrival, service, labels = jobs[position]
        index = class_of[labels]
        pools_for = eligible[index]
        chosen = pools_for[0] if len(pools_for) == 1 else max(pools_for, key=free.__getitem__)
        if free[chosen] > 0:
            free[chosen] -= 1
            heapq.heappush(busy, (arrival + service, chosen))
        else:
            waiting[index].append((arrival, position, service))
            queued += 1
        position += 1
    return waits


def allocate(weights: Sequence[float], slots: int) -> list[int] | None:
    """``slots`` shared in proportion to ``weights`` (D'Hondt), one at least each; None if too few."""
    if slots < len(weights):
        return None
    shares = [1] * len(weights)
    for _ in range(slots - len(weights)):
        best = max(range(len(weights)), key=lambda i: weights[i] / (shares[i] + 1))
        shares[best] += 1
    return shares


def runner_pools(jobs: Sequence[SimJob]) -> list[tuple[frozenset[str], float]]:
    """The kinds of slot the trace shows, each with the busy seconds its runners had."""
    labels: dict[str, set[str]] = defaultdict(set)
    busy: dict[str, float] = defaultdict(float)
    for job in jobs:
        labels[job.runner].update(job.labels)
        busy[job.runner] += job.service
    kinds: dict[frozenset[str], float] = defaultdict(float)
    for runner, seen in labels.items():
        kinds[frozenset(seen)] += busy[runner]
    return sorted(kinds.items(), key=lambda item: sorted(item[0]))


def _p95(waits: list[float]) -> float:
    return percentile(sorted(waits), 95)


def predict_p95(jobs: Sequence[SimJob], slot_counts: Sequence[int]) -> dict[int, float | None]:
    """Predicted queue p95 (seconds) of the trace for each slot count; None where c slots cannot serve it."""
    if not jobs:
        return {}
    ordered = sorted(jobs, key=itemgetter(0))  # by arrival
    pools = runner_pools(ordered)
    predicted: dict[int, float | None] = {}
    if len(pools) == 1:
        arrivals = [job.arrival for job in ordered]
        services = [job.service for job in ordered]
        settled = False
        for count in sorted(slot_counts):
            # FCFS on more slots never starts a job later, so once the p95 is 0 it stays 0.
            predicted[count] = 0.0 if settled else _p95(fifo_waits(arrivals, services, count))
            settled = predicted[count] == 0.0
        return predicted
    weights = [seconds for _, seconds in pools]
    trace = [(job.arrival, job.service, job.labels) for job in ordered]
    for count in sorted(slot_counts):
        shares = allocate(weights, count)
        found = (
            matching_waits(trace, [(kind, n) for (kind, _), n in zip(pools, shares, strict=True)]) if shares else None
        )
        predicted[count] = _p95(found) if found is not None else None
    return predicted
