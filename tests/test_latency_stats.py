"""Queue-time definitions and statistics: re-runs, skipped jobs, clock skew, percentiles."""

import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner_ctl.forge.httpcache import ApiCounters
from runner_ctl.latency.model import Filters
from runner_ctl.latency.report import NO_JOBS, ReportOptions, build_report
from runner_ctl.latency.stats import (
    attempt_wall_clocks,
    by_hour,
    inferred_slots,
    is_hosted,
    percentile,
    prepare,
    summarize,
)
from runner_ctl.latency.window import Window
from tests.latencyfixtures import DAY0, job

values = st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=2, max_size=300)


@given(values)
def test_percentiles_are_statistics_quantiles_inclusive(data: list[float]) -> None:
    ordered = sorted(data)
    cuts = statistics.quantiles(data, n=100, method="inclusive")
    for p in range(1, 100):
        assert percentile(ordered, p) == cuts[p - 1]


def test_percentile_edges() -> None:
    assert percentile([4.0], 95) == 4.0
    assert percentile([1.0, 2.0, 3.0], 100) == 3.0
    assert percentile([1.0, 2.0, 3.0], 0) == 1.0
    assert summarize([]) == dict.fromkeys(("p50", "p90", "p95", "p99", "max", "mean"))
    assert summarize([1.0, 2.0, 3.0, 10.0]) == {
        "p50": 2.5,
        "p90": 7.9,
        "p95": 8.95,
        "p99": 9.79,
        "max": 10.0,
        "mean": 4.0,
    }


def rerun_trace() -> list:  # type: ignore[type-arg]
    """A run whose 'test' failed and was re-run: attempt 2 lists 'build' again, carried forward."""
    return [
        job(0, 10, 100, name="build", run_id=7, run_created_at=DAY0),
        job(100, 130, 200, name="test", run_id=7, run_created_at=DAY0, conclusion="failure", runner="runner-2"),
        # attempt 2, created at 1000: build is the same execution (same runner and started_at)
        job(1000, 10, 100, name="build", run_id=7, attempt=2, run_created_at=DAY0),
        job(1000, 1004, 1100, name="test", run_id=7, attempt=2, run_created_at=DAY0),
    ]


def test_a_carried_forward_job_is_counted_once() -> None:
    prepared = prepare(rerun_trace())
    assert prepared.carried_forward == 1
    assert prepared.clamped == 0
    assert sorted((e.job.name, e.job.run_attempt, e.queue) for e in prepared.executions) == [
        ("build", 1, 10.0),
        ("test", 1, 30.0),
        ("test", 2, 4.0),
    ]


def test_without_carry_forward_detection_the_queue_would_be_negative() -> None:
    carried = rerun_trace()[2]
    assert carried.started_at is not None and carried.started_at - carried.created_at < 0


def test_skipped_and_never_started_jobs_are_excluded() -> None:
    prepared = prepare(
        [
            job(0, 5, 65),
            job(0, 0, 0, name="deploy", conclusion="skipped", runner=None),
            job(0, None, 30, name="lint", conclusion="cancelled", runner=None),  # cancelled while queued
            job(0, 8, 9, name="docs", conclusion="skipped", runner="runner-1"),
            job(0, None, None, name="manual", status="manual", conclusion=None, runner=None),
        ]
    )
    assert [e.job.name for e in prepared.executions] == ["build"]
    assert (prepared.skipped, prepared.not_started) == (3, 1)


def test_clock_skew_is_clamped_to_zero_and_counted() -> None:
    prepared = prepare([job(10, 9.2, 70), job(10, 15, 70, name="test")])
    assert sorted(e.queue for e in prepared.executions) == [0.0, 5.0]
    assert prepared.clamped == 1
    assert prepared.excluded_json()["negative_queue_clamped"] == 1


def test_gitlab_queue_is_its_queued_duration() -> None:
    # created at 0, pending only after the earlier stage at 50, started at 53
    prepared = prepare([job(0, 53, 100, queued_seconds=3.0, run_created_at=DAY0)])
    (only,) = prepared.executions
    assert only.queue == 3.0
    assert only.dependency_wait == 50.0  # from the pipeline's creation to pending
    assert only.job.queued_at == DAY0 + 50


def test_dependency_wait_and_wall_clock_per_attempt() -> None:
    trace = rerun_trace()
    waits = sorted(e.dependency_wait for e in prepare(trace).executions)
    assert waits == [0.0, 0.0, 100.0]  # test (attempt 1) was created 100 s after the run
    # attempt 1: created 0, last completion 200; attempt 2: first job created 1000, last completion 1100
    assert sorted(attempt_wall_clocks(trace)) == [100.0, 200.0]


def test_an_unfinished_attempt_has_no_wall_clock() -> None:
    assert attempt_wall_clocks([job(0, 5, 60), job(0, 70, None, name="test")]) == []


def test_by_hour_has_all_24_hours() -> None:
    rows = by_hour(
        prepare([job(3 * 3600, 3 * 3600 + 40, 3 * 3600 + 100), job(3 * 3600 + 5, 3 * 3600 + 15, 4 * 3600)]).executions
    )
    assert len(rows) == 24
    assert rows[3] == {"hour": 3, "jobs": 2, "queue_p95": 38.5}
    assert rows[4] == {"hour": 4, "jobs": 0, "queue_p95": None}


def test_slots_inferred_from_runners_and_their_concurrency() -> None:
    executions = prepare(
        [
            job(0, 1, 100, runner="gh-1", run_id=1),
            job(0, 1, 100, runner="gh-2", run_id=2),
            job(0, 150, 200, runner="gh-1", run_id=3),
            # a GitLab runner with concurrent = 2 ran two jobs at once
            job(0, 10, 100, runner="gl-1", run_id=4),
            job(0, 20, 110, runner="gl-1", run_id=5, name="test"),
            job(0, 110, 150, runner="gl-1", run_id=6),  # starts as the other ends: not a third
            job(0, 10, 100, runner="GitHub Actions 3", labels=("ubuntu-latest",), run_id=7),
            job(0, 99, 140, runner="gh-2", run_id=8),  # stamped a second before gh-2's last job ended
        ]
    ).executions
    assert inferred_slots(executions) == 4


@pytest.mark.parametrize(
    ("labels", "runner", "hosted", "expected"),
    [
        (("ubuntu-latest",), "GitHub Actions 12", None, True),
        (("ubuntu-24.04",), None, None, True),
        (("windows-2022",), "x", None, True),
        (("macos-14-arm64",), "x", None, True),
        (("saas-linux-small-amd64",), "3-blue.saas-linux-small-amd64.runners-manager.gitlab.com/default", None, True),
        (("self-hosted", "linux", "ubuntu-24.04"), "ci-1", None, False),
        (("self-hosted", "linux"), "ci-1", None, False),
        (("runner-ctl",), "ci-host-1", None, False),
        (("big-ubuntu",), "GitHub Actions 3", False, False),  # the source knew better
        (("gpu",), "ci-1", True, True),
    ],
)
def test_hosted_rule(labels: tuple[str, ...], runner: str | None, hosted: bool | None, expected: bool) -> None:
    assert is_hosted(job(0, 1, 2, labels=labels, runner=runner, hosted=hosted)) is expected


def report_of(jobs: list, **options: object) -> dict:  # type: ignore[type-arg]
    window = Window(DAY0, DAY0 + 86_400)
    built = build_report(
        source="test",
        window=window,
        jobs=jobs,
        filters=Filters(),
        counters=ApiCounters(),
        options=ReportOptions(**options),  # type: ignore[arg-type]
    )
    return built.data


def test_report_groups_by_label_set_and_marks_hosted_groups() -> None:
    data = report_of(
        [
            job(0, 10, 70, labels=("linux", "self-hosted")),
            job(100, 140, 200, labels=("self-hosted", "linux"), run_id=2),
            job(0, 2, 50, labels=("ubuntu-latest",), runner="GitHub Actions 1", run_id=3),
        ]
    )
    assert data["jobs"] == 3
    first, second = data["groups"]
    assert first["labels"] == ["linux", "self-hosted"] and first["jobs"] == 2 and first["hosted"] is False
    assert first["queue_seconds"]["max"] == 40.0
    assert second["labels"] == ["ubuntu-latest"] and second["hosted"] is True and second["slot_utilisation"] is None
    recommendation = data["recommendation"]
    assert recommendation["simulated_jobs"] == 2  # the hosted job is not the fleet's to serve
    assert recommendation["current_slots"] == 1
    assert data["overall"]["slot_utilisation"] == round(120 / 86_400, 4)


def test_an_empty_window_is_an_explicit_report() -> None:
    data = report_of([])
    assert data["jobs"] == 0 and data["note"] == NO_JOBS
    assert data["overall"]["queue_seconds"]["p95"] is None
    assert data["recommendation"]["scale_out"] is False
    assert data["recommendation"]["recommended_slots"] is None
    assert data["recommendation"]["predicted_queue_p95_seconds"] == {}


def test_recommendation_picks_the_smallest_count_meeting_the_target() -> None:
    # ten 300 s jobs arriving together on one runner: one slot queues them for up to 2700 s
    jobs = [job(0, 300 * i, 300 * (i + 1), run_id=i) for i in range(10)]
    data = report_of(jobs, target_p95=60.0)
    recommendation = data["recommendation"]
    assert recommendation["current_slots"] == 1
    assert recommendation["recommended_slots"] == 10
    assert recommendation["scale_out"] is True
    assert recommendation["predicted_queue_p95_seconds"]["1"] == pytest.approx(2565.0)
    assert recommendation["predicted_queue_p95_seconds"]["10"] == 0.0
    assert report_of(jobs, target_p95=60.0, slots=12)["recommendation"]["scale_out"] is False
