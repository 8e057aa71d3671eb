"""``--chart FILE``: queue-time distribution and hour-of-day p95 as a PNG or SVG (matplotlib).

matplotlib is the ``latency`` extra, not a core dependency (the runner host's install stays
small): without it ``--chart`` is a usage error that says how to install it, raised before
any API call is made.
"""

import importlib.util
from pathlib import Path
from typing import Any

from runner_ctl.errors import UsageError
from runner_ctl.paths import open_regular

__all__ = ["FORMATS", "check_chart_path", "write_chart"]

FORMATS = {".png": "png", ".svg": "svg"}
INSTALL_HINT = "pip install 'runner-ctl[latency]'"


def check_chart_path(path: Path) -> str:
    """The chart format for ``path``; UsageError for another suffix or a missing matplotlib."""
    chart_format = FORMATS.get(path.suffix.lower())
    if chart_format is None:
        raise UsageError(f"--chart {path}: the file name must end in .png or .svg")
    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError(f"--chart needs matplotlib, which is not installed: {INSTALL_HINT}")
    if not path.parent.is_dir():
        raise UsageError(f"--chart {path}: the directory {path.parent} does not exist")
    if path.exists() and not path.is_file():  # before any API call; write_chart checks the open file again
        raise UsageError(f"--chart {path} exists and is not a regular file; give a file name")
    return chart_format


def write_chart(path: Path, data: dict[str, Any], queues: list[float]) -> None:
    chart_format = check_chart_path(path)
    try:
        # An optional dependency: imported only when a chart is asked for.
        import matplotlib

        matplotlib.use("Agg")  # no display on CI machines
        from matplotlib import pyplot
    except ImportError as error:
        raise UsageError(f"--chart needs matplotlib, which cannot be imported ({error}): {INSTALL_HINT}") from None

    target = float(data["recommendation"]["target_p95_seconds"])
    figure, (left, right) = pyplot.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
    try:
        figure.suptitle(f"CI queue time: {data['source']}  {data['window']['since']} .. {data['window']['until']}")
        if queues:
            p95 = data["overall"]["queue_seconds"]["p95"]
            left.hist(queues, bins=min(60, max(10, len(queues) // 20)), color="#4c72b0")
            left.axvline(p95, color="#c44e52", linestyle="--", label=f"p95 {p95:.0f} s")
            left.axvline(target, color="#55a868", linestyle=":", label=f"target {target:.0f} s")
            left.set_yscale("log")
            left.legend()
        else:
            left.text(0.5, 0.5, "no jobs in window", ha="center", va="center", transform=left.transAxes)
        left.set_title(f"queue time distribution ({data['jobs']} jobs)")
        left.set_xlabel("queue time (s)")
        left.set_ylabel("jobs (log scale)" if queues else "jobs")

        hours = data["by_hour_utc"]
        right.bar(
            [hour["hour"] for hour in hours],
            [hour["queue_p95"] or 0.0 for hour in hours],
            color="#dd8452",
        )
        right.axhline(target, color="#55a868", linestyle=":", label=f"target {target:.0f} s")
        right.set_xticks(range(0, 24, 2))
        right.set_xlim(-0.6, 23.6)
        right.set_title("queue p95 by hour of day (UTC)")
        right.set_xlabel("hour (UTC)")
        right.set_ylabel("queue p95 (s)")
        right.legend()
        try:
            with open_regular(path, "--chart", "write") as handle:
                figure.savefig(handle, format=chart_format, dpi=110)
        except OSError as error:
            raise UsageError(f"cannot write --chart {path}: {error.strerror or error}") from None
    finally:
        pyplot.close(figure)
