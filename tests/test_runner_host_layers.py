"""runner_host.py calls every layer of the checkout, in the canonical order."""

import ast
from pathlib import Path

from runner_ctl.hostdata import available_layers
from runner_ctl.layers import LAYER_ORDER, SPECS

PROJECT_ROOT = Path(__file__).resolve().parents[1]


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
