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
from collections import defaultdict
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

    Computed job by job in arrival order rather than event by event: a waiting job never
    loses a slot it can use to a younger one, so a job's start depends only on older jobs,
    and it starts on the eligible slot that frees first. Each pool is a heap of its slots'
    free times (the FCFS recursion of ``fifo_waits``); no waiting lines are kept.
    """
    free_at = [[float("-inf")] * count for _, count in pools]
    heaps_of: dict[frozenset[str], list[list[float]]] = {}  # per label set: the heaps of the pools that serve it
    for _, _, labels in jobs:
        if labels not in heaps_of:
            heaps_of[labels] = [free_at[p] for p, (kind, count) in enumerate(pools) if count > 0 and labels <= kind]
            if not heaps_of[labels]:
                return None
    waits: list[float] = []
    append = waits.append
    replace = heapq.heapreplace
    for arrival, service, labels in jobs:
        heaps = heaps_of[labels]
        heap = heaps[0]
        earliest = heap[0]
        if len(heaps) > 1:  # inlined: a function call here costs a 100k-job replay a third of a second
            opened = 0
            soonest = heap
            for candidate in heaps:
                top = candidate[0]
                if top <= arrival:
                    if not opened:
                        heap = candidate
                    opened += 1
                elif top < soonest[0]:
                    soonest = candidate
            if not opened:
                heap = soonest
            elif opened > 1:
                heap = _most_free(heaps, arrival)
            earliest = heap[0]
        if arrival >= earliest:
            replace(heap, arrival + service)
            append(0.0)
        else:
            replace(heap, earliest + service)
            append(earliest - arrival)
    return waits


def _most_free(heaps: list[list[float]], arrival: float) -> list[float]:
    """Of the pools' slot heaps, the one with most slots free at ``arrival`` (the first on a tie)."""
    # A heap holds a pool's few slots; map() counts them in C.
    return max(heaps, key=lambda heap: sum(map(arrival.__ge__, heap)))


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
    """The kinds of slot the trace shows, each with the busy seconds its runners had.

    A job whose runner is not named (``""``: the forge no longer says) adds its busy time to
    the first kind that can serve it, or, where none can, to a kind of its own labels.
    """
    labels: dict[str, set[str]] = defaultdict(set)
    busy: dict[str, float] = defaultdict(float)
    unnamed: list[SimJob] = []
    for job in jobs:
        if not job.runner:
            unnamed.append(job)
            continue
        labels[job.runner].update(job.labels)
        busy[job.runner] += job.service
    kinds: dict[frozenset[str], float] = defaultdict(float)
    for runner, seen in labels.items():
        kinds[frozenset(seen)] += busy[runner]
    named = sorted(kinds, key=sorted)
    orphans: set[str] = set()
    orphan_busy = 0.0
    for job in unnamed:
        home = next((kind for kind in named if job.labels <= kind), None)
        if home is None:
            orphans.update(job.labels)
            orphan_busy += job.service
        else:
            kinds[home] += job.service
    if orphans:
        kinds[frozenset(orphans)] += orphan_busy
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
