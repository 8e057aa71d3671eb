"""Inventory of the runner hosts, discovered by tag through DigitalOcean's API.

    DIGITALOCEAN_TOKEN=... pyinfra inventories/digitalocean.py deploys/runner_host.py

For operators without access to the OpenTofu state: lists the droplets tagged
RUNNER_CTL_DO_TAG (default ``runner-ctl``, the tag ``tofu/`` puts on them) and builds the same
``runner_hosts`` group as ``inventories/production.py``: public IPv4, SSH user root, and the
attached cache volume as ``data_device``. A read-only API token is enough. No token, a
refused token or no tagged droplet: a one-line error.
"""

import os

from runner_ctl.errors import PrerequisiteError, RunnerCtlError
from runner_ctl.inventory import discover_droplet_hosts, inventory_exit, runner_hosts_group

# DIGITALOCEAN_TOKEN is what OpenTofu's provider reads; DIGITALOCEAN_ACCESS_TOKEN is doctl's.
_token = os.environ.get("DIGITALOCEAN_TOKEN") or os.environ.get("DIGITALOCEAN_ACCESS_TOKEN") or ""
_tag = os.environ.get("RUNNER_CTL_DO_TAG") or "runner-ctl"

try:
    if not _token:
        raise PrerequisiteError("set DIGITALOCEAN_TOKEN to a DigitalOcean API token (read access is enough)")
    runner_hosts = runner_hosts_group(discover_droplet_hosts(_token, _tag))
except RunnerCtlError as _error:
    raise inventory_exit("inventories/digitalocean.py", _error) from None
