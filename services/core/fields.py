"""The field types the topic messages and the APIs share: platforms, provider names, ids,
tokens, languages, and a device's tags."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, StrictFloat, StrictInt, StrictStr

Platform = Literal["android", "ios", "web"]
# A registered provider's name: `fcm`, `apns`, `webpush` (services/core/providers/registry.py
# lists them); it names the job topic `push.jobs.{name}`.
ProviderName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{1,19}$")]

Id = Annotated[str, Field(min_length=1, max_length=200)]
# A BCP 47 language tag as devices and per-language content carry it, lower-case:
# "en", "pt-br", "zh-hant-tw".
Language = Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[a-z0-9]{1,8}){0,3}$")]
# Per-language content names the fallback for a device whose language it lacks so.
DEFAULT_LANGUAGE = "default"
# Languages one send may carry content for.
MAX_LANGUAGES = 50
# FCM tokens run to ~200 characters, Web Push endpoints to a few hundred; 4 KiB bounds both.
Token = Annotated[str, Field(min_length=1, max_length=4096)]

# A device's tags: at most MAX_TAGS, keys of 1 to 64 of `a-z 0-9 _ -` (no `.`, `$` or `:`:
# a key is a field name in the store and `key:value` in a listing's filter), values strings
# of at most 256 characters or numbers (within 2^53, where every JSON reader keeps integers
# exact; never booleans).
MAX_TAGS = 50
TagKey = Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,64}$")]
TagNumber = (
    Annotated[StrictInt, Field(ge=-(2**53), le=2**53)]
    # Open bounds: a larger integer, which this branch would take rounded, is refused.
    | Annotated[StrictFloat, Field(gt=-(2**53), lt=2**53)]
)


def _tag_value(value: object) -> object:
    """One plain refusal for what no branch of TagValue takes, instead of one per branch."""
    if isinstance(value, str) and len(value) <= 256:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= 2**53:
        return value
    if isinstance(value, float) and abs(value) < 2**53:
        return value
    raise ValueError("a tag value is a string of at most 256 characters or a number within 2^53")


TagValue = Annotated[
    Annotated[StrictStr, Field(max_length=256)] | TagNumber, BeforeValidator(_tag_value)
]
Tags = Annotated[dict[TagKey, TagValue], Field(max_length=MAX_TAGS)]


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


# A device's BCP 47 language tag, as given ("en", "pt-BR", "zh-Hant-TW") and kept
# lower-case ("pt-br"): tags compare case-insensitively (RFC 5646 2.1.1).
DeviceLanguage = Annotated[Language, BeforeValidator(_lower)]
