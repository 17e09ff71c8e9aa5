"""Callback URLs a caller gives with a request: whether Pushline may call them, and the
signature that lets the caller tell Pushline's calls from anyone else's.

The signature is seed 001's: base64 HMAC-SHA256 of the URL keyed by the caller's API key,
computed here, the only place that sees the key in clear (the store keeps key hashes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from urllib.parse import urlsplit

from services.core.outbound import is_public

MAX_URL = 2048


def signature(api_token: str, url: str) -> str:
    """Seed 001's webhook Signature: base64 HMAC-SHA256 of the URL keyed by the API token."""
    digest = hmac.new(api_token.encode(), url.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def url_problem(url: str, *, allow_private: bool) -> str | None:
    """Why Pushline will not call `url`, or None: it must be an http(s) URL with a host,
    at most MAX_URL characters, and (unless `allow_private`) not name a loopback, private
    or other non-public address or `localhost`.

    A host name is not resolved here: the webhook client checks every address it resolves
    to when it connects (services.core.outbound), which DNS cannot fool as it could fool
    a check made now.
    """
    if len(url) > MAX_URL:
        return f"is too long: {len(url)} characters, at most {MAX_URL}"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return "must be an http(s) URL"
    if parts.scheme.lower() not in ("https", "http") or not host:
        return "must be an http(s) URL"
    if allow_private:
        return None
    # Names of this machine whatever DNS says (RFC 6761).
    if host == "localhost" or host.endswith(".localhost"):
        return "names this machine: callbacks go to public addresses only"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    if not is_public(host):
        return f"names the non-public address {host}: callbacks go to public addresses only"
    return None
