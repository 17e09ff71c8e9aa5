"""Where Pushline may connect on a caller's behalf (webhooks, Web Push endpoints).

A URL a caller gave us must not make Pushline reach loopback, private, link-local or
metadata addresses, unless the operator allows it (`PUSHLINE_WEBHOOK_ALLOW_PRIVATE`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from services.core.errors import OutboundRefusedError


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def check_target(url: str, *, allow_private: bool) -> None:
    """Refuse a URL whose scheme is not http(s) or whose host resolves to a non-public address.

    Raises OutboundRefusedError naming the problem.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundRefusedError(f"not an http(s) URL: {url[:100]!r}")
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname,
            parts.port or (443 if parts.scheme == "https" else 80),
            type=socket.SOCK_STREAM,
        )
    except OSError as exc:
        raise OutboundRefusedError(f"cannot resolve {parts.hostname!r}") from exc
    for info in infos:
        address = str(info[4][0])
        if not _is_public(address):
            raise OutboundRefusedError(
                f"{parts.hostname!r} resolves to the non-public address {address}"
            )
