"""From raw jobs to executions with a queue time, and the statistics of the report.

Definitions (docs/concepts/latency.md says the same):

- Only jobs that reached a runner count: skipped jobs and jobs that never started are
  excluded and counted. A job never started when it has no ``started_at``, or when it
  has no runner and finished in the second it started (cancelled while queued). A job
  with ``started_at`` and a later end (or none yet) ran, even when the forge no longer
  names its runner (``runner_name: null``, a runner deleted since).
- A re-run lists the earlier attempt's successful jobs again ("carried forward"): same run,
  name, runner and ``started_at``, but a new ``created_at``, hence a negative queue. They
  are one execution: the earliest attempt's is kept, the others are counted and dropped.
- Queue time is ``started_at - created_at`` (GitLab: its ``queued_duration``); a remaining
  negative (clock skew between the forge's services) is clamped to 0 and counted.
- Dependency wait is the time from the run's (attempt's) creation until the job was queued;
  wall-clock latency of a run attempt is its last job's completion minus its creation.
- Percentiles interpolate linearly between closest ranks: numpy's default, Python's
  ``statistics.quantiles(method="inclusive")``, to the bit.
"""

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

from runner_ctl.latency.model import Job

__all__ = [
    "Execution",
    "Prepared",
    "attempt_wall_clocks",
    "by_hour",
    "inferred_slots",
    "is_hosted",
    "one_runner_per_job",
    "percentile",
    "prepare",
    "ran",
    "summarize",
]

QUEUE_KEYS = ("p50", "p90", "p95", "p99", "max", "mean")
SHORT_KEYS = ("p50", "p95")
OVERLAP_TOLERANCE = 5.0
# A trace this large in which nearly every runner ran one job shows runners made per job
# (ephemeral or just-in-time runners, Kubernetes pods): it counts jobs, not slots.
ONE_PER_JOB_MIN_JOBS = 20
ONE_PER_JOB_SHARE = 0.9
# GitHub-hosted runner images (ubuntu-latest, ubuntu-24.04, windows-2022, macos-14-arm64, ...)
# and GitLab.com's hosted runners (saas-linux-small-amd64, ...).
_HOSTED_LABEL = re.compile(r"^(ubuntu|windows|macos)-[\w.-]+$|^saas-[\w.-]+$")
_NEVER_RAN = frozenset({"skipped", "manual", "created", "scheduled"})
AttemptKey = tuple[int | str, int]  # (run id, attempt)


def is_hosted(job: Job) -> bool:
    """Whether a job ran on the forge's hosted runners (the source's own answer wins)."""
    if job.hosted is not None:
        return job.hosted
    if "self-hosted" in job.labels:
        return False
    runner = job.runner_name or ""
    if runner.startswith("GitHub Actions ") or "runners-manager.gitlab.com" in runner:
        return True
    return any(_HOSTED_LABEL.match(label) for label in job.labels)


def ran(job: Job) -> bool:
    """Whether a (not skipped) job reached a runner, judged by its timestamps."""
    if job.started_at is None:
        return False
    if job.runner_name:
        return True
    return job.completed_at is None or job.completed_at > job.started_at


@dataclass(slots=True)  # not frozen: a frozen __init__ is measurably slower on 100k jobs
class Execution:
    """A job that ran, once."""

    job: Job
    queue: float
    run: float | None  # None while it has not completed
    dependency_wait: float
    hosted: bool
    arrival: float  # job.queued_at, computed once


@dataclass
class Prepared:
    executions: list[Execution] = field(default_factory=list)
    attempt_starts: dict[AttemptKey, float] = field(default_factory=dict)
    skipped: int = 0
    not_started: int = 0
    carried_forward: int = 0
    clamped: int = 0

    def excluded_json(self) -> dict[str, int]:
        return {
            "skipped": self.skipped,
            "not_started": self.not_started,
            "carried_forward": self.carried_forward,
            "negative_queue_clamped": self.clamped,
        }


def _attempt_starts(jobs: Sequence[Job]) -> dict[AttemptKey, float]:
    """When each run attempt began: the run's creation for the first, else its first job's."""
    starts: dict[AttemptKey, float] = {}
    for job in jobs:
        key = (job.run_id, job.run_attempt)
        begin = job.run_created_at if job.run_attempt == 1 and job.run_created_at is not None else job.created_at
        starts[key] = min(starts.get(key, begin), begin)
    return starts


def prepare(jobs: Iterable[Job]) -> Prepared:
    # Earlier attempts first: a carried-forward job is dropped from the later one.
    ordered = sorted(jobs, key=attrgetter("run_attempt", "created_at"))
    starts = _attempt_starts(ordered)
    prepared = Prepared(attempt_starts=starts)
    seen: set[tuple[int | str, str, str | None, float]] = set()
    hosted: dict[tuple[tuple[str, ...], str | None, bool | None], bool] = {}  # few distinct keys, many jobs
    for job in ordered:
        if job.conclusion == "skipped" or job.status in _NEVER_RAN:
            prepared.skipped += 1
            continue
        if job.started_at is None or not ran(job):
            prepared.not_started += 1
            continue
        identity = (job.run_id, job.name, job.runner_name, job.started_at)
        if identity in seen:
            prepared.carried_forward += 1
            continue
        seen.add(identity)
        queue = job.queued_seconds if job.queued_seconds is not None else job.started_at - job.created_at
        if queue < 0:
            prepared.clamped += 1
            queue = 0.0
        run = max(0.0, job.completed_at - job.started_at) if job.completed_at is not None else None
        arrival = job.queued_at
        wait = max(0.0, arrival - starts[job.run_id, job.run_attempt])
        key = (job.labels, job.runner_name, job.hosted)
        if key not in hosted:
            hosted[key] = is_hosted(job)
        prepared.executions.append(Execution(job, queue, run, wait, hosted[key], arrival))
    return prepared


def percentile(ordered: Sequence[float], p: int) -> float:
    """The p-th percentile (0..100) of ascending ``ordered`` values, linear between closest ranks.

    Integer arithmetic for the rank, as ``statistics.quantiles(method="inclusive")`` does,
    so the two agree exactly.
    """
    if not ordered:
        raise ValueError("no values")
    if len(ordered) == 1:
        return ordered[0]
    if p >= 100:
        return ordered[-1]
    rank, weight = divmod(p * (len(ordered) - 1), 100)
    return (ordered[rank] * (100 - weight) + ordered[rank + 1] * weight) / 100


def summarize(values: Iterable[float], keys: Sequence[str] = QUEUE_KEYS) -> dict[str, float | None]:
    """``p50``...``p99``, ``max`` and ``mean`` (as asked) of the values, rounded to ms; None if empty."""
    ordered = sorted(values)
    result: dict[str, float | None] = {}
    for key in keys:
        if not ordered:
            result[key] = None
        elif key == "max":
            result[key] = round(ordered[-1], 3)
        elif key == "mean":
            result[key] = round(math.fsum(ordered) / len(ordered), 3)
        else:
            result[key] = round(percentile(ordered, int(key[1:])), 3)
    return result


def by_hour(executions: Sequence[Execution]) -> list[dict[str, float | int | None]]:
    """Jobs and queue p95 per UTC hour of day in which the jobs were queued (all 24 hours)."""
    queues: dict[int, list[float]] = defaultdict(list)
    for execution in executions:
        queues[int(execution.arrival // 3600) % 24].append(execution.queue)
    return [
        {"hour": hour, "jobs": len(queues[hour]), "queue_p95": summarize(queues[hour], ("p95",))["p95"]}
        for hour in range(24)
    ]


def attempt_wall_clocks(jobs: Sequence[Job], starts: dict[AttemptKey, float] | None = None) -> list[float]:
    """Wall-clock seconds of each run attempt whose started jobs have all completed."""
    starts = starts if starts is not None else _attempt_starts(jobs)
    ends: dict[AttemptKey, float] = {}
    unfinished: set[AttemptKey] = set()
    for job in jobs:
        if job.started_at is None or not ran(job) or job.conclusion == "skipped":
            continue
        key = (job.run_id, job.run_attempt)
        if job.completed_at is None:
            unfinished.add(key)
        else:
            ends[key] = max(ends.get(key, job.completed_at), job.completed_at)
    return [max(0.0, end - starts[key]) for key, end in ends.items() if key not in unfinished]


def inferred_slots(executions: Sequence[Execution]) -> int:
    """Self-hosted slots the trace shows: per runner, the most jobs it ran at once (1 on GitHub).

    Overlaps shorter than ``OVERLAP_TOLERANCE`` are not concurrency: a forge's timestamps are
    whole seconds, and a runner may take its next job in the second its last one is stamped done.
    """
    intervals: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for execution in executions:
        job = execution.job
        if execution.hosted or job.started_at is None or job.runner_name is None:
            continue
        end = job.completed_at if job.completed_at is not None else job.started_at
        intervals[job.runner_name] += [(job.started_at, 1), (max(job.started_at, end - OVERLAP_TOLERANCE), -1)]
    total = 0
    for events in intervals.values():
        events.sort()  # (time, -1) before (time, +1): an end before a start at the same instant
        running = peak = 0
        for _, step in events:
            running += step
            peak = max(peak, running)
        total += max(1, peak)
    return total


def one_runner_per_job(executions: Sequence[Execution]) -> bool:
    """Whether the self-hosted runners have a unique name per job, so the slots cannot be inferred."""
    jobs_of: dict[str, int] = defaultdict(int)
    for execution in executions:
        if not execution.hosted and execution.job.runner_name:
            jobs_of[execution.job.runner_name] += 1
    if sum(jobs_of.values()) < ONE_PER_JOB_MIN_JOBS:
        return False
    single = sum(1 for count in jobs_of.values() if count == 1)
    return single >= ONE_PER_JOB_SHARE * len(jobs_of)
