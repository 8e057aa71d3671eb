"""Which runners ``runners prune`` deletes, and why each other one is kept.

A pure function of the forge's runner list, the name prefix, ``--offline-for``, the clock
and when each runner was first seen offline: no I/O, so every rule is tested directly.

A runner is deleted only when all hold: its name starts with the prefix (runner-ctl named
it; nothing else is ever touched), it is not busy, it is offline, and it has been offline
for at least ``--offline-for``. How long: from the forge's last contact where it gives one
(GitLab's ``contacted_at``), else from when runner-ctl first saw it offline (GitHub gives no
such time).
"""

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from runner_ctl.errors import UsageError
from runner_ctl.forge.runners import RunnerInfo

__all__ = ["MAX_OFFLINE_FOR", "Decision", "decide", "format_duration", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_DURATION = re.compile(r"(\d{1,9})([smhd])")
# Beyond ten years the flag says "never": refused rather than silently meaning that.
MAX_OFFLINE_FOR = 3650 * 86_400
_FORMS = "a whole number with a unit s, m, h or d (30s, 15m, 1h, 2d), or 0 for any offline runner"


def parse_duration(text: str, flag: str = "--offline-for") -> float:
    """Seconds from ``30s``/``15m``/``1h``/``2d`` or ``0``; UsageError saying the forms otherwise."""
    value = text.strip().lower()
    if value == "0":
        return 0.0
    match = _DURATION.fullmatch(value)
    if match is None:
        raise UsageError(f"{flag} {text!r} is not a duration; give {_FORMS}")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds > MAX_OFFLINE_FOR:
        raise UsageError(f"{flag} {text!r} is longer than 3650d; give at most 3650d, or 0 for any offline runner")
    return float(seconds)


def format_duration(seconds: float) -> str:
    """``2d 3h``, ``1h 5m``, ``4m 10s``, ``12s``: the largest unit and the next one unless it is 0."""
    whole = max(0, math.floor(seconds))
    sizes = ((86_400, "d"), (3600, "h"), (60, "m"), (1, "s"))
    index = next((i for i, (size, _) in enumerate(sizes) if whole >= size), len(sizes) - 1)
    size, unit = sizes[index]
    text = f"{whole // size}{unit}"
    if index + 1 < len(sizes):
        smaller, small_unit = sizes[index + 1]
        rest = whole % size // smaller
        text += f" {rest}{small_unit}" if rest else ""
    return text


@dataclass(frozen=True)
class Decision:
    runner: RunnerInfo
    delete: bool
    reason: str


def decide(
    runners: Sequence[RunnerInfo],
    *,
    prefix: str,
    offline_for: float,
    now: float,
    first_seen_offline: Mapping[int, float],
) -> list[Decision]:
    """One decision per runner, in the forge's order.

    ``first_seen_offline`` maps runner ids to when runner-ctl first saw them offline; it
    must already include this run's sightings (``state.OfflineSince.observe``).
    """
    if not prefix:
        # An empty prefix matches every name: the one guard that keeps other people's runners safe.
        raise UsageError("--prefix is empty; give the name prefix runner-ctl registers with, e.g. --prefix rc-")
    return [_decide(runner, prefix, offline_for, now, first_seen_offline) for runner in runners]


def _decide(
    runner: RunnerInfo, prefix: str, offline_for: float, now: float, first_seen_offline: Mapping[int, float]
) -> Decision:
    if not runner.name.startswith(prefix):
        return Decision(runner, False, f"name does not start with {prefix!r}: not registered by runner-ctl")
    if runner.busy:
        return Decision(runner, False, "busy: running a job")
    if runner.online:
        return Decision(runner, False, "online")
    if runner.contacted_at is not None:
        since, origin = runner.contacted_at, "last contact"
    elif runner.id in first_seen_offline:
        since, origin = first_seen_offline[runner.id], "first seen offline"
    else:
        # Not recorded (the state file could not be read): counted from now, so only 0 deletes it.
        since, origin = now, "first seen offline"
    offline = max(0.0, now - since)
    measured = f"offline for {format_duration(offline)} (since {origin})"
    if offline < offline_for:
        return Decision(runner, False, f"{measured}, less than --offline-for {format_duration(offline_for)}")
    return Decision(runner, True, f"{measured}, at least --offline-for {format_duration(offline_for)}")
