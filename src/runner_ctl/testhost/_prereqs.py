"""What the controller needs before it can build and boot a test host."""

import os
import shutil

from runner_ctl.errors import PrerequisiteError

__all__ = ["REQUIRED_TOOLS", "check_prerequisites"]

# tool -> the Debian package that provides it
REQUIRED_TOOLS: dict[str, str] = {
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "dpkg-scanpackages": "dpkg-dev",
    "ip": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}


def check_prerequisites() -> None:
    """Raise a one-line error saying what to install when a test host cannot be run here."""
    if os.geteuid() != 0:
        raise PrerequisiteError(
            "test hosts need root (network namespaces, systemd-nspawn): run as root on a "
            "Debian 12 machine with: apt-get install systemd-container debootstrap"
        )
    missing = sorted({pkg for tool, pkg in REQUIRED_TOOLS.items() if shutil.which(tool) is None})
    if missing:
        packages = " ".join(
            [
                "systemd-container",
                "debootstrap",
                *(p for p in missing if p not in ("systemd-container", "debootstrap")),
            ]
        )
        raise PrerequisiteError(
            f"test hosts need systemd-nspawn and debootstrap (missing: {', '.join(missing)}): "
            f"apt-get install {packages}"
        )
