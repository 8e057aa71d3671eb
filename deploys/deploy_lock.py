"""Deploy lock layer: the fleet's one lock service, reached from every host at the same loopback URL.

Installs runner-ctl into ``/opt/runner-ctl/venv`` from a wheelhouse built on the operator's
machine (the host needs no PyPI) on every host. The lock host (``deploy_lock_host``, by
default the inventory's first runner host) runs ``runner-ctl lock serve`` as the hardened
unit ``runner-ctl-lockd.service`` on loopback, with its database on the data volume
(``<data_dir>/runner-ctl/lock.db``; one at the old root-disk path is moved there once) and
the service's token file (root:runner-ctl-lockd 0640). Every other host runs
``runner-ctl-lock-forward.service``: an SSH forward, as the user ``runner-ctl-fwd``, from its
own loopback port to the lock host's, across the private network (``private_ipv4``); the lock
host's ``authorized_keys`` lets that key open this one forward and nothing else. Every host
gets the CI token (root:<runner_user> 0640) and ``/etc/runner-ctl/lock.json``, so a CI job's
``runner-ctl deploy`` needs no lock flags. Secrets come from references resolved on the
operator's machine (see ``runner_ctl.secretrefs``); on test hosts, from the lock host's
stand-in directory, so that every host of a fleet gets the same ones.

Secrets are resolved and checked before the layer queues anything, written through
``layerkit.put_secret`` (final owner and mode from the start, never shown by ``--diff``),
and whenever the code, the unit or a token changed, the layer's last operation proves that
the service answers an authenticated request with the CI token read from its file on the
host, or the deploy fails.

Group data keys (defaults in ``runner_ctl.layers.deploy_lock.DeployLockSettings``):

+ deploy_lock_listen: loopback HOST:PORT of the service
+ deploy_lock_tokens: [{name, secret (a reference), admin}]
+ deploy_lock_ci_token: which token CI jobs on the host use
+ deploy_lock_host: the host that runs the service (one fleet, one value)
"""

import io
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from gevent.lock import Semaphore  # type: ignore[import-untyped]  # pyinfra's greenlets: no stubs
from pyinfra.api.deploy import deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.host import Host
from pyinfra.api.operation import OperationMeta
from pyinfra.context import host, inventory
from pyinfra.facts.files import File, FileContents
from pyinfra.facts.server import Arch
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from runner_ctl.errors import ConfigError
from runner_ctl.layerkit import host_settings, put_secret, render_template, settings_defaults
from runner_ctl.layers.base import BaseLayerSettings
from runner_ctl.layers.deploy_lock import SPEC, DeployLockSettings, fleet_lock_host, private_ipv4
from runner_ctl.lock.fleet import CLIENT_TOKEN_FILE, LOCK_CONFIG_FILE, ForwardKey, forward_key
from runner_ctl.secretrefs import config_dir, resolve_lock_secrets
from runner_ctl.wheelhouse import build_wheelhouse

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = PROJECT_ROOT / "templates" / "deploy_lock"
PREFIX = "/opt/runner-ctl"
VENV = f"{PREFIX}/venv"
WHEELHOUSE = f"{PREFIX}/wheelhouse"
INSTALLED_MARKER = f"{PREFIX}/installed-wheelhouse"
SERVICE_USER = "runner-ctl-lockd"
SERVICE_TOKENS = "/etc/runner-ctl/lockd.tokens"
CLIENT_TOKEN = str(CLIENT_TOKEN_FILE)
LOCK_CONFIG = str(LOCK_CONFIG_FILE)
LOCKD_UNIT = "/etc/systemd/system/runner-ctl-lockd.service"
# Before the database moved to the data volume it lived in the unit's StateDirectory.
OLD_DB = f"/var/lib/{SERVICE_USER}/lock.db"
FORWARD_USER = "runner-ctl-fwd"
FORWARD_HOME = f"/var/lib/{FORWARD_USER}"
FORWARD_KEY = "/etc/runner-ctl/lock-forward.key"
FORWARD_KNOWN_HOSTS = "/etc/runner-ctl/lock-host.known_hosts"
FORWARD_UNIT = "/etc/systemd/system/runner-ctl-lock-forward.service"
AUTHORIZED_KEYS = f"{FORWARD_HOME}/.ssh/authorized_keys"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"
# Bounded: the unit restarts a failed service every 2 s; 30 tries at 1 s plus up to 5 s each.
HEALTH_ATTEMPTS = 30

# Run on the host: the token is read from its file, never passed in argv. Only an exception's
# type, HTTP status or socket reason is printed, never a header.
_PROVE_HEALTHY = """
import json, sys, time, urllib.error, urllib.request
token_file, url, attempts = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(token_file) as handle:
    secret = handle.read().strip()
last = "no attempt"
for _ in range(attempts):
    try:
        request = urllib.request.Request(url, headers={"Authorization": "Bearer " + secret})
        with urllib.request.urlopen(request, timeout=5) as response:
            json.load(response)
        sys.exit(0)
    except urllib.error.HTTPError as error:
        last = "HTTP %d" % error.code
    except urllib.error.URLError as error:
        last = str(error.reason)
    except Exception as error:
        last = type(error).__name__
    time.sleep(1)
sys.exit(
    "runner-ctl-lockd did not accept the CI token at %s after %d attempts (%s); see journalctl "
    "-u runner-ctl-lockd on the lock host (and -u runner-ctl-lock-forward on the others)" % (url, attempts, last)
)
"""


@dataclass(frozen=True)
class _Fleet:
    lock_host: Host
    hosts: tuple[Host, ...]

    @property
    def serves(self) -> bool:
        """Whether the current host runs the service."""
        return self.lock_host.name == host.name


def _fleet() -> _Fleet:
    """The runner group's hosts in inventory order, and the one that runs the lock service.

    Checked on the operator's machine before any operation: a name that is no host, or hosts
    that disagree, would split the fleet's queue in two.
    """
    # Our inventories name the group runner_hosts; any other inventory is one fleet of all its hosts.
    members = tuple(inventory.get_group("runner_hosts", []))
    if host.name not in {member.name for member in members}:
        members = tuple(inventory)
    try:
        name = fleet_lock_host([(member.name, member.data.get("deploy_lock_host")) for member in members])
    except ValueError as error:
        raise PyinfraError(str(error)) from None
    return _Fleet(next(member for member in members if member.name == name), members)


def _standins(of: Host) -> Path | None:
    standins = of.data.get("secret_standins")
    return Path(standins) if standins else None


def _secrets(fleet: _Fleet, settings: DeployLockSettings) -> tuple[dict[str, str], ForwardKey | None]:
    """The tokens and the forward key, from the lock host's stand-ins on test hosts: one set per fleet."""
    standins = _standins(fleet.lock_host)
    try:
        tokens = resolve_lock_secrets(((t.name, t.secret) for t in settings.deploy_lock_tokens), standins=standins)
        key = forward_key(standins or config_dir() / "secrets") if len(fleet.hosts) > 1 else None
    except ConfigError as error:
        raise PyinfraError(str(error)) from None
    return tokens, key


def _lock_address(fleet: _Fleet) -> str:
    address = fleet.lock_host.data.get("private_ipv4")
    if not address:
        raise PyinfraError(
            f"deploy_lock_host {fleet.lock_host.name} has no private_ipv4; the other hosts reach the lock "
            "service across the private network (the inventory sets it per host)"
        )
    try:
        return private_ipv4(fleet.lock_host.name, address)
    except ValueError as error:
        raise PyinfraError(str(error)) from None


# pyinfra prepares the hosts of a fleet in parallel greenlets, and two pip builds in one source
# tree trip over each other's build/ directory: one build at a time, the next finds it done.
_BUILDING = Semaphore()


def _install() -> OperationMeta | None:
    arch = host.get_fact(Arch)
    with _BUILDING:
        wheelhouse = build_wheelhouse(PROJECT_ROOT, arch)
    apt.packages(name="Install Python and git", packages=list(SPEC.apt_packages), no_recommends=True)
    files.directory(name=f"{PREFIX}", path=PREFIX, mode="755")
    files.sync(
        name="Upload the wheelhouse", src=str(wheelhouse), dest=WHEELHOUSE, delete=True, mode="644", dir_mode="755"
    )
    installed = (host.get_fact(FileContents, path=INSTALLED_MARKER) or [""])[0].strip()
    install = None
    if installed != wheelhouse.name:
        install = server.shell(
            name="Install runner-ctl from the wheelhouse",
            commands=[
                f"test -x {VENV}/bin/python || python3 -m venv {VENV}",
                f"{VENV}/bin/pip install --quiet --no-index --find-links {WHEELHOUSE} --force-reinstall runner-ctl",
                f"echo {wheelhouse.name} > {INSTALLED_MARKER}",
            ],
        )
    files.link(name="runner-ctl on PATH", path="/usr/local/bin/runner-ctl", target=f"{VENV}/bin/runner-ctl")
    return install


def _system_user(user: str, home: str) -> None:
    server.group(name=f"Group {user}", group=user, system=True)
    server.user(  # noqa: S604 - pyinfra operation arguments, not a subprocess shell
        name=f"Service user {user}",
        user=user,
        group=user,
        system=True,
        shell="/usr/sbin/nologin",
        home=home,
        ensure_home=False,
    )


# Moves the database with the service stopped: copied beside its new place, then renamed into
# it, and only then removed from the old one, so that a failure at any step loses nothing.
_MOVE_DB = """set -eu
old={old}; new={new}
systemctl stop runner-ctl-lockd.service
for suffix in "" -wal -shm; do
  if [ -e "$old$suffix" ]; then cp -p "$old$suffix" "$new.moving$suffix"; fi
done
sync
for suffix in -wal -shm ""; do
  if [ -e "$new.moving$suffix" ]; then mv "$new.moving$suffix" "$new$suffix"; fi
done
sync
rm -f "$old" "$old-wal" "$old-shm"
"""


def _database(data_dir: str) -> tuple[str, str]:
    """The service's database directory on the data volume, with an old root-disk database moved in once."""
    db_dir = f"{data_dir}/runner-ctl"
    db = f"{db_dir}/lock.db"
    files.directory(
        name=f"Lock database directory {db_dir}", path=db_dir, user=SERVICE_USER, group=SERVICE_USER, mode="700"
    )
    if host.get_fact(File, path=OLD_DB):
        if host.get_fact(File, path=db):
            # Both exist: the newer one is in use; the old one stays where it is, for the operator.
            host.noop(f"{OLD_DB} is kept: {db} already exists (compare them with runner-ctl lock export)")
        else:
            server.shell(
                name=f"Move the lock database to {db}",
                commands=[_MOVE_DB.format(old=shlex.quote(OLD_DB), new=shlex.quote(db))],
            )
    if host.get_fact(File, path=db):
        # `runner-ctl lock import`, run as root on a host that becomes the lock host, leaves a
        # database root owns; the service must be able to write it. Only the owner: the mode
        # stays the one the service or the import gave it.
        files.file(name=f"Lock database {db} belongs to {SERVICE_USER}", path=db, user=SERVICE_USER, group=SERVICE_USER)
    return db_dir, db


def _unit(dest: str, **values: object) -> tuple[OperationMeta, OperationMeta]:
    """A systemd unit from its template in templates/deploy_lock, installed, enabled and running."""
    service = dest.rsplit("/", 1)[1]
    unit = files.put(
        name=service,
        src=io.StringIO(render_template(TEMPLATES / f"{service}.j2", **values)),
        dest=dest,
        mode="644",
    )
    started = systemd.service(
        name=f"Run {service.removesuffix('.service')}",
        service=service,
        running=True,
        enabled=True,
        daemon_reload=bool(unit.will_change),
    )
    return unit, started


def _serve(
    settings: DeployLockSettings, secrets: dict[str, str], data_dir: str
) -> tuple[list[OperationMeta], OperationMeta]:
    """On the lock host: the service, its tokens and its database; returns what needs a restart, and the start."""
    _system_user(SERVICE_USER, f"/var/lib/{SERVICE_USER}")
    db_dir, db = _database(data_dir)
    lines = [f"{t.name}:{secrets[t.name]}{':admin' if t.admin else ''}" for t in settings.deploy_lock_tokens]
    service_tokens = put_secret(
        name="Service token file",
        content="\n".join(lines) + "\n",
        dest=SERVICE_TOKENS,
        user="root",
        group=SERVICE_USER,
        mode="640",
    )
    unit, started = _unit(
        LOCKD_UNIT,
        service_user=SERVICE_USER,
        venv=VENV,
        listen=settings.deploy_lock_listen,
        token_file=SERVICE_TOKENS,
        db=db,
        db_dir=db_dir,
    )
    return [unit, service_tokens], started


def _forward_account() -> None:
    _system_user(FORWARD_USER, FORWARD_HOME)
    # Root's, not the user's: a compromised forward user cannot widen its own key's rights.
    files.directory(name=f"{FORWARD_HOME}", path=FORWARD_HOME, user="root", group="root", mode="755")


def _accept_forwards(settings: DeployLockSettings, key: ForwardKey) -> None:
    """On the lock host: the forward key may open a forward to the service's port, and nothing else."""
    _forward_account()
    files.directory(name=f"{FORWARD_HOME}/.ssh", path=f"{FORWARD_HOME}/.ssh", user="root", group="root", mode="755")
    files.put(
        name="authorized_keys of the lock forward",
        src=io.StringIO(
            f'restrict,port-forwarding,permitopen="{settings.deploy_lock_listen}",command="/bin/false" '
            f"{key.public_line}\n"
        ),
        dest=AUTHORIZED_KEYS,
        user="root",
        group="root",
        mode="644",
    )


def _forward(fleet: _Fleet, settings: DeployLockSettings, key: ForwardKey) -> list[OperationMeta]:
    """On every other host: the supervised forward to the lock host; returns what changed it."""
    address = _lock_address(fleet)
    port = fleet.lock_host.data.get("sshd_port") or BaseLayerSettings().sshd_port
    host_key = " ".join((fleet.lock_host.get_fact(FileContents, path=HOST_KEY) or [""])[0].split()[:2])
    if not host_key.startswith("ssh-ed25519 "):
        raise PyinfraError(f"{fleet.lock_host.name}: no ed25519 host key at {HOST_KEY}; the forward pins that key")
    _forward_account()
    known = address if port == 22 else f"[{address}]:{port}"
    known_hosts = files.put(
        name="The lock host's SSH host key",
        src=io.StringIO(f"{known} {host_key}\n"),
        dest=FORWARD_KNOWN_HOSTS,
        user="root",
        group="root",
        mode="644",
    )
    private_key = put_secret(
        name="Forward key", content=key.private_openssh, dest=FORWARD_KEY, user=FORWARD_USER, group=FORWARD_USER,
        mode="600",
    )  # fmt: skip
    unit, started = _unit(
        FORWARD_UNIT,
        lock_host=fleet.lock_host.name,
        user=FORWARD_USER,
        key=FORWARD_KEY,
        known_hosts=FORWARD_KNOWN_HOSTS,
        port=port,
        address=address,
        listen=settings.deploy_lock_listen,
    )
    systemd.service(
        name="Restart runner-ctl-lock-forward for its new unit, key or lock host",
        service="runner-ctl-lock-forward.service",
        running=None,
        restarted=True,
        _if=any_changed(unit, private_key, known_hosts),
    )
    return [unit, private_key, known_hosts, started]


def _remove(*paths: str) -> None:
    for path in paths:
        if host.get_fact(File, path=path):
            files.file(name=f"Remove {path}", path=path, present=False)


def _retire(unit: str, *extra: str) -> None:
    """A role this host no longer has (the lock host moved): its unit stops, its files go; data stays."""
    if host.get_fact(File, path=unit):
        service = unit.rsplit("/", 1)[1]
        systemd.service(name=f"Stop {service}", service=service, running=False, enabled=False)
        _remove(unit)
        systemd.daemon_reload(name="Reload systemd")
    _remove(*extra)


@deploy("deploy_lock", data_defaults=settings_defaults())
def deploy_lock() -> None:
    """Configure the deploy lock layer on the current host."""
    every = host_settings()
    settings = every.of(DeployLockSettings)
    base = every.of(BaseLayerSettings)
    fleet = _fleet()
    # Before anything is queued: a bad secret, a missing address or host key writes nothing.
    secrets, key = _secrets(fleet, settings)
    if len(fleet.hosts) > 1:
        _lock_address(fleet)  # on every host, the lock host too: the whole fleet stops, not half of it
    install = _install()
    files.directory(name="/etc/runner-ctl", path="/etc/runner-ctl", user="root", group="root", mode="755")
    client_token = put_secret(
        name="CI token file",
        content=secrets[settings.deploy_lock_ci_token] + "\n",
        dest=CLIENT_TOKEN,
        user="root",
        group=base.runner_user,
        mode="640",
    )
    files.put(
        name="Where runner-ctl deploy finds the lock",
        src=io.StringIO(
            json.dumps({"url": f"http://{settings.deploy_lock_listen}", "lock_host": fleet.lock_host.name}) + "\n"
        ),
        dest=LOCK_CONFIG,
        user="root",
        group="root",
        mode="644",
    )
    if fleet.serves:
        _retire(FORWARD_UNIT, FORWARD_KEY, FORWARD_KNOWN_HOSTS)
        restart, started = _serve(settings, secrets, base.data_dir)
        restart = [op for op in (install, *restart) if op is not None]
        if key is not None:
            _accept_forwards(settings, key)
        else:
            _remove(AUTHORIZED_KEYS)
        systemd.service(
            name="Restart runner-ctl-lockd for its new code, unit or tokens",
            service="runner-ctl-lockd.service",
            running=None,
            restarted=True,
            _if=any_changed(*restart),
        )
        changed = [*restart, started]
    else:
        _retire(LOCKD_UNIT, SERVICE_TOKENS, AUTHORIZED_KEYS)
        if key is None:  # a fleet of more than one host always has one; this keeps mypy sure of it
            raise PyinfraError("the lock forward needs its key")
        changed = [op for op in (install, *_forward(fleet, settings, key)) if op is not None]
    # Only when something changed, so that a second run reports no change; then always.
    server.shell(
        name="Prove runner-ctl-lockd accepts the CI token",
        commands=[
            shlex.join(
                [
                    f"{VENV}/bin/python",
                    "-c",
                    _PROVE_HEALTHY,
                    CLIENT_TOKEN,
                    f"http://{settings.deploy_lock_listen}/v1/envs",
                    str(HEALTH_ATTEMPTS),
                ]
            )
        ],
        _if=any_changed(*changed, client_token),
    )
