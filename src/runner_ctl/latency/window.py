"""The report window: ``--since``/``--until`` as ISO dates or date-times, or durations ago."""

import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from runner_ctl.errors import UsageError
from runner_ctl.latency.model import EARLIEST, LATEST, format_time

__all__ = ["DAY", "DEFAULT_SINCE", "Window", "day_chunks", "parse_moment", "resolve_window"]

DEFAULT_SINCE = "7d"
DAY = 86_400.0
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY, "w": 7 * DAY}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_FORMS = "an ISO date or date-time (2024-05-01, 2024-05-01T12:00:00Z) or a duration ago (90m, 12h, 7d, 2w)"


@dataclass(frozen=True)
class Window:
    """Half-open [since, until) in POSIX seconds."""

    since: float
    until: float

    def contains(self, moment: float) -> bool:
        return self.since <= moment < self.until

    @property
    def seconds(self) -> float:
        return self.until - self.since

    def to_json(self) -> dict[str, str]:
        # Whole seconds are precise enough for people and keep the report stable.
        return {"since": format_time(math.floor(self.since)), "until": format_time(math.ceil(self.until))}


def parse_moment(text: str, *, flag: str, now: float) -> float:
    """A point in time from ``--since``/``--until`` text; UsageError saying the forms if unreadable."""
    if text.strip().lower() == "now":
        return now
    duration = _DURATION.fullmatch(text)
    try:
        if duration:
            moment = now - float(duration.group(1)) * _UNITS[duration.group(2)]
        else:
            parsed = datetime.fromisoformat(text.strip())
            moment = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not a time: give {_FORMS}") from None
    except OverflowError:  # a date-time whose offset takes it past the calendar's ends
        moment = math.nan
    if not EARLIEST <= moment <= LATEST:
        raise UsageError(
            f"{flag} {text!r} is outside {format_time(EARLIEST)} .. {format_time(LATEST)}, the time a report covers"
        )
    return moment


def resolve_window(since: str | None, until: str | None, *, now: float | None = None) -> Window:
    current = time.time() if now is None else now
    start = parse_moment(DEFAULT_SINCE if since is None else since, flag="--since", now=current)
    end = current if until is None else parse_moment(until, flag="--until", now=current)
    if start >= end:
        raise UsageError(f"--since ({format_time(start)}) must be before --until ({format_time(end)})")
    return Window(start, end)


def day_chunks(window: Window) -> list[tuple[float, float]]:
    """The whole UTC days that cover the window, as [start, end) pairs.

    List queries ask for whole days rather than the window's exact edges so that the same
    URLs come back report after report (a scheduled report's window moves every run), and
    the ETags cached for yesterday's pages answer 304.
    """
    first = datetime.fromtimestamp(window.since, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    chunks = []
    day = first
    while day.timestamp() < window.until:
        following = day + timedelta(days=1)
        chunks.append((day.timestamp(), following.timestamp()))
        day = following
    return chunks
