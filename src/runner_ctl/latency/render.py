"""The report for people: a rich table on a terminal, or GitHub-flavoured markdown.

Both are built from the same sections, made from the report's JSON, so they never disagree
with ``--format json``.
"""

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["Section", "duration", "markdown", "print_table", "sections"]


@dataclass
class Section:
    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


def duration(seconds: float | None) -> str:
    """Seconds as people read them: 0.4s, 42s, 3m05s, 1h02m."""
    if seconds is None:
        return "-"
    if seconds == 0:
        return "0s"
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes}m{rest:02d}s"
    hours, rest = divmod(round(seconds) // 60, 60)
    return f"{hours}h{rest:02d}m"


def _slots(count: int) -> str:
    return f"{count} slot" if count == 1 else f"{count} slots"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _labels(labels: list[str]) -> str:
    return ", ".join(labels) if labels else "(no labels)"


def _queue_row(name: str, jobs: int, queue: dict[str, Any], run: dict[str, Any], used: float | None) -> list[str]:
    return [
        name,
        str(jobs),
        *(duration(queue[key]) for key in ("p50", "p90", "p95", "p99", "max", "mean")),
        duration(run["p50"]),
        duration(run["p95"]),
        _percent(used),
    ]


def _summary_notes(data: dict[str, Any]) -> list[str]:
    excluded = data["excluded"]
    overall = data["overall"]
    api = data["api"]
    wall, dependency = overall["wall_clock_seconds"], overall["dependency_wait_seconds"]
    notes = [
        f"{data['jobs']} jobs counted; not counted: {excluded['skipped']} skipped, {excluded['not_started']} never "
        f"started, {excluded['carried_forward']} carried forward by re-runs; {excluded['negative_queue_clamped']} "
        "negative queue times clamped to 0",
        f"wall-clock per run: p50 {duration(wall['p50'])}, p95 {duration(wall['p95'])}; "
        f"dependency wait p50 {duration(dependency['p50'])}, p95 {duration(dependency['p95'])}",
        f"API: {api['calls']} calls, {api['cache_hits']} answered from the cache, {api['not_modified']} not modified",
    ]
    if excluded.get("no_created_at"):
        notes.append(f"{excluded['no_created_at']} jobs left out: the forge sent them without created_at")
    missing = data.get("missing_runs") or {}
    if missing.get("runs"):
        more = missing["runs"] - len(missing["names"])
        names = ", ".join(missing["names"]) + (f" and {more} more" if more > 0 else "")
        notes.append(f"{missing['runs']} runs missing (their jobs answered 404: deleted since listed): {names}")
    if data.get("note"):
        notes.insert(0, f"{data['note']} ({data['window']['since']} .. {data['window']['until']})")
    return notes


def _verdict(recommendation: dict[str, Any]) -> str:
    target = duration(recommendation["target_p95_seconds"])
    current = recommendation["current_slots"]
    recommended = recommendation["recommended_slots"]
    if not recommendation["simulated_jobs"]:
        return "no self-hosted jobs in the window: nothing to size"
    if current is None:
        found = f"{_slots(recommended)} keep" if recommended is not None else "no slot count tried keeps"
        return (
            f"{found} the queue p95 within {target}; the current size cannot be inferred (a unique runner name "
            "per job: ephemeral or just-in-time runners, pods); give it with --current-slots"
        )
    if recommended is None:
        tried = max((int(count) for count in recommendation["predicted_queue_p95_seconds"]), default=0)
        return f"scale out: no slot count up to {tried} keeps the queue p95 within {target}"
    if recommendation["scale_out"]:
        return f"scale out: {_slots(recommended)} recommended (now {current}) for a queue p95 within {target}"
    return f"no scale-out needed: {_slots(recommended)} recommended (now {current}) for a queue p95 within {target}"


def sections(data: dict[str, Any]) -> list[Section]:
    overall = data["overall"]
    head = ["labels", "jobs", "queue p50", "p90", "p95", "p99", "max", "mean", "run p50", "run p95", "slot use"]
    rows = [
        _queue_row("all", data["jobs"], overall["queue_seconds"], overall["run_seconds"], overall["slot_utilisation"])
    ]
    for group in data["groups"]:
        name = _labels(group["labels"]) + (" (hosted)" if group["hosted"] else "")
        rows.append(
            _queue_row(name, group["jobs"], group["queue_seconds"], group["run_seconds"], group["slot_utilisation"])
        )
    window = data["window"]
    found = [
        Section(
            f"CI latency: {data['source']}, {window['since']} .. {window['until']}", head, rows, _summary_notes(data)
        )
    ]
    hours = [
        [f"{hour['hour']:02d}:00", str(hour["jobs"]), duration(hour["queue_p95"])]
        for hour in data["by_hour_utc"]
        if hour["jobs"]
    ]
    if hours:
        found.append(Section("Queue p95 by hour of day (UTC)", ["hour", "jobs", "queue p95"], hours))
    recommendation = data["recommendation"]
    model_rows = []
    for count, p95 in recommendation["predicted_queue_p95_seconds"].items():
        marks = []
        if int(count) == recommendation["current_slots"]:
            marks.append("current")
        if int(count) == recommendation["recommended_slots"]:
            marks.append("recommended")
        model_rows.append([count, "cannot serve every label set" if p95 is None else duration(p95), ", ".join(marks)])
    notes = [_verdict(recommendation)]
    if recommendation["observed_queue_p95_seconds"] is not None and recommendation["current_slots"] is not None:
        notes.append(
            f"observed queue p95 of the simulated jobs: {duration(recommendation['observed_queue_p95_seconds'])} "
            f"with {_slots(recommendation['current_slots'])}"
        )
    found.append(
        Section("Scale-out model: predicted queue p95 by slot count", ["slots", "queue p95", ""], model_rows, notes)
    )
    return found


def print_table(data: dict[str, Any], console: Console) -> None:
    for section in sections(data):
        # The title on a line of its own: as a table title it would wrap to the table's width.
        console.print(section.title, style="bold", markup=False, soft_wrap=True)
        table = Table(header_style="bold")
        for index, header in enumerate(section.headers):
            table.add_column(header, justify="right" if index > 0 and header else "left")
        for row in section.rows:
            table.add_row(*row)
        if section.rows:
            console.print(table)
        for note in section.notes:
            console.print(note, markup=False, soft_wrap=True)
        console.print()


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(data: dict[str, Any]) -> str:
    lines: list[str] = []
    for index, section in enumerate(sections(data)):
        lines.append(f"{'###' if index == 0 else '####'} {section.title}")
        lines.append("")
        if section.rows:
            lines.append("| " + " | ".join(_cell(header) for header in section.headers) + " |")
            lines.append("| " + " | ".join("---" if i == 0 else "---:" for i in range(len(section.headers))) + " |")
            lines.extend("| " + " | ".join(_cell(cell) for cell in row) + " |" for row in section.rows)
            lines.append("")
        for note in section.notes:
            lines.append(f"- {note}")
        if section.notes:
            lines.append("")
    return "\n".join(lines)
