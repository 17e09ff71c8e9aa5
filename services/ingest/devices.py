"""How the dialects that say little about a device are read: a platform named in any case,
and a Web Push subscription carried where a string token goes."""

from __future__ import annotations

from typing import get_args

from services.core.events import WebPushSubscription
from services.core.fields import Platform

# Every platform by its lower-case name (the seeds write `Android`, `ANDROID`, `android`).
PLATFORMS: dict[str, Platform] = {platform: platform for platform in get_args(Platform)}


def platform_named(name: str) -> Platform | None:
    """The platform `name` is, in any case; None for no platform."""
    return PLATFORMS.get(name.lower())


def subscription_in(token: str) -> WebPushSubscription | None:
    """The W3C push subscription a string token holds as JSON, if it holds one.

    Dialects that carry only a string token (Routee, Masiv) may pass a browser's
    `JSON.stringify(subscription)` there; anything else is an FCM token.
    """
    if not token.lstrip().startswith("{"):
        return None
    try:
        return WebPushSubscription.model_validate_json(token)
    except ValueError:
        return None
