"""Inventory of disposable local test hosts (``runner-ctl testhost up``), for rehearsals.

    RUNNER_CTL_TESTHOST=rh1 pyinfra inventories/testhost.py deploys/runner_host.py

The hosts get the same group data as production (``group_data/``) plus their connection
data, ``private_ipv4`` for hosts on a private network (``testhost up --network``) and, in
place of Debian's mirrors, the local apt repository each test host mounts; Bazel comes from
that repository too (``runner_ctl.layers.bazel.TESTHOST_DATA``).

A test host needs no production secret: every secret reference resolves to a stand-in
generated in the host's own directory (gone with the host; for hosts on a private network,
the network's, shared by the fleet and gone with it), unless RUNNER_CTL_REAL_SECRETS=1
(``runner-ctl rehearse --real-secrets``) asks for the real ones.
"""

import os

from runner_ctl.layers.bazel import TESTHOST_DATA
from runner_ctl.rehearse import REAL_SECRETS_ENV, standins_dir
from runner_ctl.testhost import get_host


def _host_entry(name: str) -> tuple[str, dict[str, object]]:
    test_host = get_host(name)
    volume = {"data_device": test_host.volume_device} if test_host.volume_device else {}
    standins = {} if os.environ.get(REAL_SECRETS_ENV) == "1" else {"secret_standins": str(standins_dir(test_host))}
    private = {"private_ipv4": test_host.private_address} if test_host.private_address else {}
    return (
        test_host.name,
        {
            **volume,
            **standins,
            **private,
            # GitHub's Bazelisk downloads are out of reach: Debian's Bazel from the local repository.
            **TESTHOST_DATA,
            "ssh_hostname": test_host.address,
            "ssh_user": "root",
            "ssh_key": test_host.ssh_key,
            "ssh_known_hosts_file": test_host.known_hosts,
            "ssh_strict_host_key_checking": "yes",
            "ssh_allow_agent": False,
            "ssh_look_for_keys": False,
            "apt_sources": [test_host.apt_source],
        },
    )


_names = [name for name in os.environ.get("RUNNER_CTL_TESTHOST", "").split(",") if name]
if not _names:
    raise SystemExit(
        "inventories/testhost.py: set RUNNER_CTL_TESTHOST to the test host name(s), "
        "e.g. RUNNER_CTL_TESTHOST=rh1 (see 'runner-ctl testhost list')"
    )

runner_hosts = [_host_entry(name) for name in _names]
