"""``HOST:PORT``, parsed one way everywhere it is written (``lock serve --listen``, ``deploy_lock_listen``)."""

import ipaddress
import re

__all__ = ["check_loopback", "split_host_port"]

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def split_host_port(text: str) -> tuple[str, int]:
    """HOST and PORT; HOST an IP address ([...] around IPv6, returned without them) or an ASCII host name.

    A ValueError names what is wrong; it quotes the text, so callers pass no secrets.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not re.fullmatch(r"[0-9]{1,5}", port_text) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"not HOST:PORT with PORT from 1 to 65535: {text!r}")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        if bracketed or not _HOSTNAME.match(host):
            raise ValueError(f"not an IP address ([::1] for IPv6) or a host name: {host!r}") from None
    return host, int(port_text)


def check_loopback(text: str) -> str:
    """``text`` itself when it is HOST:PORT with HOST a loopback address or ``localhost``; else a ValueError."""
    host, _ = split_host_port(text)
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ValueError(f"{host} is not a loopback address")
    return text
