"""The tool cache under a pyinfra deploy of several hosts: one process, many greenlets.

pyinfra runs a deploy's hosts as gevent greenlets in one process, and the github_runner and
bazel layers fetch their pinned release through ``tools.ensure_cached`` on the operator's
machine, once per host. A first download must happen once and every host must get it: a
waiter may not block the process (a blocking ``flock`` would stop the greenlet holding the
lock too, and the deploy would hang for good).
"""

import fcntl
import hashlib
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner_ctl import tools
from tests.standins.release_server import ReleaseServer, serve_releases

ROOT = Path(__file__).resolve().parents[1]
RELEASE = "/actions/runner/releases/download/v9.9.9/actions-runner-linux-x64-9.9.9.tar.gz"
BODY = b"stand-in release bytes\n" * 1000

# Run in a child: gevent's monkey patching, as pyinfra's CLI does it, must not touch pytest.
CHILD = textwrap.dedent(
    """
    from gevent import monkey

    monkey.patch_all()

    import json
    import sys
    from pathlib import Path

    import gevent

    from runner_ctl.tools import Binary, ensure_cached

    spec = json.loads(sys.argv[1])
    binary = Binary(**spec["binary"])
    hosts = [gevent.spawn(ensure_cached, binary, Path(spec["cache"])) for _ in range(spec["hosts"])]
    gevent.joinall(hosts, raise_error=True)
    print(json.dumps(sorted({str(host.value) for host in hosts})))
    """
)


@pytest.fixture
def server() -> Iterator[ReleaseServer]:
    # Slow enough that every greenlet asks while the first one is still downloading.
    with serve_releases(ReleaseServer(files={RELEASE: BODY}, delay_s=0.5)) as served:
        yield served


def test_hosts_of_one_deploy_share_a_first_download_without_hanging(server: ReleaseServer, tmp_path: Path) -> None:
    binary = {
        "tool": "actions-runner", "kind": "file", "url": server.url(RELEASE),
        "sha256": hashlib.sha256(BODY).hexdigest(), "os": "linux", "cpu": "x64",
        "file": "actions-runner-linux-x64-9.9.9.tar.gz", "type": "",
    }  # fmt: skip
    spec = json.dumps({"binary": binary, "cache": str(tmp_path / "tools"), "hosts": 3})
    try:
        child = subprocess.run(
            [sys.executable, "-c", CHILD, spec], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail("three greenlets fetching one first download hung: a waiter blocked the process")
    assert child.returncode == 0, child.stderr
    (path,) = json.loads(child.stdout)
    assert Path(path).read_bytes() == BODY
    assert server.hits[RELEASE] == 1


def test_a_lock_held_too_long_is_one_line_not_a_hang(
    server: ReleaseServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = tools.Binary(
        tool="actions-runner", kind="file", url=server.url(RELEASE), sha256=hashlib.sha256(BODY).hexdigest(),
        os="linux", cpu="x64", file="actions-runner-linux-x64-9.9.9.tar.gz", type="",
    )  # fmt: skip
    cache = tmp_path / "tools"
    cache.mkdir()
    monkeypatch.setattr(tools, "LOCK_WAIT_S", 0.3)
    with (cache / f".{binary.sha256}.lock").open("a") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)  # another process's first run, stuck
        with pytest.raises(tools.ToolError, match=r"another download into .* has held its lock for 0 s"):
            tools.ensure_cached(binary, cache)
    assert server.hits[RELEASE] == 0
    assert tools.ensure_cached(binary, cache).read_bytes() == BODY  # once it is gone, the next run proceeds
