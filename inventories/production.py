"""Inventory of the production runner hosts, from the OpenTofu state (``tofu/``).

    pyinfra inventories/production.py deploys/runner_host.py

Runs ``bin/tofu -chdir=tofu output -json`` once and turns its ``pyinfra_inventory`` output
into the ``runner_hosts`` group: each droplet's address and SSH user, and its cache volume
as ``data_device``. The group data in ``group_data/`` applies to every host. Reading the
state needs what ``bin/tofu`` needs: TF_VAR_state_passphrase (and the Spaces keys with the
team backend). No state yet, or no runner in it: a one-line error saying to apply first.

RUNNER_CTL_TOFU names another executable to run instead of ``bin/tofu`` (tests use a
stand-in that prints a recorded document).
"""

import os
from pathlib import Path

from runner_ctl.errors import RunnerCtlError
from runner_ctl.inventory import (
    hosts_from_tofu_outputs,
    inventory_exit,
    read_tofu_outputs,
    runner_hosts_group,
    tofu_output_argv,
)

# pyinfra runs this file with __file__ set; names starting with "_" are not host groups.
_PROJECT_ROOT = Path(__file__).resolve().parents[1]

try:
    _outputs = read_tofu_outputs(tofu_output_argv(_PROJECT_ROOT, os.environ.get("RUNNER_CTL_TOFU") or None))
    runner_hosts = runner_hosts_group(hosts_from_tofu_outputs(_outputs))
except RunnerCtlError as _error:
    raise inventory_exit("inventories/production.py", _error) from None
