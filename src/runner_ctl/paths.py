"""Where runner-ctl keeps things on the controller, and how it finds the project checkout."""

import os
from pathlib import Path

from runner_ctl.errors import UsageError

__all__ = ["cache_dir", "find_project_root", "is_project_root"]


def cache_dir() -> Path:
    """The runner-ctl cache directory: ``$RUNNER_CTL_CACHE_DIR``, else ``$XDG_CACHE_HOME/runner-ctl``."""
    override = os.environ.get("RUNNER_CTL_CACHE_DIR")
    if override:
        return Path(override).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "runner-ctl").absolute()


def is_project_root(path: Path) -> bool:
    return (path / "deploys").is_dir() and (path / "inventories" / "group_data").is_dir()


def find_project_root(start: Path | None = None) -> Path:
    """The runner-ctl checkout that holds ``deploys/`` and ``inventories/``.

    Searched upward from ``start`` (default: the working directory), then the checkout this
    package was installed from (an editable install), so commands work from any subdirectory.
    """
    here = (start or Path.cwd()).absolute()
    for candidate in (here, *here.parents):
        if is_project_root(candidate):
            return candidate
    installed_from = Path(__file__).absolute().parents[2]
    if is_project_root(installed_from):
        return installed_from
    raise UsageError(
        f"no runner-ctl checkout found at or above {here}: run this inside a clone of the "
        "runner-ctl repository (it holds deploys/ and inventories/)"
    )
