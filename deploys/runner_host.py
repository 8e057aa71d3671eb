"""Configure a runner host: every layer the host's group data lists, in the canonical order.

Run from the repository root:

    pyinfra inventories/production.py deploys/runner_host.py

Group data key ``layers`` (default ``["base"]``) picks the layers; a layer's name is its
file stem in this directory. Each layer is called on a line of its own, because pyinfra
orders operations by the line numbers that lead to them.
"""

from pathlib import Path

from deploys.base import base
from deploys.bazel import bazel
from deploys.buildbuddy import buildbuddy
from deploys.deploy_lock import deploy_lock
from deploys.github_runner import github_runner
from deploys.gitlab_runner import gitlab_runner
from runner_ctl.hostdata import available_layers
from runner_ctl.layerkit import host_settings

settings = host_settings(available=available_layers(Path(__file__).resolve().parents[1]))

if "base" in settings.layers:
    base()
if "bazel" in settings.layers:
    bazel()
if "buildbuddy" in settings.layers:
    buildbuddy()
if "github_runner" in settings.layers:
    github_runner()
if "gitlab_runner" in settings.layers:
    gitlab_runner()
if "deploy_lock" in settings.layers:
    deploy_lock()
