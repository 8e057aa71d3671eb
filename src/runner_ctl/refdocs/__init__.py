"""The reference pages of the docs site, generated from the code.

``python -m runner_ctl.refdocs`` writes them into docs/reference/; ``--check`` only says which
differ. tests/test_refdocs.py fails when a committed page differs from what this writes now,
so the reference cannot fall behind the code.
"""

from collections.abc import Callable

from runner_ctl.refdocs._cli import cli_page
from runner_ctl.refdocs._contracts import json_page
from runner_ctl.refdocs._groupdata import group_data_page
from runner_ctl.refdocs._lockapi import lock_api_page, openapi_json
from runner_ctl.refdocs._metrics import metrics_page

__all__ = ["PAGES", "render_pages"]

# File name under docs/reference/ → the function that renders it.
PAGES: dict[str, Callable[[], str]] = {
    "cli.md": cli_page,
    "group-data.md": group_data_page,
    "json.md": json_page,
    "lock-api.md": lock_api_page,
    "openapi.json": openapi_json,
    "metrics.md": metrics_page,
}


def render_pages() -> dict[str, str]:
    """Every reference page as the code says it now."""
    return {name: render() for name, render in PAGES.items()}
