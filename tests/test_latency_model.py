"""The JSONL trace format and the report window."""

from pathlib import Path

import pytest

from runner_ctl.errors import UsageError
from runner_ctl.latency.model import REQUIRED_FIELDS, Filters, read_jsonl, write_jsonl
from runner_ctl.latency.window import DAY, Window, day_chunks, parse_moment, resolve_window
from tests.latencyfixtures import DAY0, job, write_trace

LINE = {
    "created_at": "2024-05-01T10:00:00Z",
    "started_at": "2024-05-01T10:00:07Z",
    "completed_at": "2024-05-01T10:05:07Z",
    "labels": ["self-hosted", "linux"],
    "runner_name": "ci-1",
    "workflow": "CI",
    "name": "build",
    "conclusion": "success",
    "run_id": 17,
}


def test_a_trace_reads_back_what_was_written(tmp_path: Path) -> None:
    jobs = [
        job(0, 7, 307),
        job(5, None, None, name="deploy", runner=None, conclusion="skipped", run_id="p-9", attempt=2),
        job(10, 12.5, 70, queued_seconds=1.5, hosted=True, branch="main", run_created_at=DAY0, status="completed"),
    ]
    path = tmp_path / "trace.jsonl"
    assert write_jsonl(path, jobs) == 3
    assert list(read_jsonl(path)) == jobs


def test_the_issue_fields_are_enough(tmp_path: Path) -> None:
    (only,) = read_jsonl(write_trace(tmp_path / "t.jsonl", [LINE]))
    assert only.started_at is not None
    assert only.started_at - only.created_at == 7
    assert only.labels == ("self-hosted", "linux")
    assert only.run_attempt == 1 and only.queued_seconds is None and only.hosted is None


def test_a_time_without_an_offset_is_utc(tmp_path: Path) -> None:
    (only,) = read_jsonl(write_trace(tmp_path / "t.jsonl", [{**LINE, "created_at": "2024-05-01T10:00:00"}]))
    assert only.created_at == DAY0 + 10 * 3600


@pytest.mark.parametrize("missing", REQUIRED_FIELDS)
def test_a_missing_field_is_named_with_its_line_number(tmp_path: Path, missing: str) -> None:
    broken = {key: value for key, value in LINE.items() if key != missing}
    path = write_trace(tmp_path / "t.jsonl", [LINE, LINE, broken, LINE])
    with pytest.raises(UsageError) as raised:
        list(read_jsonl(path))
    assert f"{path}:3: missing field '{missing}'" in raised.value.message
    assert "\n" not in raised.value.message


def test_a_line_that_is_not_json_is_named(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"created_at": "2024-05-01T10:00:00Z"\n')
    with pytest.raises(UsageError, match=r"t\.jsonl:1: not a JSON object"):
        list(read_jsonl(path))


def test_a_bad_value_is_named_with_field_and_line(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl", [LINE, {**LINE, "created_at": "yesterday"}])
    with pytest.raises(UsageError, match=r"t\.jsonl:2: field 'created_at'"):
        list(read_jsonl(path))


def test_blank_lines_are_skipped_and_line_numbers_stay_true(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(write_trace(tmp_path / "x", [LINE]).read_text() + "\n\n{}\n")
    with pytest.raises(UsageError, match=r"t\.jsonl:4: missing field"):
        list(read_jsonl(path))


def test_an_unreadable_trace(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read --from-jsonl"):
        list(read_jsonl(tmp_path / "absent.jsonl"))


def test_filters() -> None:
    wanted = Filters(labels=frozenset({"linux"}), workflow="CI", branch="main")
    assert wanted.keeps(job(0, 1, 2, branch="main"))
    assert not wanted.keeps(job(0, 1, 2, branch="dev"))
    assert not wanted.keeps(job(0, 1, 2, branch="main", labels=("self-hosted",)))
    assert not wanted.keeps(job(0, 1, 2, branch="main", workflow="Nightly"))


NOW = DAY0 + 12 * 3600


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", NOW - 7 * DAY),
        ("12h", NOW - 12 * 3600),
        ("90m", NOW - 90 * 60),
        ("30s", NOW - 30),
        ("2w", NOW - 14 * DAY),
        ("1.5h", NOW - 5400),
        ("now", NOW),
        ("2024-05-01", DAY0),
        ("2024-05-01T06:00:00Z", DAY0 + 6 * 3600),
        ("2024-05-01T06:00:00+02:00", DAY0 + 4 * 3600),
        ("2024-05-01 06:00", DAY0 + 6 * 3600),
    ],
)
def test_moments(text: str, expected: float) -> None:
    assert parse_moment(text, flag="--since", now=NOW) == expected


@pytest.mark.parametrize("text", ["last week", "7 days", "2024-13-01", "", "-3d"])
def test_an_unreadable_moment_says_which_forms_work(text: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_moment(text, flag="--since", now=NOW)
    assert raised.value.message.startswith("--since")
    assert "7d" in raised.value.message and "2024-05-01" in raised.value.message


def test_window_defaults_and_order() -> None:
    assert resolve_window(None, None, now=NOW) == Window(NOW - 7 * DAY, NOW)
    with pytest.raises(UsageError, match="must be before --until"):
        resolve_window("1d", "2d", now=NOW)


def test_day_chunks_cover_the_window_with_whole_utc_days() -> None:
    chunks = day_chunks(Window(DAY0 + 3600, DAY0 + 2 * DAY + 60))
    assert chunks == [(DAY0, DAY0 + DAY), (DAY0 + DAY, DAY0 + 2 * DAY), (DAY0 + 2 * DAY, DAY0 + 3 * DAY)]
    assert day_chunks(Window(DAY0, DAY0 + DAY)) == [(DAY0, DAY0 + DAY)]
