"""The README's group-data key tables, generated from the layer specs' fields.

Each table sits between ``<!-- keys:NAME -->`` and ``<!-- /keys:NAME -->`` in README.md;
``python -m runner_ctl.keydocs README.md`` rewrites them, and tests/test_keydocs.py fails
when a committed table differs from what the fields say now.
"""

import re
import sys
from pathlib import Path
from typing import Any

from runner_ctl.layers import SPECS, LayerSpec, expected_form

__all__ = ["key_table", "update_tables"]

_TABLE = re.compile(r"(<!-- keys:(?P<name>[a-z_]+) -->\n)(?P<body>.*?)(<!-- /keys:(?P=name) -->)", re.DOTALL)


def _default(value: Any) -> str:
    if isinstance(value, tuple | list):
        if value and all(hasattr(item, "model_dump") for item in value):
            value = [item.model_dump() for item in value]
        else:
            value = list(value)
    return f"`{value!r}`".replace("|", "\\|")


def key_table(spec: LayerSpec) -> str:
    rows = ["| key | default | expected | what it does |", "| --- | --- | --- | --- |"]
    defaults = spec.settings().model_dump()
    for key, field in spec.settings.model_fields.items():
        form = (expected_form(spec.settings, key) or "").replace("|", "\\|")
        secret = " (a secret reference)" if key in spec.secret_fields else ""
        rows.append(f"| `{key}` | {_default(defaults[key])} | {form} | {field.description}{secret} |")
    return "\n".join(rows) + "\n"


def update_tables(text: str) -> str:
    """``text`` with every marked key table regenerated; an unknown layer name is an error."""

    def render(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in SPECS:
            raise ValueError(f"README marks a key table for {name!r}, which has no layer spec")
        return f"{match[1]}{key_table(SPECS[name])}{match[4]}"

    return _TABLE.sub(render, text)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m runner_ctl.keydocs README.md", file=sys.stderr)
        return 2
    path = Path(argv[0])
    text = path.read_text()
    updated = update_tables(text)
    if updated != text:
        path.write_text(updated)
        print(f"{path}: key tables regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
