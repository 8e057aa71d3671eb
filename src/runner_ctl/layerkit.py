"""Building blocks the host layers in ``deploys/`` share: settings, templates, guarded installs.

Everything here runs inside a pyinfra deploy (it uses pyinfra's current host).
"""

import hashlib
import io
from pathlib import Path
from typing import Any

import jinja2
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.facts import FactBase
from pyinfra.context import host
from pyinfra.facts.files import Sha1File
from pyinfra.operations import files, server

from runner_ctl.errors import ConfigError
from runner_ctl.hostdata import HostSettings, validate_host_data

__all__ = [
    "ActiveSwaps",
    "host_settings",
    "install_validated",
    "render_template",
    "settings_defaults",
]


def settings_defaults() -> dict[str, Any]:
    """The documented defaults, as ``@deploy(data_defaults=...)`` wants them."""
    return HostSettings().model_dump(mode="json")


def host_settings(available: frozenset[str] | None = None) -> HostSettings:
    """The current host's validated settings; bad group data stops the deploy with one line.

    ``available``: the layers this checkout has (see ``hostdata.available_layers``).
    """
    data = {key: host.data.get(key) for key in HostSettings.model_fields if host.data.get(key) is not None}
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
