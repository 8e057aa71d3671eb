"""Sample Bazel workspaces the host checks and benchmarks build on a test host."""

import subprocess
from pathlib import Path

from runner_ctl.testhost import DisposableHost

__all__ = ["GENRULES", "copy_to_host"]

# 320 genrule targets (defs.bzl), no external repositories: builds offline.
GENRULES = Path(__file__).resolve().parent / "genrules"


def copy_to_host(test_host: DisposableHost, workspace: Path, *, user: str, dest: str) -> None:
    """Replace ``dest`` on the host with a copy of ``workspace`` owned by ``user``."""
    tarball = subprocess.run(["tar", "-C", str(workspace), "-c", "."], capture_output=True, check=True).stdout
    unpack = f"rm -rf {dest} && install -d -o {user} -g {user} {dest} && tar -x -C {dest} && chown -R {user}: {dest}"
    subprocess.run(
        ["ssh", "-F", test_host.ssh_config, "-o", "BatchMode=yes", test_host.name, unpack],
        input=tarball,
        capture_output=True,
        timeout=120,
        check=True,
    )
