"""The one OpenPGP key apt should trust, cut out of a published keyring (RFC 4880 packets).

The gitlab_runner layer fetches GitLab's repository key on the operator's machine and keeps
only the key whose primary fingerprint the group data pins (``signed-by`` then names a
keyring holding exactly that key). Parsing is a few dozen lines of packet framing, so no
OpenPGP library (or gpg on the operator's machine) is needed for it.
"""

import base64
import hashlib
from collections.abc import Iterator

__all__ = ["pinned_keyring"]


def _dearmor(data: bytes) -> bytes:
    text = data.decode("ascii", errors="replace")
    if "-----BEGIN PGP PUBLIC KEY BLOCK-----" not in text:
        return data
    body = text.split("-----BEGIN PGP PUBLIC KEY BLOCK-----", 1)[1].split("-----END PGP PUBLIC KEY BLOCK-----", 1)[0]
    lines = body.strip().splitlines()
    if "" in lines:  # armor headers end at the first blank line
        lines = lines[lines.index("") + 1 :]
    payload = "".join(line.strip() for line in lines if line.strip() and not line.startswith("="))
    return base64.b64decode(payload)


def _packets(data: bytes) -> Iterator[tuple[int, bytes, bytes]]:
    """(tag, the whole packet, its body) for each OpenPGP packet (RFC 4880 section 4.2)."""
    at = 0
    while at < len(data):
        start, first = at, data[at]
        if not first & 0x80:
            raise ValueError("not an OpenPGP key")
        if first & 0x40:  # new format
            tag, at = first & 0x3F, at + 1
            octet = data[at]
            if octet < 192:
                length, at = octet, at + 1
            elif octet < 224:
                length, at = ((octet - 192) << 8) + data[at + 1] + 192, at + 2
            elif octet == 255:
                length, at = int.from_bytes(data[at + 1 : at + 5], "big"), at + 5
            else:
                raise ValueError("a partial-length packet in a key")
        else:
            tag, kind, at = (first >> 2) & 0x0F, first & 0x03, at + 1
            if kind == 3:
                raise ValueError("an indeterminate-length packet in a key")
            size = (1, 2, 4)[kind]
            length, at = int.from_bytes(data[at : at + size], "big"), at + size
        if at + length > len(data):
            raise ValueError("a truncated key")
        yield tag, data[start : at + length], data[at : at + length]
        at += length


def _fingerprint(body: bytes) -> str:
    if not body or body[0] != 4:
        return ""  # only v4 keys have the SHA-1 fingerprints that apt and GitLab show
    return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body, usedforsecurity=False).hexdigest().upper()


def pinned_keyring(data: bytes, fingerprint: str) -> bytes:
    """The binary keyring of the one key in ``data`` whose primary fingerprint is ``fingerprint``.

    Its user ids, signatures and subkeys come along; any other key in ``data`` is dropped, so
    apt trusts exactly the pinned key. A ValueError names the fingerprints found otherwise.
    """
    keys: list[tuple[str, list[bytes]]] = []
    for tag, packet, body in _packets(_dearmor(data)):
        if tag == 6:
            keys.append((_fingerprint(body), [packet]))
        elif keys:
            keys[-1][1].append(packet)
    for found, packets in keys:
        if found == fingerprint:
            return b"".join(packets)
    seen = ", ".join(found or "?" for found, _ in keys) or "none"
    raise ValueError(f"it holds the key(s) {seen}, not the pinned {fingerprint}")
