"""Rules about a device that every stage applies the same way: token shape, provider choice,
and the normal form of the cellphones and emails a device is associated with.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from services.core.events import Platform, Provider

# The events' bound; the ingest refuses longer tokens with the dialect's 400 (answering
# "DeviceTokenTooLong" where the dialect names reasons) instead of accepting and failing later.
MAX_TOKEN_LENGTH = 4096

# APNs device tokens are 32 bytes sent as hex; Apple warns they may grow, so allow more.
_APNS_TOKEN = re.compile(r"[0-9a-fA-F]{64,200}")
# Country code + number, digits only (seed 002: 573141234567); E.164 allows 15 digits.
_CELLPHONE = re.compile(r"\+?[0-9]{8,15}")
# Syntax only: one @, no spaces, a dot in the domain. Deliverability is not our business.
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")
# The events cap ids at 200 characters; RFC 5321 allows 254, which no real address nears.
_MAX_EMAIL = 200


def is_apns_token(token: str) -> bool:
    """Whether `token` has the shape of an APNs device token (hex, 64+ digits)."""
    return _APNS_TOKEN.fullmatch(token) is not None


def provider_for(
    platform: Platform, token: str, *, web_subscription: bool, configured: Collection[Provider]
) -> Provider | None:
    """The provider that delivers to this device, or None when the app has none for it.

    android -> FCM; ios -> APNs when the token is an APNs token and the app has APNs
    credentials, else FCM; web -> Web Push for a W3C push subscription, else FCM.
    """
    if platform == "ios" and is_apns_token(token) and "apns" in configured:
        choice: Provider = "apns"
    elif platform == "web" and web_subscription:
        choice = "webpush"
    else:
        choice = "fcm"
    return choice if choice in configured else None


def normalize_cellphone(value: str) -> str:
    """Country code + number, digits only; a leading `+` is dropped.

    Raises ValueError when it is not 8 to 15 digits.
    """
    compact = value.strip()
    if not _CELLPHONE.fullmatch(compact):
        raise ValueError("cellphone must be the country code and number, 8 to 15 digits")
    return compact.removeprefix("+")


def normalize_email(value: str) -> str:
    """The email address, trimmed and lower-cased so that lookups match however it was typed.

    Raises ValueError when it is not an address.
    """
    compact = value.strip().lower()
    if len(compact) > _MAX_EMAIL or not _EMAIL.fullmatch(compact):
        raise ValueError("email is not a valid address")
    return compact
