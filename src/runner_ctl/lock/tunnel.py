"""``--via-ssh HOST``: reach the lock service on a remote runner host through an SSH tunnel."""

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator

from runner_ctl.errors import RunnerCtlError

__all__ = ["ssh_tunnel"]

OPEN_TIMEOUT_SECONDS = 20.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def ssh_tunnel(host: str, remote_host: str, remote_port: int) -> Iterator[int]:
    """Forward a local loopback port to ``remote_host:remote_port`` as seen from ``host``.

    Uses the operator's ssh (their keys, agent and ~/.ssh/config; ``RUNNER_CTL_SSH_CONFIG``
    names another config file). Yields the local port; the tunnel closes on exit.
    """
    port = _free_port()
    config = os.environ.get("RUNNER_CTL_SSH_CONFIG")
    argv = [
        "ssh", "-N", "-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=15",
        *(["-F", config] if config else []),
        "-L", f"127.0.0.1:{port}:{remote_host}:{remote_port}", host,
    ]  # fmt: skip
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + OPEN_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                stderr = (process.stderr.read().decode(errors="replace") if process.stderr else "").strip()
                raise RunnerCtlError(
                    f"--via-ssh {host}: ssh exited ({stderr.splitlines()[-1] if stderr else 'no output'})"
                )
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline:
                raise RunnerCtlError(f"--via-ssh {host}: the tunnel did not open within {OPEN_TIMEOUT_SECONDS:.0f} s")
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()
