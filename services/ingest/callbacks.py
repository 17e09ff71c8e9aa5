"""Callback URLs a caller gives with a request: whether Pushline may call them, the
signature that lets the caller tell Pushline's calls from anyone else's, and what a send's
callback receives (documented here; services.core.callbacks builds it).

The signature is seed 001's: base64 HMAC-SHA256 of the URL keyed by the caller's API key,
computed here, the only place that sees the key in clear (the store keeps key hashes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from typing import Literal
from urllib.parse import urlsplit

from fastapi import APIRouter
from pydantic import BaseModel, Field

from services.core.events import DeviceEvent
from services.core.fields import Platform
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


class SendEnded(BaseModel):
    """The POST to a send's `callback_url` once the send reaches its final state."""

    type: Literal["notification"]
    id: str = Field(description="The notification id.")
    app_id: str | None
    state: str = Field(description="The final state: `done`.")
    counters: dict[str, int] = Field(description="As `GET /v1/notifications/{id}` shows them.")
    platforms: dict[str, dict[str, int]] = Field(description="The counters per platform.")
    signature: str = Field(
        description="Base64 HMAC-SHA256 of the callback URL keyed by the API key of the send."
    )


class DeviceOutcome(BaseModel):
    """How one device's send ended."""

    device_id: str = Field(description="SHA-256 of the device's token (hex), never the token.")
    outcome: DeviceEvent
    reason: str | None = Field(description="The provider's reason, if it gave one.")
    platform: Platform | None
    at: str = Field(description="When the provider answered (RFC 3339).")


class DeviceEvents(BaseModel):
    """A POST to a send's `callback_url` with up to 100 of its devices' outcomes, of the
    kinds named in `callback_events`, as they come (at least once each)."""

    type: Literal["devices"]
    id: str = Field(description="The notification id.")
    events: list[DeviceOutcome]
    signature: str = Field(
        description="Base64 HMAC-SHA256 of the callback URL keyed by the API key of the send."
    )


# The calls a send with a `callback_url` makes, as the OpenAPI document's `callbacks`.
documentation = APIRouter()


@documentation.post("{$request.body#/callback_url}", status_code=200)
def send_callback(body: SendEnded | DeviceEvents) -> None:
    """Pushline POSTs the send's end once, and the device events asked for in batches;
    any 2xx answer takes a call; connection errors, 408, 429 and 5xx are tried again a few
    times, with backoff."""
