"""Building blocks the host layers in ``deploys/`` share: settings, templates, guarded installs.

Everything here runs inside a pyinfra deploy (it uses pyinfra's current host).
"""

import hashlib
import io
import posixpath
import shlex
from collections.abc import Generator
from pathlib import Path
from typing import Any

import jinja2
from pyinfra.api.command import FileUploadCommand, StringCommand
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.facts import FactBase
from pyinfra.api.operation import OperationMeta, operation
from pyinfra.context import host
from pyinfra.facts.files import File, Sha1File
from pyinfra.operations import files, server

from runner_ctl.errors import ConfigError
from runner_ctl.hostdata import KEY_OWNERS, HostSettings, default_host_settings, validate_host_data
from runner_ctl.layers.deploy_lock import DeployLockSettings
from runner_ctl.secretrefs import resolve_lock_secrets, resolve_secret

__all__ = [
    "SECRET_STAGING",
    "ActiveSwaps",
    "host_settings",
    "install_validated",
    "lock_token_secrets",
    "put_secret",
    "render_template",
    "resolve_host_secret",
    "settings_defaults",
]

# Beside each secret file: a root-only directory where its next version is assembled.
SECRET_STAGING = ".runner-ctl-staging"  # noqa: S105 - a directory name


def settings_defaults() -> dict[str, Any]:
    """The documented defaults, as ``@deploy(data_defaults=...)`` wants them."""
    return default_host_settings().dump()


def host_settings(available: frozenset[str] | None = None) -> HostSettings:
    """The current host's validated settings; bad group data stops the deploy with one line.

    ``available``: the layers this checkout has (see ``hostdata.available_layers``).
    """
    # Every key the host has, not only the known ones: a misspelled key must be seen to be
    # refused, even one set to None. A known key set to None takes its default.
    every = host.data.dict()  # type: ignore[no-untyped-call]
    data = {key: value for key, value in every.items() if value is not None or key not in KEY_OWNERS}
    try:
        return validate_host_data(data, available=available, origin=f"{host.name}: group data")
    except ConfigError as error:
        # pyinfra prints a PyinfraError as one line and stops before any operation runs.
        raise PyinfraError(str(error)) from None


def render_template(template: Path, **values: Any) -> str:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template.parent)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - config files, not HTML
    )
    return environment.get_template(template.name).render(**values)


_INSTALL_SCRIPT = """set -eu
dest={dest}; new="$dest.runner-ctl-new"; old="$dest.runner-ctl-old"; log=$(mktemp)
if [ -e "$dest" ]; then cp -p "$dest" "$old"; fi
mv "$new" "$dest"
if ! {validate} >"$log" 2>&1; then
  if [ -e "$old" ]; then mv "$old" "$dest"; else rm -f "$dest"; fi
  echo "rejected new $dest, kept the previous one: $(tail -n 3 "$log")" >&2
  rm -f "$log"
  exit 1
fi
rm -f "$old" "$log"
{activate}
"""


def install_validated(*, label: str, dest: str, content: str, validate: str, activate: str, mode: str = "644") -> None:
    """Install ``content`` at ``dest`` only if ``validate`` accepts it there, then ``activate``.

    The new file is staged beside ``dest``, swapped in, and checked in place (so a config
    that includes a directory, like sshd's, is checked as a whole); if the check fails the
    previous file is put back and the operation fails. When the live file already has this
    content no operation is issued, so a second run reports no change.
    """
    wanted = hashlib.sha1(content.encode(), usedforsecurity=False).hexdigest()
    if host.get_fact(Sha1File, path=dest) == wanted:
        return
    files.put(
        name=f"Stage {label}",
        src=io.StringIO(content),
        dest=f"{dest}.runner-ctl-new",
        user="root",
        group="root",
        mode=mode,
    )
    server.shell(
        name=f"Check and install {label}",
        commands=[_INSTALL_SCRIPT.format(dest=dest, validate=validate, activate=activate)],
    )


class ActiveSwaps(FactBase[list[str]]):
    """Paths of active swap areas, from /proc/swaps."""

    def command(self) -> str:
        return "cat /proc/swaps"

    def process(self, output: Any) -> list[str]:
        lines = list(output)
        return [line.split()[0] for line in lines[1:] if line.strip()]

    @staticmethod
    def default() -> list[str]:
        return []


def _standins() -> Path | None:
    """A test host's stand-in secrets directory (inventories/testhost.py sets it), else None."""
    standins = host.data.get("secret_standins")
    return Path(standins) if standins else None


def resolve_host_secret(reference: str, *, what: str) -> str:
    """The secret a reference names, on the operator's machine; bad ones stop the deploy in one line.

    A host whose data names a ``secret_standins`` directory (test hosts, see
    inventories/testhost.py) gets generated stand-ins instead of the real secrets.
    """
    try:
        return resolve_secret(reference, what=what, standins=_standins())
    except ConfigError as error:
        raise PyinfraError(str(error)) from None


def lock_token_secrets(settings: DeployLockSettings) -> dict[str, str]:
    """Each lock token's resolved secret by name, checked as the lock service will check it.

    Called before the layer queues anything, so a secret the service would refuse stops
    the deploy on the operator's machine instead of leaving a service that cannot start.
    """
    try:
        return resolve_lock_secrets(((t.name, t.secret) for t in settings.deploy_lock_tokens), standins=_standins())
    except ConfigError as error:
        raise PyinfraError(str(error)) from None


@operation()
def _secret_file(content: str, dest: str, user: str, group: str, mode: str) -> Generator[Any, None, None]:
    """Write a secret file that is never readable by anyone but ``user``/``group`` per ``mode``.

    The new content goes into a file that already has its final owner and mode, inside a
    root-only directory beside ``dest``, and is renamed over ``dest``: no moment exists at
    which the secret sits in a file with a wider mode, and the reader never sees half a file.
    pyinfra's files.put is not used: it uploads before it chmods, and with ``--diff`` it
    prints the old and new content.
    """
    wanted = hashlib.sha1(content.encode(), usedforsecurity=False).hexdigest()
    current = host.get_fact(File, path=dest)
    if (
        current
        and (current["user"], current["group"], current["mode"]) == (user, group, int(mode))
        and host.get_fact(Sha1File, path=dest) == wanted
    ):
        host.noop(f"secret file {dest} is up to date")
        return
    staging = posixpath.join(posixpath.dirname(dest), SECRET_STAGING)
    staged = posixpath.join(staging, posixpath.basename(dest))
    host.log(f"Will write secret file {dest} (content not shown)")
    yield StringCommand("install", "-d", "-m", "700", shlex.quote(staging))
    # Created empty, with the final owner and mode, before a byte of the secret is written.
    yield StringCommand("install", "-m", mode, "-o", user, "-g", group, "/dev/null", shlex.quote(staged))
    # With sudo, pyinfra uploads to remote_temp_filename first: keep that in the private directory too.
    yield FileUploadCommand(io.StringIO(content), staged, remote_temp_filename=f"{staged}.upload")
    yield StringCommand("mv", "-f", shlex.quote(staged), shlex.quote(dest))


def put_secret(*, name: str, content: str, dest: str, user: str, group: str, mode: str) -> OperationMeta:
    """Install a secret file with its final owner and mode from the start; never printed.

    Every layer writes its secrets through this (lock tokens today; BuildBuddy and runner
    tokens next). ``mode`` is octal text such as ``"640"``. Reports no change when ``dest``
    already has this content, owner and mode.
    """
    return _secret_file(name=name, content=content, dest=dest, user=user, group=group, mode=mode)
