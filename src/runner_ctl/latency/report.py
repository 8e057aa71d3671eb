"""The report: selection, statistics and the scale-out recommendation, as the JSON contract.

``{"source", "window": {"since","until"}, "jobs",
"overall": {"queue_seconds": {p50,p90,p95,p99,max,mean}, "run_seconds": {p50,p95}, "wall_clock_seconds": {p50,p95}},
"groups": [{"labels", "jobs", "queue_seconds", "run_seconds"}], "by_hour_utc": [{"hour","jobs","queue_p95"}],
"api": {"calls","cache_hits","not_modified"},
"recommendation": {"target_p95_seconds","current_slots","recommended_slots","scale_out",
"predicted_queue_p95_seconds": {"1": s, ...}}}``

and besides those keys: ``overall.dependency_wait_seconds`` and ``overall.slot_utilisation``,
``groups[].hosted`` and ``groups[].slot_utilisation``, ``recommendation.simulated_jobs`` and
``recommendation.observed_queue_p95_seconds`` (the model's calibration: compare it with the
prediction at the current slot count), ``recommendation.current_slots_basis`` (``"given"``
by ``--current-slots``, ``"inferred"`` from the trace, or ``"unknown"``: then
``current_slots`` is null, ``scale_out`` false, and ``recommendation.one_runner_per_job``
says why), ``excluded`` (what was not counted, and why: ``no_created_at`` counts jobs a
forge sent without a creation time), ``missing_runs`` (``{"runs", "names"}``: runs whose
jobs answered 404), ``tfvars`` (what ``--write-tfvars`` wrote) and ``note`` (``"no jobs in
window"`` when that is so).
"""

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from runner_ctl.forge.httpcache import ApiCounters
from runner_ctl.latency.model import Filters, Job
from runner_ctl.latency.simulate import SimJob, predict_p95
from runner_ctl.latency.source import Gaps
from runner_ctl.latency.stats import (
    SHORT_KEYS,
    Execution,
    attempt_wall_clocks,
    by_hour,
    inferred_slots,
    one_runner_per_job,
    prepare,
    summarize,
)
from runner_ctl.latency.window import Window

__all__ = ["DEFAULT_MAX_SLOTS", "DEFAULT_TARGET_P95", "NO_JOBS", "Report", "ReportOptions", "build_report", "select"]

DEFAULT_TARGET_P95 = 60.0  # GitLab.com's own target: 95% of jobs start within 60 s
DEFAULT_MAX_SLOTS = 16
NO_JOBS = "no jobs in window"


@dataclass(frozen=True)
class ReportOptions:
    target_p95: float = DEFAULT_TARGET_P95
    slots: int | None = None  # None: inferred from the trace
    max_slots: int = DEFAULT_MAX_SLOTS
    min_ceiling: int = 0  # the replay tries at least this many slots (--max-hosts x --slots-per-host)


@dataclass
class Report:
    data: dict[str, Any]
    queues: list[float] = field(default_factory=list)  # every counted job's queue time, for the chart

    @property
    def scale_out(self) -> bool:
        return bool(self.data["recommendation"]["scale_out"])

    @property
    def empty(self) -> bool:
        return int(self.data["jobs"]) == 0


def select(jobs: Sequence[Job], window: Window, filters: Filters) -> list[Job]:
    """Jobs of runs created in the window that pass the filters."""
    return [
        job
        for job in jobs
        if window.contains(job.run_created_at if job.run_created_at is not None else job.created_at)
        and filters.keeps(job)
    ]


def _utilisation(busy: float, slots: int | None, window: Window) -> float | None:
    if slots is None or slots <= 0 or window.seconds <= 0:
        return None
    return round(busy / (slots * window.seconds), 4)


def _busy(executions: Sequence[Execution], window: Window) -> float:
    """Seconds self-hosted slots were busy inside the window (a job may run past its end)."""
    return math.fsum(
        max(0.0, min(job.completed_at, window.until) - max(job.started_at, window.since))
        for job in (execution.job for execution in executions if not execution.hosted)
        if job.started_at is not None and job.completed_at is not None
    )


def _recommendation(
    executions: Sequence[Execution], current: int | None, basis: str, options: ReportOptions
) -> dict[str, Any]:
    label_sets: dict[tuple[str, ...], frozenset[str]] = {}
    trace = [
        SimJob(
            execution.arrival,
            execution.run,
            label_sets.setdefault(execution.job.labels, frozenset(execution.job.labels)),
            execution.job.runner_name or "",
        )
        for execution in executions
        if not execution.hosted and execution.run is not None
    ]
    ceiling = max(options.max_slots, current or 0, options.min_ceiling)
    predicted = predict_p95(trace, range(1, ceiling + 1)) if trace else {}
    meeting = [count for count, p95 in sorted(predicted.items()) if p95 is not None and p95 <= options.target_p95]
    recommended = meeting[0] if meeting else None
    return {
        "target_p95_seconds": options.target_p95,
        "current_slots": current,
        "recommended_slots": recommended,
        # No slot count up to the ceiling meets the target: more are needed than were tried.
        # An unknown current size cannot be compared with.
        "scale_out": bool(trace) and current is not None and (recommended is None or recommended > current),
        "predicted_queue_p95_seconds": {
            str(count): (round(p95, 3) if p95 is not None else None) for count, p95 in sorted(predicted.items())
        },
        "simulated_jobs": len(trace),
        "current_slots_basis": basis,
        "one_runner_per_job": basis == "unknown",
        "observed_queue_p95_seconds": summarize(
            [e.queue for e in executions if not e.hosted and e.run is not None], ("p95",)
        )["p95"],
    }


def build_report(
    *,
    source: str,
    window: Window,
    jobs: Sequence[Job],
    filters: Filters,
    counters: ApiCounters,
    options: ReportOptions,
    gaps: Gaps | None = None,
) -> Report:
    gaps = gaps if gaps is not None else Gaps()
    selected = select(jobs, window, filters)
    prepared = prepare(selected)
    executions = prepared.executions
    current: int | None
    if options.slots is not None:
        current, basis = options.slots, "given"
    elif one_runner_per_job(executions):
        current, basis = None, "unknown"
    else:
        current, basis = inferred_slots(executions), "inferred"
    queues = [execution.queue for execution in executions]
    runs = [execution.run for execution in executions if execution.run is not None]
    groups: dict[tuple[str, ...], list[Execution]] = defaultdict(list)
    label_keys: dict[tuple[str, ...], tuple[str, ...]] = {}  # labels as asked -> sorted, deduplicated
    for execution in executions:
        labels = execution.job.labels
        if labels not in label_keys:
            label_keys[labels] = tuple(sorted(set(labels)))
        groups[label_keys[labels]].append(execution)
    busy = {labels: _busy(members, window) for labels, members in groups.items()}
    data: dict[str, Any] = {
        "source": source,
        "window": window.to_json(),
        "jobs": len(executions),
        "overall": {
            "queue_seconds": summarize(queues),
            "run_seconds": summarize(runs, SHORT_KEYS),
            "wall_clock_seconds": summarize(attempt_wall_clocks(selected, prepared.attempt_starts), SHORT_KEYS),
            "dependency_wait_seconds": summarize((e.dependency_wait for e in executions), SHORT_KEYS),
            "slot_utilisation": _utilisation(math.fsum(busy.values()), current, window),
        },
        "groups": [
            {
                "labels": list(labels),
                "jobs": len(members),
                "queue_seconds": summarize(e.queue for e in members),
                "run_seconds": summarize((e.run for e in members if e.run is not None), SHORT_KEYS),
                "hosted": all(e.hosted for e in members),
                "slot_utilisation": None
                if all(e.hosted for e in members)
                else _utilisation(busy[labels], current, window),
            }
            for labels, members in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
        ],
        "by_hour_utc": by_hour(executions),
        "api": counters.to_json(),
        "recommendation": _recommendation(executions, current, basis, options),
        "excluded": {
            **prepared.excluded_json(),
            "outside_filters": len(jobs) - len(selected),
            "no_created_at": gaps.no_created_at,
        },
        "missing_runs": gaps.missing_json(),
    }
    if not executions:
        data["note"] = NO_JOBS
    return Report(data, queues)
