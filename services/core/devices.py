"""Rules about a device that every stage applies the same way: token shape, provider choice,
and the normal form of the cellphones and emails a device is associated with.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec

from services.core.events import FailureReason, Platform, Provider, WebPushSubscription

# The events' bound, checked while a body is parsed; `token_problem` then applies the
# provider's own, smaller one.
MAX_TOKEN_LENGTH = 4096
# Longest token each provider issues, with headroom: FCM tokens run to ~200 characters,
# APNs tokens are 32-100 bytes in hex, Web Push endpoints are URLs.
TOKEN_LENGTH: dict[Provider, int] = {"fcm": 1024, "apns": 200, "webpush": 2048}
_PROVIDER_NAMES: dict[Provider, str] = {"fcm": "FCM", "apns": "APNs", "webpush": "Web Push"}
# No provider issues a token with anything but printable ASCII (FCM's are URL-safe base64
# and colons, APNs's hex, Web Push endpoints URLs): a space, a control character or a
# non-ASCII one is a copy-paste or injection accident the provider would refuse later.
_TOKEN_CHARACTERS = re.compile(r"[\x21-\x7e]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# RFC 8291: the client's key is an uncompressed P-256 point, its auth secret 16 bytes.
_AUTH_SECRET_BYTES = 16

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


@dataclass(frozen=True)
class TokenProblem:
    """Why a device token cannot be registered: the registration's failure reason and a
    sentence for the caller."""

    reason: FailureReason
    message: str


def token_problem(
    provider: Provider,
    token: str,
    subscription: WebPushSubscription | None,
    *,
    allow_http: bool,
) -> TokenProblem | None:
    """What is wrong with a device token for `provider`, without asking the store; None when
    nothing is.

    The ingest answers a problem with the dialect's 400 and the resolver fails the
    registration with its `reason`, so no registration is answered Success and dropped
    later. `token` is the subscription's endpoint for Web Push; `allow_http` allows a
    plain-http endpoint where private targets are allowed (the emulators).
    """
    subject = "the Web Push endpoint" if provider == "webpush" else "the token"
    name = _PROVIDER_NAMES[provider]
    if len(token) > TOKEN_LENGTH[provider]:
        return TokenProblem(
            "DeviceTokenTooLong",
            f"{subject} is longer than {name} issues (at most {TOKEN_LENGTH[provider]} characters)",
        )
    if token != token.strip():
        return TokenProblem("FailedToStoreDevice", f"{subject} starts or ends with whitespace")
    if _CONTROL.search(token):
        return TokenProblem(
            "FailedToStoreDevice", f"{subject} has control characters (such as NUL, CR or LF)"
        )
    if not _TOKEN_CHARACTERS.fullmatch(token):
        return TokenProblem(
            "FailedToStoreDevice",
            f"{subject} has characters no push token has (only printable ASCII, no spaces)",
        )
    if provider == "apns" and not is_apns_token(token):
        return TokenProblem("FailedToStoreDevice", "an APNs token is 64 to 200 hex digits")
    if provider == "webpush":
        return _subscription_problem(subscription, allow_http=allow_http)
    return None


def _subscription_problem(
    subscription: WebPushSubscription | None, *, allow_http: bool
) -> TokenProblem | None:
    if subscription is None:
        return TokenProblem("FailedToStoreDevice", "a Web Push device needs a subscription")
    parts = urlsplit(subscription.endpoint)
    # RFC 8030 push services speak https; plain http is for local emulators only.
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        allowed = " or http://" if allow_http else ""
        return TokenProblem(
            "FailedToStoreDevice", f"the Web Push endpoint is not an https://{allowed} URL"
        )
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), _base64url(subscription.keys.p256dh)
        )
    except ValueError:
        return TokenProblem(
            "FailedToStoreDevice",
            "the subscription's p256dh key is not a P-256 public key in base64url",
        )
    if len(_base64url(subscription.keys.auth)) != _AUTH_SECRET_BYTES:
        return TokenProblem(
            "FailedToStoreDevice",
            "the subscription's auth secret is not 16 bytes in base64url",
        )
    return None


def _base64url(value: str) -> bytes:
    """The bytes of unpadded (or padded) base64url text; b"" when it is not base64url."""
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return b""


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
