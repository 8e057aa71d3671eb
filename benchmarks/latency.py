"""Figures of ``runner-ctl latency report``: big traces, and what a second report costs.

    .venv/bin/python benchmarks/latency.py [--jobs 100000] [--runs 5000] [--seed 1]

1. A synthetic trace of ``--jobs`` jobs (30 days of Poisson arrivals, busier in working
   hours; 90% on a fleet of identical self-hosted runners, 10% on hosted runners) is
   written as JSONL, then timed: parse (``read_jsonl``), statistics and the simulation for
   c = 1..16 (``build_report``). It prints seconds per phase and the peak RSS of this
   process (``ru_maxrss``). A second pass adds a GPU runner kind, so the label-matching
   simulation runs instead of the one-kind fast path; both passes have the same goals.
2. ``--runs`` workflow runs over 7 days on the loopback GitHub API stand-in
   (tests/standins/github_api.py), then two reports over the same window with one cache
   directory: the API calls each paid, the cache hits and the 304s.

Goals: at most 3 s and 300 MB for 100,000 jobs, with one runner kind and with two; the
second report's paid calls at most 5% of the first's. It prints the figures and never judges them by exiting non-zero.
"""

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.standins, run from anywhere

from tests.standins.github_api import GitHubStandIn, JobSpec

from runner_ctl.forge.httpcache import ApiCounters
from runner_ctl.latency.github import fetch_github
from runner_ctl.latency.model import Filters, read_jsonl
from runner_ctl.latency.report import ReportOptions, build_report
from runner_ctl.latency.source import SourceOptions
from runner_ctl.latency.window import DAY, Window

GOAL_SECONDS = 3.0
GOAL_MB = 300.0
GOAL_SECOND_REPORT_SHARE = 0.05
START = 1_714_521_600.0  # 2024-05-01T00:00:00Z


def stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def synthetic_trace(path: Path, jobs: int, seed: int, gpu: bool) -> None:
    """Jobs over 30 days, three times as many per hour in 08-18 UTC as at night, served FIFO
    by a fleet (12 linux runners, and 2 GPU runners with ``gpu``) so the trace is consistent."""
    rng = random.Random(seed)  # noqa: S311 - synthetic load, not secrets
    mean_gap = 30 * DAY / jobs
    fleets = {"linux": [0.0] * 12, "gpu": [0.0] * 2}  # when each runner is next free
    now = START
    with path.open("w") as out:
        for index in range(jobs):
            hour = int(now // 3600) % 24
            now += rng.expovariate(1.0 / (mean_gap * (0.6 if 8 <= hour < 18 else 1.8)))
            run = rng.lognormvariate(5.0, 0.8)  # median 2.5 min, a long tail
            kind = rng.random()
            if kind < 0.10:  # hosted: never waits for the fleet
                labels, runner, started = ["ubuntu-latest"], f"GitHub Actions {rng.randrange(1, 50)}", now + 8
            else:
                pool = "gpu" if gpu and kind < 0.15 else "linux"
                labels = ["self-hosted", "linux", "gpu"] if pool == "gpu" else ["self-hosted", "linux"]
                free = fleets[pool]
                slot = min(range(len(free)), key=free.__getitem__)
                started = max(now + 2, free[slot])
                free[slot] = started + run
                runner = f"{pool}-{slot}"
            out.write(
                json.dumps(
                    {
                        "created_at": stamp(now),
                        "started_at": stamp(started),
                        "completed_at": stamp(started + run),
                        "labels": labels,
                        "runner_name": runner,
                        "workflow": "CI",
                        "name": f"job-{index % 40}",
                        "conclusion": "success",
                        "run_id": index // 4,
                    }
                )
                + "\n"
            )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def trace_figures(jobs: int, seed: int, gpu: bool) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="runner-ctl-bench-") as tmp:
        path = Path(tmp) / "trace.jsonl"
        synthetic_trace(path, jobs, seed, gpu)
        rss_before = peak_rss_mb()
        started = time.perf_counter()
        trace = list(read_jsonl(path))
        parsed = time.perf_counter()
        window = Window(START, START + 31 * DAY)
        report = build_report(
            source="bench",
            window=window,
            jobs=trace,
            filters=Filters(),
            counters=ApiCounters(),
            options=ReportOptions(max_slots=16),
        )
        done = time.perf_counter()
    recommendation = report.data["recommendation"]
    predicted = recommendation["predicted_queue_p95_seconds"]
    total = done - started
    kinds = "two runner kinds (label matching)" if gpu else "one runner kind (fast path)"
    print(f"trace: {jobs} jobs, {kinds}, {len(predicted)} slot counts simulated")
    print(f"  parse {parsed - started:.2f} s, statistics + simulation {done - parsed:.2f} s, total {total:.2f} s")
    print(f"  peak RSS {peak_rss_mb():.0f} MB (before parsing {rss_before:.0f} MB)")
    shown = ", ".join(f"{c}: {'-' if p is None else f'{p:.0f}'}" for c, p in list(predicted.items())[:8])
    print(
        f"  simulated jobs {recommendation['simulated_jobs']}, current slots {recommendation['current_slots']}, "
        f"recommended {recommendation['recommended_slots']}; predicted p95 s by slots: {shown}, ..."
    )
    return total, peak_rss_mb()


def api_figures(runs: int, seed: int) -> tuple[int, int]:
    rng = random.Random(seed)  # noqa: S311 - synthetic load, not secrets
    standin = GitHubStandIn()
    # A first report over 5,000 runs needs more than the 5,000 requests an hour of a user
    # token: give the stand-in a GitHub Enterprise Cloud budget so it measures calls, not waits.
    standin.remaining = 15_000
    with standin.running(), tempfile.TemporaryDirectory(prefix="runner-ctl-bench-cache-") as cache:
        gap = 7 * DAY / runs
        for index in range(runs):
            created = START + index * gap + rng.uniform(0, gap / 2)
            standin.add_run(
                created,
                [
                    JobSpec("build", started=rng.uniform(1, 30), completed=200, runner=f"ci-{index % 4}"),
                    JobSpec("test", created=200, started=205, completed=500, runner=f"ci-{(index + 1) % 4}"),
                ],
            )
        window = Window(START, START + 7 * DAY)
        paid = []
        for label in ("first", "second"):
            counters = ApiCounters()
            started = time.perf_counter()
            options = SourceOptions(
                api_url=standin.url,
                token=standin.token,
                token_env="GITHUB_TOKEN",  # noqa: S106 - a variable name
                window=window,
                filters=Filters(),
                cache_root=Path(cache),
                counters=counters,
            )
            jobs = fetch_github(standin.repo, options)
            seconds = time.perf_counter() - started
            print(
                f"api: {label} report over {runs} runs: {len(jobs)} jobs, calls {counters.calls}, "
                f"cache hits {counters.cache_hits}, not modified {counters.not_modified}, {seconds:.1f} s"
            )
            paid.append(counters.calls)
    return paid[0], paid[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    one_kind = trace_figures(args.jobs, args.seed, gpu=False)
    two_kinds = trace_figures(args.jobs, args.seed, gpu=True)
    first, second = api_figures(args.runs, args.seed)
    share = second / first if first else 0.0
    traces_met = all(seconds <= GOAL_SECONDS and megabytes <= GOAL_MB for seconds, megabytes in (one_kind, two_kinds))
    met = traces_met and share <= GOAL_SECOND_REPORT_SHARE
    print(
        f"goals: <= {GOAL_SECONDS:.0f} s and <= {GOAL_MB:.0f} MB for {args.jobs} jobs: one runner kind "
        f"{one_kind[0]:.2f} s, {one_kind[1]:.0f} MB; two runner kinds {two_kinds[0]:.2f} s, {two_kinds[1]:.0f} MB; "
        f"second report paid <= {GOAL_SECOND_REPORT_SHARE:.0%} of the first: {second}/{first} = {share:.1%}: "
        f"{'met' if met else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
