"""Disposable Debian 12 hosts: boot, find, reach and tear down.

A host is a fresh copy of the cached rootfs booted by ``systemd-nspawn --boot`` inside a
network namespace of its own. Its directory under ``<cache>/testhost/hosts/<name>/``
holds everything about it: ``host.json`` (state), the rootfs copy, a fresh SSH key pair,
``known_hosts`` with the host's freshly generated host key, ``ssh_config`` and the console
log. Teardown signals only the systemd-nspawn process it started (PID plus start time, so a
recycled PID is never hit), removes the namespace and the copy, and keeps the caches.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Annotated

from pydantic import Field, TypeAdapter, ValidationError

from runner_ctl._proc import run
from runner_ctl.errors import ConfigError, RunnerCtlError, UsageError
from runner_ctl.paths import cache_dir
from runner_ctl.testhost._images import APT_REPO_MOUNT, APT_SOURCE_LINE, build_lock, ensure_apt_repo, ensure_rootfs
from runner_ctl.testhost._network import (
    HostNetwork,
    attach_private,
    create_network,
    destroy_network,
    destroy_private_network,
    ensure_private_network,
    host_capacity,
    network_netns,
    private_subnet,
    route_to_controller,
    slot_network,
    subnet,
)
from runner_ctl.testhost._prereqs import check_prerequisites

__all__ = [
    "VOLUME_DEVICE",
    "DisposableHost",
    "boot_host",
    "destroy_host",
    "free_host_slots",
    "get_host",
    "harness_dir",
    "host_names",
    "list_hosts",
    "network_dir",
    "network_hosts",
    "route_to_controller_address",
]

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,10}$")
BOOT_TIMEOUT_SECONDS = 120.0
# Where a test host with a volume sees it: the path DigitalOcean gives a volume named ci-data.
VOLUME_DEVICE = "/dev/disk/by-id/scsi-0DO_Volume_ci-data"
STOP_TIMEOUT_SECONDS = 30.0


def harness_dir() -> Path:
    return cache_dir() / "testhost"


def _hosts_dir() -> Path:
    return harness_dir() / "hosts"


def network_dir(network: str) -> Path:
    """What the hosts of one private network share (a rehearsal's stand-in secrets); removed with it."""
    _validate_name(network, what="private network name")
    return harness_dir() / "networks" / network


@dataclass(frozen=True)
class DisposableHost:
    """A booted (or half-booted, until ``up`` returns) test host and how to reach it."""

    name: str
    address: str
    controller_address: str
    slot: int
    netns: str
    veth: str
    directory: str
    ssh_config: str
    ssh_key: str
    known_hosts: str
    apt_repo: str
    volume_mb: Annotated[int, Field(ge=0)] = 0
    volume_loop: str | None = None
    # Teardown signals this PID: never 0, 1 or negative (kill(-1) signals every process).
    pid: Annotated[int, Field(gt=1)] | None = None
    pid_start_time: Annotated[int, Field(ge=0)] | None = None
    # The private network the host shares with others (``testhost up --network``), and its
    # address there: what DigitalOcean calls the VPC and the droplet's private IPv4.
    network: str | None = None
    private_address: str | None = None

    @property
    def network_links(self) -> HostNetwork:
        return HostNetwork(self.slot, self.netns, self.veth, self.controller_address, self.address)

    @property
    def rootfs(self) -> Path:
        return Path(self.directory) / "rootfs"

    @property
    def volume_image(self) -> Path:
        return Path(self.directory) / "volume.img"

    @property
    def volume_device(self) -> str | None:
        """Where the host sees its volume, if it has one (named as DigitalOcean names volumes)."""
        return VOLUME_DEVICE if self.volume_mb else None

    @property
    def apt_source(self) -> str:
        """The apt source line that points the host at its local repository."""
        return APT_SOURCE_LINE

    def running(self) -> bool:
        return self.pid is not None and _start_time(self.pid) == self.pid_start_time

    def public(self) -> dict[str, str]:
        """The ``testhost up --json`` contract."""
        return {
            "name": self.name,
            "address": self.address,
            "ssh_config": self.ssh_config,
            "ssh_key": self.ssh_key,
        }

    def listing(self) -> dict[str, str | bool | None]:
        """The ``testhost list --json`` entry: ``public()`` plus state and private network."""
        return {
            **self.public(),
            "running": self.running(),
            "network": self.network,
            "private_ipv4": self.private_address,
        }

    def save(self) -> None:
        path = Path(self.directory) / "host.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)


# nspawn processes this process started: kept referenced so they can be reaped on teardown
# (an unreaped child lingers as a zombie with its PID and start time).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat), None if gone."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # exited, not yet reaped by its parent
        return None
    return int(fields[19])


_STATE = TypeAdapter(DisposableHost)


def _corrupt(path: Path, reason: str) -> ConfigError:
    return ConfigError(
        f"test host state file {path} is corrupt ({reason}); remove that host with 'runner-ctl testhost down "
        f"{path.parent.name}' (or --all), or remove {path.parent} yourself once no container runs from it"
    )


def _load(path: Path) -> DisposableHost | None:
    """The host described by ``path``; None if there is none; ConfigError if it is corrupt.

    Strictly validated: teardown signals the PID it names and removes the directory it
    names, so a damaged file must never point either anywhere else.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise _corrupt(path, error.strerror or str(error)) from None
    try:
        host = _STATE.validate_json(raw, strict=True)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "file"
        raise _corrupt(path, f"{where}: {first['msg']}") from None
    if host.name != path.parent.name or Path(host.directory).resolve() != path.parent.resolve():
        raise _corrupt(path, "it names another host or directory")
    return host


def list_hosts() -> list[DisposableHost]:
    hosts = []
    if _hosts_dir().is_dir():
        for state in sorted(_hosts_dir().glob("*/host.json")):
            host = _load(state)
            if host is not None:
                hosts.append(host)
    return hosts


def get_host(name: str) -> DisposableHost:
    _validate_name(name)
    host = _load(_hosts_dir() / name / "host.json")
    if host is None:
        known = ", ".join(h.name for h in list_hosts()) or "none"
        raise UsageError(f"no test host named {name!r} (running: {known}); start one with 'runner-ctl testhost up'")
    return host


def _validate_name(name: str, what: str = "test host name") -> None:
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"{what} {name!r} is invalid; expected a lower-case letter then up to 10 "
            "letters, digits or '-' (e.g. 'rh1')"
        )


def network_hosts(network: str) -> list[DisposableHost]:
    return [h for h in list_hosts() if h.network == network]


def route_to_controller_address(host: DisposableHost, address: str) -> None:
    """Let ``host`` reach ``address``, another host's controller end, through its own.

    The controller answers for all of its addresses on any veth, so a service it runs for a
    whole fleet (a rehearsal's stand-ins) listens on one address every host can reach; the
    host still reaches nothing beyond the controller.
    """
    if address not in {str(a) for a in subnet().hosts()}:
        raise UsageError(f"{address} is not a controller address in {subnet()}")
    route_to_controller(host.network_links, address)


def free_host_slots() -> int:
    """How many more test hosts fit in the address ranges now (each host takes one of each)."""
    return max(0, host_capacity() - len(host_names()))


def _private_address(network: str) -> str:
    taken = {h.private_address for h in network_hosts(network)}
    for candidate in private_subnet().hosts():
        if str(candidate) not in taken:
            return str(candidate)
    raise ConfigError(
        f"private network {network} is full ({private_subnet()}); "
        "set a larger RUNNER_CTL_TESTHOST_PRIVATE_SUBNET or take hosts off it"
    )


def _allocate(name: str | None) -> tuple[str, HostNetwork]:
    """Pick a name and a free /30; the caller holds the build lock.

    Besides this cache's hosts, whatever the machine itself shows is taken too (namespaces
    and addresses of hosts started with another RUNNER_CTL_CACHE_DIR), so two caches on one
    machine never collide.
    """
    taken = {h.name: h.slot for h in list_hosts()}

    def name_taken(candidate: str) -> bool:
        return (
            candidate in taken
            or (_hosts_dir() / candidate).exists()
            or Path(f"/run/netns/runner-ctl-{candidate}").exists()
            or Path(f"/sys/class/net/rct-{candidate}").exists()
        )

    if name is None:
        name = next(f"rh{i}" for i in range(1, 10_000) if not name_taken(f"rh{i}"))
    _validate_name(name)
    if name_taken(name):
        raise UsageError(
            f"a test host named {name!r} exists already; pick another --name or 'runner-ctl testhost down {name}'"
        )
    used = set(taken.values())
    in_use = _addresses_in_use()
    slot = next(
        i
        for i in range(subnet().num_addresses // 4 + 1)
        if i not in used and (i * 4 >= subnet().num_addresses or slot_network(i, name).controller_address not in in_use)
    )
    return name, slot_network(slot, name)


def _addresses_in_use() -> set[str]:
    listing = json.loads(run(["ip", "-j", "-4", "addr", "show"], what="listing the controller's addresses") or "[]")
    return {info["local"] for link in listing for info in link.get("addr_info", []) if "local" in info}


def boot_host(name: str | None = None, *, volume_mb: int = 0, network: str | None = None) -> DisposableHost:
    """Boot a fresh test host and return once sshd accepts its key.

    ``volume_mb`` > 0 gives the host a block device of that size with an ext4 filesystem,
    like a DigitalOcean volume created with ``initial_filesystem_type = "ext4"``; the host
    sees it at ``VOLUME_DEVICE``. ``network`` puts it on that private network (made if new).
    """
    if name is not None:
        _validate_name(name)
    if network is not None:
        _validate_name(network, what="private network name")
        private_subnet()  # a bad range stops us here
    if not 0 <= volume_mb <= 1_048_576:
        raise UsageError(f"--volume-mb {volume_mb} is out of range; expected 0 (none) to 1048576 MiB")
    check_prerequisites()
    list_hosts()  # a corrupt state file stops us here, before any image is built
    base = harness_dir()
    rootfs = ensure_rootfs(base)
    repo = ensure_apt_repo(base, rootfs)
    with build_lock(base):
        name, net = _allocate(name)
        private = _private_address(network) if network else None
        directory = _hosts_dir() / name
        directory.mkdir(parents=True)
        host = DisposableHost(
            name=name,
            address=net.host_address,
            controller_address=net.controller_address,
            slot=net.slot,
            netns=net.netns,
            veth=net.veth,
            directory=str(directory),
            ssh_config=str(directory / "ssh_config"),
            ssh_key=str(directory / "id_ed25519"),
            known_hosts=str(directory / "known_hosts"),
            apt_repo=str(repo),
            volume_mb=volume_mb,
            network=network,
            private_address=private,
        )
        host.save()  # from here on, 'testhost down NAME' can clean up whatever exists
    try:
        _make_rootfs_copy(host, rootfs)
        if volume_mb:
            host = _attach_volume(host)
        create_network(net)
        if network and private:
            # Under the lock: a network is never removed between its making and its next port.
            with build_lock(base):
                ensure_private_network(network)
                attach_private(net, network, private)
        host = _start(host)
        _wait_for_ssh(host)
    except BaseException:
        with contextlib.suppress(RunnerCtlError):
            destroy_host(host.name)
        raise
    return host


def _make_rootfs_copy(host: DisposableHost, rootfs: Path) -> None:
    # A full copy, not an overlay: a swap file must live on a real filesystem.
    run(["cp", "-a", "--reflink=auto", rootfs, host.rootfs], what="copying the test host rootfs")
    root = host.rootfs
    (root / ".runner-ctl-rootfs.json").unlink(missing_ok=True)
    run(["ssh-keygen", "-A", "-f", root], what="generating the test host's SSH host keys")
    run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            f"runner-ctl-testhost-{host.name}",
            "-f",
            host.ssh_key,
        ],
        what="generating the test host's SSH key pair",
    )
    ssh_dir = root / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    authorized = ssh_dir / "authorized_keys"
    authorized.write_text(Path(host.ssh_key + ".pub").read_text())
    authorized.chmod(0o600)
    (root / "etc" / "hostname").write_text(host.name + "\n")
    (root / "etc" / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {host.name}\n")
    host_key = (root / "etc" / "ssh" / "ssh_host_ed25519_key.pub").read_text().split()
    Path(host.known_hosts).write_text(f"{host.address} {host_key[0]} {host_key[1]}\n")
    Path(host.ssh_config).write_text(
        f"Host {host.name}\n"
        f"    HostName {host.address}\n"
        "    User root\n"
        f"    IdentityFile {host.ssh_key}\n"
        "    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {host.known_hosts}\n"
        "    StrictHostKeyChecking yes\n"
        "    ConnectTimeout 5\n"
        "    LogLevel ERROR\n"
    )


def _attach_volume(host: DisposableHost) -> DisposableHost:
    """A sparse ext4 image on a loop device: the host's stand-in for a cloud block volume."""
    image = host.volume_image
    with image.open("wb") as handle:
        handle.truncate(host.volume_mb * 1024 * 1024)
    run(["mkfs.ext4", "-q", "-L", "ci-data", image], what="formatting the test host's volume")
    loop = run(["losetup", "--find", "--show", image], what="attaching the test host's volume").strip()
    attached = replace(host, volume_loop=loop)
    attached.save()
    return attached


def _detach_volume(host: DisposableHost) -> None:
    if not host.volume_loop:
        return
    # Only detach the loop device if it still backs this host's image (never someone else's).
    backing = Path(f"/sys/block/{Path(host.volume_loop).name}/loop/backing_file")
    with contextlib.suppress(OSError):
        if Path(backing.read_text().strip()) == host.volume_image:
            run(["losetup", "-d", host.volume_loop], what="detaching the test host's volume")


def _start(host: DisposableHost) -> DisposableHost:
    console = (Path(host.directory) / "console.log").open("wb")
    env = dict(os.environ)
    # /proc/sys writable so the base layer's sysctl settings can be applied and checked.
    env["SYSTEMD_NSPAWN_API_VFS_WRITABLE"] = "1"
    process = subprocess.Popen(
        [
            "systemd-nspawn",
            "--boot",
            "--register=no",
            "--keep-unit",
            f"--directory={host.rootfs}",
            f"--machine={host.name}",
            f"--network-namespace-path=/run/netns/{host.netns}",
            # nspawn grants CAP_NET_ADMIN only for networks it creates itself; the base layer
            # manages nftables inside this namespace. CAP_SYS_RESOURCE lets pam_limits raise
            # the runner's open-file limit, as root can on a VM.
            "--capability=CAP_NET_ADMIN,CAP_SYS_RESOURCE",
            "--system-call-filter=swapon swapoff",
            f"--bind-ro={host.apt_repo}:{APT_REPO_MOUNT}",
            *([f"--bind={host.volume_loop}:{VOLUME_DEVICE}"] if host.volume_loop else []),
            "--console=read-only",
        ],
        stdin=subprocess.DEVNULL,
        stdout=console,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )
    console.close()
    _CHILDREN[process.pid] = process
    started = replace(host, pid=process.pid, pid_start_time=_start_time(process.pid))
    started.save()
    return started


def _console_tail(host: DisposableHost, lines: int = 3) -> str:
    try:
        text = (Path(host.directory) / "console.log").read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())


def _wait_for_ssh(host: DisposableHost) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT_SECONDS
    attempts = 0
    while time.monotonic() < deadline and attempts < 240:
        attempts += 1
        if not host.running():
            raise RunnerCtlError(f"test host {host.name} stopped while booting: {_console_tail(host)}")
        if _port_open(host.address, 22):
            probe = subprocess.run(
                ["ssh", "-F", host.ssh_config, "-o", "BatchMode=yes", host.name, "true"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if probe.returncode == 0:
                return
        time.sleep(0.5)
    raise RunnerCtlError(
        f"test host {host.name} did not answer SSH at {host.address} within {BOOT_TIMEOUT_SECONDS:.0f} s; "
        f"console: {_console_tail(host)}"
    )


def _port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def _stop(host: DisposableHost) -> None:
    if not host.running() or host.pid is None:
        return
    # systemd-nspawn turns SIGTERM into an orderly poweroff of the container.
    os.kill(host.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while time.monotonic() < deadline and host.running():
        time.sleep(0.2)
    if host.running():
        os.kill(host.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and host.running():
            time.sleep(0.2)


def _release_swap(rootfs: Path) -> None:
    """Turn off swap files that live in the host's rootfs.

    Swap is not namespaced: a swap file the host activated is active on the controller's
    kernel, listed under the path the host saw. Resolving that path inside the rootfs copy
    names the same inode, so swapoff removes exactly the host's swap and nothing else.
    """
    try:
        entries = Path("/proc/swaps").read_text().splitlines()[1:]
    except OSError:
        return
    for entry in entries:
        path = entry.split()[0]
        candidate = rootfs / path.lstrip("/")
        if path.startswith("/") and candidate.is_file():
            subprocess.run(["swapoff", str(candidate)], capture_output=True, check=False)


def _mounted_below(directory: Path) -> list[str]:
    prefix = str(directory.resolve()) + "/"
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    return [m.split()[1] for m in mounts if (m.split()[1] + "/").startswith(prefix)]


def _process_inside(directory: Path) -> int | None:
    """A process of a container still running from ``directory``: its systemd-nspawn, named by
    its command line, or a process whose root is the rootfs (compared by inode: the path a
    process in another mount namespace shows for its root is its own "/")."""
    rootfs = directory / "rootfs"
    marker = f"--directory={rootfs}".encode()
    try:
        target = rootfs.stat()
    except OSError:
        target = None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if marker in (proc / "cmdline").read_bytes().split(b"\0"):
                return int(proc.name)
            root = (proc / "root").stat()
            if target is not None and (root.st_dev, root.st_ino) == (target.st_dev, target.st_ino):
                return int(proc.name)
    return None


def _destroy_corrupt(name: str) -> None:
    """Tear down a host whose state file is unreadable, from what its name alone determines.

    Without a trustworthy PID nothing is signalled: a container still running from the
    directory stops the teardown, with the PID to look at.
    """
    directory = _hosts_dir() / name
    running = _process_inside(directory)
    if running is not None:
        raise RunnerCtlError(
            f"test host {name}: its state file is corrupt and process {running} still runs inside {directory}; "
            f"stop the systemd-nspawn that started it (its parent), then 'runner-ctl testhost down {name}' again"
        )
    _release_swap(directory / "rootfs")
    image = directory / "volume.img"
    if image.is_file():
        for line in run(["losetup", "-j", image], what="finding the test host's volume").splitlines():
            run(["losetup", "-d", line.split(":", 1)[0]], what="detaching the test host's volume")
    destroy_network(HostNetwork(0, f"runner-ctl-{name}", f"rct-{name}", "", ""))
    _prune_private_networks()
    _remove_directory(name, directory)


def _remove_directory(name: str, directory: Path) -> None:
    mounts = _mounted_below(directory)
    if mounts:
        raise RunnerCtlError(
            f"test host {name}: {mounts[0]} is still mounted; unmount it, "
            f"then run 'runner-ctl testhost down {name}' again"
        )
    shutil.rmtree(directory)


def host_names() -> list[str]:
    """Every test host that has a state file, readable or not (what 'down --all' removes)."""
    return sorted(state.parent.name for state in _hosts_dir().glob("*/host.json")) if _hosts_dir().is_dir() else []


def destroy_host(name: str) -> None:
    """Stop the host's nspawn process, remove its network and its directory."""
    try:
        host = get_host(name)
    except ConfigError:  # its state file is corrupt
        _destroy_corrupt(name)
        return
    _stop(host)
    if host.running():
        raise RunnerCtlError(f"test host {name} (pid {host.pid}) did not stop; nothing was removed")
    _release_swap(host.rootfs)
    _detach_volume(host)
    destroy_network(host.network_links)
    _prune_private_networks()
    _remove_directory(name, Path(host.directory))


def _prune_private_networks() -> None:
    """Remove every private network whose last host is gone (its bridge has no port left).

    Decided by the bridge itself, not by state files, so a host torn down from a corrupt
    state file still takes its network along; under the build lock, so a network being
    made is never seen without its first port.
    """
    netns_dir = Path("/run/netns")
    with build_lock(harness_dir()):
        for path in sorted(netns_dir.glob(network_netns("*"))) if netns_dir.is_dir() else []:
            network = path.name.removeprefix(network_netns(""))
            links = json.loads(
                run(["ip", "-n", path.name, "-j", "link", "show"], what=f"listing private network {network}") or "[]"
            )
            if not [link for link in links if link.get("ifname") not in ("lo", "br0")]:
                destroy_private_network(network)
        networks = harness_dir() / "networks"
        for directory in sorted(networks.iterdir()) if networks.is_dir() else []:
            if not (netns_dir / network_netns(directory.name)).exists():
                shutil.rmtree(directory)
