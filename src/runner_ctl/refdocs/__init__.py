"""The reference pages of the docs site, generated from the code.

``python -m runner_ctl.refdocs`` writes them into docs/reference/; ``--check`` only says which
differ. tests/test_refdocs.py fails when a committed page differs from what this writes now,
so the reference cannot fall behind the code.
"""

from collections.abc import Callable

__all__ = ["PAGES", "render_pages"]


def _cli() -> str:
    from runner_ctl.refdocs._cli import cli_page

    return cli_page()


def _group_data() -> str:
    from runner_ctl.refdocs._groupdata import group_data_page

    return group_data_page()


def _json() -> str:
    from runner_ctl.refdocs._contracts import json_page

    return json_page()


def _lock_api() -> str:
    from runner_ctl.refdocs._lockapi import lock_api_page

    return lock_api_page()


def _openapi() -> str:
    from runner_ctl.refdocs._lockapi import openapi_json

    return openapi_json()


def _metrics() -> str:
    from runner_ctl.refdocs._metrics import metrics_page

    return metrics_page()


# File name under docs/reference/ → the function that renders it.
PAGES: dict[str, Callable[[], str]] = {
    "cli.md": _cli,
    "group-data.md": _group_data,
    "json.md": _json,
    "lock-api.md": _lock_api,
    "openapi.json": _openapi,
    "metrics.md": _metrics,
}


def render_pages() -> dict[str, str]:
    """Every reference page as the code says it now."""
    return {name: render() for name, render in PAGES.items()}
