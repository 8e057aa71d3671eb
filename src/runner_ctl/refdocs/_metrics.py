"""docs/reference/metrics.md: the Prometheus metrics the lock service serves at /metrics."""

from typing import Any

from runner_ctl.lock.service import ServiceMetrics
from runner_ctl.refdocs._md import HEADER, cell, code, table

__all__ = ["metrics_page"]

# The series a client library exposes per metric type (Prometheus text format, OpenMetrics names).
_SERIES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}


def metrics_page() -> str:
    metrics = ServiceMetrics()
    rows = []
    for metric in vars(metrics).values():
        if not hasattr(metric, "describe"):
            continue
        # prometheus_client keeps label names and buckets only on the metric object itself.
        labels: tuple[str, ...] = getattr(metric, "_labelnames", ())
        buckets: Any = getattr(metric, "_upper_bounds", None)
        for family in metric.describe():
            series = ", ".join(code(family.name + suffix) for suffix in _SERIES.get(family.type, ("",)))
            extra = ""
            if buckets:
                extra = " Buckets (s): " + ", ".join(f"{bound:g}" for bound in buckets if bound != float("inf")) + "."
            rows.append([
                code(family.name), family.type, series, ", ".join(code(label) for label in labels) or "",
                cell(family.documentation + "." + extra),
            ])  # fmt: skip
    return (
        HEADER
        + "# Prometheus metrics\n\n"
        + "`runner-ctl lock serve` serves these at `/metrics` (no token needed; the deploy_lock layer keeps "
        "the service on loopback, so scrape it on the host or through the SSH forward). Each deploy's outcome "
        "is counted exactly once, whatever late renewal or second finish arrives.\n\n"
        + table(["metric", "type", "series", "labels", "meaning"], rows)
    )
