"""The job record every source produces, and the JSONL trace format (read with line numbers)."""

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from runner_ctl.errors import UsageError
from runner_ctl.paths import open_regular

__all__ = [
    "EARLIEST",
    "LATEST",
    "REQUIRED_FIELDS",
    "Filters",
    "IsoTime",
    "Job",
    "format_time",
    "job_to_json",
    "parse_time",
    "read_jsonl",
    "write_jsonl",
]

REQUIRED_FIELDS = (
    "created_at",
    "started_at",
    "completed_at",
    "labels",
    "runner_name",
    "workflow",
    "name",
    "conclusion",
    "run_id",
)

# The moments a report handles: no CI ran before 1970, and a day's margin below year 9999
# keeps whole-day chunks and ISO formatting of a window's ends inside Python's calendar.
EARLIEST = 0.0
LATEST = datetime(9999, 12, 30, tzinfo=UTC).timestamp()


@dataclass(slots=True)  # not frozen: its __init__ would cost a 100k-job trace a quarter second
class Job:
    """One job execution as a forge reported it. Times are POSIX seconds (UTC)."""

    created_at: float
    started_at: float | None
    completed_at: float | None
    labels: tuple[str, ...]
    runner_name: str | None
    workflow: str
    name: str
    conclusion: str | None
    run_id: int | str
    run_attempt: int = 1
    # The run's (pipeline's) creation: the start of dependency wait and of wall-clock latency.
    run_created_at: float | None = None
    branch: str | None = None
    status: str | None = None
    # GitLab measures queueing itself (from "pending", not from creation): used when set.
    queued_seconds: float | None = None
    # None: decided from labels and runner name (see stats.is_hosted).
    hosted: bool | None = None

    @property
    def queued_at(self) -> float:
        """When the job started waiting for a runner: its arrival in the queue."""
        if self.queued_seconds is not None and self.started_at is not None:
            return self.started_at - self.queued_seconds
        return self.created_at


@dataclass(frozen=True)
class Filters:
    """``--labels`` (a job must ask for all of them), ``--workflow`` (its name), ``--branch``."""

    labels: frozenset[str] = frozenset()
    workflow: str | None = None
    branch: str | None = None

    def keeps_run(self, workflow: str | None, branch: str | None) -> bool:
        """Whether a run (pipeline) can hold wanted jobs: sources skip the others' jobs unfetched."""
        return (self.workflow is None or workflow == self.workflow) and (self.branch is None or branch == self.branch)

    def keeps(self, job: Job) -> bool:
        return self.labels.issubset(job.labels) and self.keeps_run(job.workflow, job.branch)


def parse_time(text: str) -> float:
    """An ISO 8601 date-time as POSIX seconds; a time without an offset is UTC."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def format_time(seconds: float) -> str:
    text = datetime.fromtimestamp(seconds, UTC).isoformat()
    return text.replace("+00:00", "Z")


def _seconds(value: object) -> float:
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 date-time string")
    try:
        seconds = parse_time(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{value!r} is not an ISO 8601 date-time") from None
    if not EARLIEST <= seconds <= LATEST:
        raise ValueError(f"{value!r} is outside {format_time(EARLIEST)} .. {format_time(LATEST)}")
    return seconds


# Parsed straight to POSIX seconds: datetime objects with pydantic's own tzinfo cost a 100k-job
# trace about a second in .timestamp() alone.
_Time = Annotated[float, BeforeValidator(_seconds)]


def _checked_iso(value: str) -> str:
    _seconds(value)
    return value


# A forge's date-time, kept as the text the forge sent (the API cache stores it so) but checked
# when the answer is validated: a bad one is an unexpected payload, not a traceback later.
IsoTime = Annotated[str, AfterValidator(_checked_iso)]


class _JobLine(BaseModel):
    """One line of a JSONL trace: the issue's nine fields required, the rest optional."""

    model_config = ConfigDict(extra="ignore")

    created_at: _Time
    started_at: _Time | None
    completed_at: _Time | None
    labels: list[str]
    runner_name: str | None
    workflow: str
    name: str
    conclusion: str | None
    run_id: int | str
    run_attempt: Annotated[int, Field(ge=1)] = 1
    run_created_at: _Time | None = None
    branch: str | None = None
    status: str | None = None
    queued_seconds: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    hosted: bool | None = None

    def to_job(self) -> Job:
        return Job(
            self.created_at,
            self.started_at,
            self.completed_at,
            tuple(self.labels),
            self.runner_name,
            self.workflow,
            self.name,
            self.conclusion,
            self.run_id,
            self.run_attempt,
            self.run_created_at,
            self.branch,
            self.status,
            self.queued_seconds,
            self.hosted,
        )


def _line_error(path: Path, number: int, error: ValidationError) -> UsageError:
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "line"
    if first["type"] == "missing":
        return UsageError(
            f"{path}:{number}: missing field '{where}' (every line needs {', '.join(REQUIRED_FIELDS)}; "
            "started_at, completed_at, runner_name and conclusion may be null)"
        )
    if first["type"] == "json_invalid":
        return UsageError(f"{path}:{number}: not a JSON object: {first['msg']}")
    return UsageError(f"{path}:{number}: field '{where}': {first['msg']}")


def read_jsonl(path: Path) -> Iterator[Job]:
    """The jobs of a JSONL trace; a bad line raises UsageError naming the file and line."""
    with open_regular(path, "--from-jsonl") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                yield _JobLine.model_validate_json(raw).to_job()
            except ValidationError as error:
                raise _line_error(path, number, error) from None


def job_to_json(job: Job) -> dict[str, Any]:
    line: dict[str, Any] = {
        "created_at": format_time(job.created_at),
        "started_at": format_time(job.started_at) if job.started_at is not None else None,
        "completed_at": format_time(job.completed_at) if job.completed_at is not None else None,
        "labels": list(job.labels),
        "runner_name": job.runner_name,
        "workflow": job.workflow,
        "name": job.name,
        "conclusion": job.conclusion,
        "run_id": job.run_id,
        "run_attempt": job.run_attempt,
    }
    optional = {
        "run_created_at": format_time(job.run_created_at) if job.run_created_at is not None else None,
        "branch": job.branch,
        "status": job.status,
        "queued_seconds": job.queued_seconds,
        "hosted": job.hosted,
    }
    line.update({key: value for key, value in optional.items() if value is not None})
    return line


def write_jsonl(path: Path, jobs: Iterable[Job]) -> int:
    """Write a trace that ``read_jsonl`` reads back; returns the number of lines."""
    count = 0
    try:
        with open_regular(path, "--export-jsonl", "write") as handle:
            for job in jobs:
                handle.write(json.dumps(job_to_json(job), separators=(",", ":")).encode() + b"\n")
                count += 1
    except OSError as error:
        raise UsageError(f"cannot write --export-jsonl {path}: {error.strerror or error}") from None
    return count
