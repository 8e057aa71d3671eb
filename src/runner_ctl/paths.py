"""Where runner-ctl keeps things on the controller, and how it finds the project checkout."""

import os
import stat
from pathlib import Path
from typing import IO, Literal

from runner_ctl.errors import UsageError

__all__ = ["cache_dir", "find_project_root", "is_project_root", "open_regular", "state_dir"]

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))  # fmt: skip
_MODES = {"read": os.O_RDONLY, "write": os.O_WRONLY | os.O_CREAT, "append": os.O_WRONLY | os.O_CREAT | os.O_APPEND}


def _xdg_dir(override: str, xdg: str, home_default: str) -> Path:
    if os.environ.get(override):
        return Path(os.environ[override]).expanduser().absolute()
    base = Path(os.environ[xdg]).expanduser() if os.environ.get(xdg) else Path.home() / home_default
    return (base / "runner-ctl").absolute()


def cache_dir() -> Path:
    """The runner-ctl cache directory: ``$RUNNER_CTL_CACHE_DIR``, else ``$XDG_CACHE_HOME/runner-ctl``."""
    return _xdg_dir("RUNNER_CTL_CACHE_DIR", "XDG_CACHE_HOME", ".cache")


def state_dir() -> Path:
    """The runner-ctl state directory: ``$RUNNER_CTL_STATE_DIR``, else ``$XDG_STATE_HOME/runner-ctl``.

    State, not cache: what is kept here (the prune audit log) must survive a cache clean-up.
    """
    return _xdg_dir("RUNNER_CTL_STATE_DIR", "XDG_STATE_HOME", ".local/state")


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


def open_regular(path: Path, what: str, mode: Literal["read", "write", "append"] = "read") -> IO[bytes]:
    """``path`` opened as a regular file, binary; UsageError naming ``what`` for anything else.

    Opened with O_NONBLOCK and checked with fstat on the open descriptor (no window between
    a check and the open): a FIFO or a device given as a file is refused at once, where a
    plain open would wait forever for a writer (or read /dev/zero without end).
    """
    verb = "read" if mode == "read" else "write"
    try:
        fd = os.open(path, _MODES[mode] | os.O_NONBLOCK | os.O_NOCTTY, 0o666)
    except OSError as error:
        raise UsageError(f"cannot {verb} {what} {path}: {error.strerror or error}") from None
    try:
        kind = next((name for test, name in _KINDS if test(os.fstat(fd).st_mode)), None)
        if kind is not None:
            raise UsageError(f"{what} {path} is {kind}, not a regular file; give a file")
        os.set_blocking(fd, True)
        if mode == "write":
            os.ftruncate(fd, 0)  # only now: O_TRUNC would have truncated before the check
        return os.fdopen(fd, "rb" if mode == "read" else "ab" if mode == "append" else "wb")
    except OSError as error:
        os.close(fd)
        raise UsageError(f"cannot {verb} {what} {path}: {error.strerror or error}") from None
    except BaseException:
        os.close(fd)
        raise
