"""Deploy lock layer: runner-ctl's lock service on the runner host, and its tokens.

Installs runner-ctl into ``/opt/runner-ctl/venv`` from a wheelhouse built on the operator's
machine (the host needs no PyPI), runs ``runner-ctl lock serve`` as the hardened unit
``runner-ctl-lockd.service`` on loopback, and writes the tokens: the service's token file
(root:runner-ctl-lockd 0640) and the CI token (root:<runner_user> 0640) that CI jobs on the
host pass to ``runner-ctl deploy --token-file``. Secrets come from references resolved on
the operator's machine (see ``runner_ctl.secretrefs``).

Secrets are resolved and checked before the layer queues anything, written through
``layerkit.put_secret`` (final owner and mode from the start, never shown by ``--diff``),
and whenever the code, the unit or a token changed, the layer's last operation proves that
the service answers an authenticated request with the CI token read from its file on the
host, or the deploy fails.

Group data keys (defaults in ``runner_ctl.layers.deploy_lock.DeployLockSettings``):

+ deploy_lock_listen: loopback HOST:PORT of the service
+ deploy_lock_tokens: [{name, secret (a reference), admin}]
+ deploy_lock_ci_token: which token CI jobs on the host use
"""

import io
import shlex
from pathlib import Path

from pyinfra.api.deploy import deploy
from pyinfra.context import host
from pyinfra.facts.files import FileContents
from pyinfra.facts.server import Arch
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from runner_ctl.layerkit import host_settings, lock_token_secrets, put_secret, render_template, settings_defaults
from runner_ctl.layers.base import BaseLayerSettings
from runner_ctl.layers.deploy_lock import SPEC, DeployLockSettings
from runner_ctl.wheelhouse import build_wheelhouse

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = PROJECT_ROOT / "templates" / "deploy_lock"
PREFIX = "/opt/runner-ctl"
VENV = f"{PREFIX}/venv"
WHEELHOUSE = f"{PREFIX}/wheelhouse"
INSTALLED_MARKER = f"{PREFIX}/installed-wheelhouse"
SERVICE_USER = "runner-ctl-lockd"
SERVICE_TOKENS = "/etc/runner-ctl/lockd.tokens"
CLIENT_TOKEN = "/etc/runner-ctl/lock-client.token"  # noqa: S105 - a path, not a secret
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
    "runner-ctl-lockd did not accept the CI token at %s after %d attempts (%s); "
    "see journalctl -u runner-ctl-lockd" % (url, attempts, last)
)
"""


@deploy("deploy_lock", data_defaults=settings_defaults())
def deploy_lock() -> None:
    """Configure the deploy lock layer on the current host."""
    every = host_settings()
    settings = every.of(DeployLockSettings)
    runner_user = every.of(BaseLayerSettings).runner_user
    secrets = lock_token_secrets(settings)  # before anything is queued: a bad secret writes nothing
    wheelhouse = build_wheelhouse(PROJECT_ROOT, host.get_fact(Arch))
    apt.packages(name="Install Python and git", packages=list(SPEC.apt_packages), no_recommends=True)
    server.group(name=f"Group {SERVICE_USER}", group=SERVICE_USER, system=True)
    server.user(  # noqa: S604 - pyinfra operation arguments, not a subprocess shell
        name=f"Service user {SERVICE_USER}",
        user=SERVICE_USER,
        group=SERVICE_USER,
        system=True,
        shell="/usr/sbin/nologin",
        home=f"/var/lib/{SERVICE_USER}",
        ensure_home=False,
    )
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

    lines = [f"{t.name}:{secrets[t.name]}{':admin' if t.admin else ''}" for t in settings.deploy_lock_tokens]
    files.directory(name="/etc/runner-ctl", path="/etc/runner-ctl", user="root", group="root", mode="755")
    service_tokens = put_secret(
        name="Service token file",
        content="\n".join(lines) + "\n",
        dest=SERVICE_TOKENS,
        user="root",
        group=SERVICE_USER,
        mode="640",
    )
    client_token = put_secret(
        name="CI token file",
        content=secrets[settings.deploy_lock_ci_token] + "\n",
        dest=CLIENT_TOKEN,
        user="root",
        group=runner_user,
        mode="640",
    )
    unit = files.put(
        name="runner-ctl-lockd.service",
        src=io.StringIO(
            render_template(
                TEMPLATES / "runner-ctl-lockd.service.j2",
                service_user=SERVICE_USER,
                venv=VENV,
                listen=settings.deploy_lock_listen,
                token_file=SERVICE_TOKENS,
            )
        ),
        dest="/etc/systemd/system/runner-ctl-lockd.service",
        mode="644",
    )
    changed = [op for op in (install, unit, service_tokens) if op is not None]
    started = systemd.service(
        name="Run runner-ctl-lockd",
        service="runner-ctl-lockd.service",
        running=True,
        enabled=True,
        daemon_reload=bool(unit.will_change),
    )
    systemd.service(
        name="Restart runner-ctl-lockd for its new code, unit or tokens",
        service="runner-ctl-lockd.service",
        running=None,
        restarted=True,
        _if=any_changed(*changed),
    )
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
        _if=any_changed(*changed, client_token, started),
    )
