"""One lock service per fleet: where a host finds it, and the SSH key of the forward to it.

Every host of a fleet has the lock at the same loopback URL: the lock host serves it, every
other host forwards its own loopback port to the lock host's over SSH (deploys/deploy_lock.py).
The layer writes ``/etc/runner-ctl/lock.json`` (the URL and the lock host's name) and the CI
token file, so ``runner-ctl deploy`` on a host needs no lock flags.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from runner_ctl.errors import ConfigError

__all__ = [
    "CLIENT_TOKEN_FILE",
    "FORWARD_KEY_NAME",
    "LOCK_CONFIG_FILE",
    "ForwardKey",
    "LockConfig",
    "forward_key",
    "read_lock_config",
]

LOCK_CONFIG_FILE = Path("/etc/runner-ctl/lock.json")
CLIENT_TOKEN_FILE = Path("/etc/runner-ctl/lock-client.token")
FORWARD_KEY_NAME = "lock-forward-ed25519"
# Far more than the file needs; a bound so a wrong file is not slurped.
_MAX_CONFIG_BYTES = 64 * 1024


@dataclass(frozen=True)
class LockConfig:
    url: str
    lock_host: str


def read_lock_config(path: Path = LOCK_CONFIG_FILE) -> LockConfig | None:
    """The host's lock.json, or None when this machine has none (a laptop, a CI job off the fleet)."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ConfigError(f"cannot read {path} ({error.strerror}); pass --lock-url and --token-file") from None
    try:
        data = json.loads(raw) if len(raw) <= _MAX_CONFIG_BYTES else None
    except ValueError:
        data = None
    url, lock_host = (data.get("url"), data.get("lock_host")) if isinstance(data, dict) else (None, None)
    if not (isinstance(url, str) and url and isinstance(lock_host, str) and lock_host):
        raise ConfigError(
            f'{path} is not {{"url": ..., "lock_host": ...}}; run the deploy_lock layer again, or pass --lock-url'
        )
    return LockConfig(url, lock_host)


@dataclass(frozen=True)
class ForwardKey:
    private_openssh: str  # secret: only ever written through layerkit.put_secret
    public_line: str  # "ssh-ed25519 AAAA... runner-ctl-fwd"


def forward_key(directory: Path) -> ForwardKey:
    """The fleet's forward key pair, made once in ``directory`` (mode 0600) and read back after.

    ``directory`` is the operator's secrets directory (or a rehearsal's stand-in directory):
    every host of the fleet must get the same key, so it is made on the operator's machine.
    """
    # Here, not at the top: the key is made on the operator's machine, and the hosts' runner-ctl
    # (which reads lock.json through this module) is installed without cryptography.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = directory / FORWARD_KEY_NAME
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = (
            Ed25519PrivateKey.generate()
            .private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
            )
            .decode()
        )
        # O_EXCL: two concurrent deploys never end up with different keys.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
    try:
        text = path.read_text()
        key = serialization.load_ssh_private_key(text.encode(), password=None)
    except OSError as error:
        raise ConfigError(f"cannot read {path} ({error.strerror})") from None
    except (ValueError, TypeError):
        # No detail: a parser's message could quote part of the key.
        raise ConfigError(f"{path} is not an unencrypted OpenSSH private key; remove it to make a new one") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an ed25519 key; remove it to make a new one")
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return ForwardKey(text, f"{public.decode()} runner-ctl-fwd")
