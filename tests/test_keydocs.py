"""The README's key tables come from the layer specs, and runner_host.py calls every layer."""

import ast
from pathlib import Path

import pytest

from runner_ctl.hostdata import available_layers
from runner_ctl.keydocs import update_tables
from runner_ctl.layers import LAYER_ORDER, SPECS

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_key_tables_are_what_the_fields_say() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert update_tables(readme) == readme, "README key tables are stale: run python -m runner_ctl.keydocs README.md"


def test_every_layer_with_a_spec_has_a_key_table_in_the_readme() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    for name in SPECS:
        assert f"<!-- keys:{name} -->" in readme


def test_a_changed_field_makes_the_table_stale() -> None:
    stale = "<!-- keys:base -->\n| key |\n<!-- /keys:base -->\n"
    assert "`swap_size_mb` | `2048`" in update_tables(stale)


def test_a_table_for_an_unknown_layer_is_an_error() -> None:
    with pytest.raises(ValueError, match="'nosuch', which has no layer spec"):
        update_tables("<!-- keys:nosuch -->\n<!-- /keys:nosuch -->\n")


def test_runner_host_calls_every_layer_of_the_checkout_in_canonical_order() -> None:
    """pyinfra orders operations by line, so each layer has its own `if` line, in order."""
    tree = ast.parse((PROJECT_ROOT / "deploys" / "runner_host.py").read_text())
    called = [
        node.body[0].value.func.id
        for node in tree.body
        if isinstance(node, ast.If)
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Call)
        and isinstance(node.body[0].value.func, ast.Name)
    ]
    wanted = [name for name in LAYER_ORDER if name in available_layers(PROJECT_ROOT)]
    assert called == wanted
    assert set(SPECS) <= set(wanted), "a layer spec without its deploy in deploys/"
