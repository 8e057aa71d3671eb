"""One spec per host layer; ``runner_ctl.hostdata`` composes them into a host's settings.

To add a layer: a module here with its settings model and ``SPEC``, one entry in ``SPECS``,
its deploy in ``deploys/<name>.py``, one line in ``deploys/runner_host.py``.
"""

from runner_ctl.layers import base, bazel, buildbuddy, deploy_lock, github_runner, gitlab_runner
from runner_ctl.layers._spec import LayerSettings, LayerSpec, expected_form

__all__ = ["DEFAULT_LAYERS", "LAYER_ORDER", "SPECS", "LayerSettings", "LayerSpec", "expected_form"]

# Canonical order in which runner_host.py applies layers; a layer's name is its file stem
# under deploys/. Later layers rely on earlier ones (the runner needs Bazel's user and dirs).
LAYER_ORDER: tuple[str, ...] = (
    "base",
    "bazel",
    "buildbuddy",
    "github_runner",
    "gitlab_runner",
    "deploy_lock",
)

# The layers that have a spec, in canonical order.
SPECS: dict[str, LayerSpec] = {
    spec.name: spec
    for spec in (base.SPEC, bazel.SPEC, buildbuddy.SPEC, github_runner.SPEC, gitlab_runner.SPEC, deploy_lock.SPEC)
}

# What `layers` defaults to: every layer a fresh checkout deploys.
DEFAULT_LAYERS: tuple[str, ...] = LAYER_ORDER
