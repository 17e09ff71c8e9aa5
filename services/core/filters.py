"""Segment filters: which of an app's devices a send's `to.filters` selects, by tag,
platform, language and registration or activity time, combined with and/or.

A filter is compiled into a test of each device by the resolver (`services.resolver`);
here are its shape and its bounds.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from services.core.fields import DeviceLanguage, Platform, TagKey, TagNumber, TagValue

# Items of one `and`/`or` of a segment filter, and values of one tag's `in`.
MAX_FILTER_ITEMS = 20
MAX_FILTER_VALUES = 100
_KINDS = ("and", "or", "tag", "platform", "language", "registered", "last_active")


class Condition(BaseModel):
    """Base of a segment filter's nodes. Unlike messages, a node refuses fields it does not
    know: a condition an older reader ignored would widen the segment."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, serialize_by_alias=True
    )


class TagCondition(Condition):
    """Devices by one tag: equal to a value, one of values, present (or absent), or a
    number within bounds (`gt`, `gte`, `lt`, `lte` combine into a range). A string never
    equals a number, and only numbers compare."""

    tag: TagKey
    eq: TagValue | None = None
    in_: Annotated[
        list[TagValue] | None, Field(alias="in", min_length=1, max_length=MAX_FILTER_VALUES)
    ] = None
    exists: bool | None = None
    gt: TagNumber | None = None
    gte: TagNumber | None = None
    lt: TagNumber | None = None
    lte: TagNumber | None = None

    @model_validator(mode="after")
    def _one_test(self) -> TagCondition:
        bounded = any(b is not None for b in (self.gt, self.gte, self.lt, self.lte))
        tests = (self.eq is not None, self.in_ is not None, self.exists is not None, bounded)
        if sum(tests) != 1:
            raise ValueError(
                "a tag condition takes exactly one of eq, in, exists, or bounds (gt, gte, lt, lte)"
            )
        return self


class PlatformCondition(Condition):
    """Devices of one platform."""

    platform: Platform


class LanguageCondition(Condition):
    """Devices of this language or a narrower one: `pt` takes `pt` and `pt-br`, `pt-br`
    only `pt-br` (RFC 4647 basic filtering). Devices without a language are left out."""

    language: DeviceLanguage


class Period(Condition):
    """A time span: before, after, or between (exclusive bounds, RFC 3339 with an offset)."""

    before: AwareDatetime | None = None
    after: AwareDatetime | None = None

    @model_validator(mode="after")
    def _bounded(self) -> Period:
        if self.before is None and self.after is None:
            raise ValueError("give before, after or both")
        if self.before is not None and self.after is not None and self.after >= self.before:
            raise ValueError("after must be earlier than before")
        return self


class RegisteredCondition(Condition):
    """Devices by when they were last registered (or refreshed)."""

    registered: Period


class LastActiveCondition(Condition):
    """Devices by when they were last active: the later of their last registration and
    the last interaction (delivered, opened, ...) their app reported."""

    last_active: Period


def _kind(node: Any) -> str | None:
    """Which node a filter is, as its label: named by the key it holds (a parsed node by
    its class)."""
    if isinstance(node, dict):
        kind = next((key for key in _KINDS if key in node), None)
        if kind is None:
            return None
        return "<group>" if kind in ("and", "or") else f"<{kind}>"
    return _KIND_OF.get(type(node))


def _one_of(and_: object, or_: object) -> None:
    if (and_ is None) == (or_ is None):
        raise ValueError("a group takes exactly one of and, or")


_NOT_A_FILTER = "a filter holds one of " + ", ".join(_KINDS)
Leaf = Annotated[
    Annotated[TagCondition, Tag("<tag>")]
    | Annotated[PlatformCondition, Tag("<platform>")]
    | Annotated[LanguageCondition, Tag("<language>")]
    | Annotated[RegisteredCondition, Tag("<registered>")]
    | Annotated[LastActiveCondition, Tag("<last_active>")],
    Discriminator(
        _kind,
        custom_error_type="filter_kind",
        custom_error_message="groups nest two deep at most: here a filter holds one of "
        + ", ".join(_KINDS[2:]),
    ),
]


class InnerGroup(Condition):
    """`and` or `or` of conditions, inside a group."""

    and_: Annotated[
        list[Leaf] | None, Field(alias="and", min_length=1, max_length=MAX_FILTER_ITEMS)
    ] = None
    or_: Annotated[
        list[Leaf] | None, Field(alias="or", min_length=1, max_length=MAX_FILTER_ITEMS)
    ] = None

    @model_validator(mode="after")
    def _and_or_or(self) -> InnerGroup:
        _one_of(self.and_, self.or_)
        return self


Member = Annotated[
    Annotated[TagCondition, Tag("<tag>")]
    | Annotated[PlatformCondition, Tag("<platform>")]
    | Annotated[LanguageCondition, Tag("<language>")]
    | Annotated[RegisteredCondition, Tag("<registered>")]
    | Annotated[LastActiveCondition, Tag("<last_active>")]
    | Annotated[InnerGroup, Tag("<group>")],
    Discriminator(_kind, custom_error_type="filter_kind", custom_error_message=_NOT_A_FILTER),
]


class Group(Condition):
    """`and` or `or` of conditions and of inner groups: a filter nests two groups deep at
    most (`{"or": [{"and": [...]}, ...]}`), which writes any and/or of conditions."""

    and_: Annotated[
        list[Member] | None, Field(alias="and", min_length=1, max_length=MAX_FILTER_ITEMS)
    ] = None
    or_: Annotated[
        list[Member] | None, Field(alias="or", min_length=1, max_length=MAX_FILTER_ITEMS)
    ] = None

    @model_validator(mode="after")
    def _and_or_or(self) -> Group:
        _one_of(self.and_, self.or_)
        return self


# A segment of an app's devices: one condition, or a group of them.
Filter = Annotated[
    Annotated[TagCondition, Tag("<tag>")]
    | Annotated[PlatformCondition, Tag("<platform>")]
    | Annotated[LanguageCondition, Tag("<language>")]
    | Annotated[RegisteredCondition, Tag("<registered>")]
    | Annotated[LastActiveCondition, Tag("<last_active>")]
    | Annotated[Group, Tag("<group>")],
    Discriminator(_kind, custom_error_type="filter_kind", custom_error_message=_NOT_A_FILTER),
]
_KIND_OF: dict[type[Condition], str] = {
    TagCondition: "<tag>",
    PlatformCondition: "<platform>",
    LanguageCondition: "<language>",
    RegisteredCondition: "<registered>",
    LastActiveCondition: "<last_active>",
    InnerGroup: "<group>",
    Group: "<group>",
}
# The labels of a filter's kinds: validation errors name them in their path, where a
# caller would rather read the JSON path alone.
FILTER_LABELS = frozenset(_KIND_OF.values())
