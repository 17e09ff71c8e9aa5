"""Rules about a device that every stage applies the same way: token shape, provider choice,
and the normal form of the cellphones and emails a device is associated with.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from services.core.events import WebPushSubscription
from services.core.fields import Platform
from services.core.providers import registry
from services.core.providers.base import TokenProblem

# The events' bound, checked while a body is parsed; `token_problem` then applies the
# provider's own, smaller one (`Provider.token_limit`).
MAX_TOKEN_LENGTH = 4096
# No provider issues a token with anything but printable ASCII (FCM's are URL-safe base64
# and colons, APNs's hex, Web Push endpoints URLs): a space, a control character or a
# non-ASCII one is a copy-paste or injection accident the provider would refuse later.
_TOKEN_CHARACTERS = re.compile(r"[\x21-\x7e]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Country code + number, digits only (seed 002: 573141234567); E.164 allows 15 digits.
_CELLPHONE = re.compile(r"\+?[0-9]{8,15}")
# Syntax only: one @, no spaces, a dot in the domain. Deliverability is not our business.
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")
# The events cap ids at 200 characters; RFC 5321 allows 254, which no real address nears.
_MAX_EMAIL = 200


def token_problem(
    provider: str,
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
    plain-http endpoint where private targets are allowed (the emulators). Raises
    ConfigError for a provider that is not registered.
    """
    cls = registry.provider_class(provider)
    subject = cls.token_noun
    if len(token) > cls.token_limit:
        return TokenProblem(
            "DeviceTokenTooLong",
            f"{subject} is longer than {cls.title} issues (at most {cls.token_limit} characters)",
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
    return cls.token_problem(token, subscription, allow_http=allow_http)


def provider_for(
    platform: Platform, token: str, *, web_subscription: bool, configured: Collection[str]
) -> str | None:
    """The provider that delivers to this device, or None when the app has none for it.

    Each registered provider claims the device or not (`Provider.claim`): one that claims
    it as its `sole` provider is it (or none, if the app lacks it), else the first
    `preferred` one the app has, else the first `fallback` one the app has. For the
    built-in three: android -> FCM; ios -> APNs when the token is an APNs token and the
    app has APNs credentials, else FCM; web -> Web Push for a W3C push subscription, else
    FCM.
    """
    preferred: str | None = None
    fallback: str | None = None
    for name in registry.names():
        claim = registry.provider_class(name).claim(
            platform, token, web_subscription=web_subscription
        )
        if claim == "sole":
            return name if name in configured else None
        if name not in configured:
            continue
        if claim == "preferred" and preferred is None:
            preferred = name
        elif claim == "fallback" and fallback is None:
            fallback = name
    return preferred or fallback


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
