"""Segments: a send's `to.filters` compiled once into a test of a device document.

The store serves only `_id` reads without scanning, so a segment is the app's devices read
in `_id` order, as `to.all` reads them, each kept when the compiled test holds: one pass
whatever the filter, resumable after the last device produced, with the filter's work
per device a few dictionary reads.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeGuard

from services.core.filters import (
    Filter,
    Group,
    InnerGroup,
    LanguageCondition,
    LastActiveCondition,
    Period,
    PlatformCondition,
    RegisteredCondition,
    TagCondition,
)
from services.core.store.client import Document

Test = Callable[[Document], bool]

# What a segment's test reads of a device, besides what every job needs.
FIELDS = ("tags", "language", "registered_at", "last_active_at")


def compile_filter(node: Filter | InnerGroup) -> Test:
    """The test of whether a device document is in the segment `node` describes."""
    if isinstance(node, Group | InnerGroup):
        return _group(node)
    if isinstance(node, TagCondition):
        return _tag(node)
    if isinstance(node, PlatformCondition):
        platform = node.platform
        return lambda device: device.get("platform") == platform
    if isinstance(node, LanguageCondition):
        return _language(node.language)
    if isinstance(node, RegisteredCondition):
        within = _within(node.registered)
        return lambda device: within(device.get("registered_at"))
    assert isinstance(node, LastActiveCondition)
    within = _within(node.last_active)
    return lambda device: within(last_active(device))


def last_active(device: Document) -> datetime | None:
    """When the device was last active: the later of its last registration and the last
    interaction its app reported (None when neither is known)."""
    times = [t for t in (device.get("registered_at"), device.get("last_active_at")) if t]
    return max(times, default=None)


def _group(node: Group | InnerGroup) -> Test:
    members: Sequence[Filter | InnerGroup] = node.and_ or node.or_ or ()
    tests = [compile_filter(member) for member in members]
    if node.and_ is not None:
        return lambda device: all(test(device) for test in tests)
    return lambda device: any(test(device) for test in tests)


def _number(value: object) -> TypeGuard[int | float]:
    # Stored tag values are strings and numbers; a boolean is an int to Python, never a tag.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(stored: object, wanted: str | float) -> bool:
    """Equal and of the same kind: the string "1" is not the number 1 (1 is 1.0)."""
    if isinstance(wanted, str):
        return isinstance(stored, str) and stored == wanted
    return _number(stored) and stored == wanted


def _tag(node: TagCondition) -> Test:
    key = node.tag

    def tags(device: Document) -> dict[str, object]:
        found = device.get("tags")
        return found if isinstance(found, dict) else {}

    if node.exists is not None:
        exists = node.exists
        return lambda device: (key in tags(device)) == exists
    if node.eq is not None:
        eq = node.eq
        return lambda device: key in tags(device) and _same(tags(device)[key], eq)
    if node.in_ is not None:
        values = node.in_
        return lambda device: (
            key in tags(device) and any(_same(tags(device)[key], value) for value in values)
        )
    limits = [
        (compare, bound)
        for compare, bound in (
            (operator.gt, node.gt),
            (operator.ge, node.gte),
            (operator.lt, node.lt),
            (operator.le, node.lte),
        )
        if bound is not None
    ]

    def within(device: Document) -> bool:
        value = tags(device).get(key)
        return _number(value) and all(compare(value, bound) for compare, bound in limits)

    return within


def _language(wanted: str) -> Test:
    narrower = f"{wanted}-"

    def test(device: Document) -> bool:
        language = device.get("language")
        return isinstance(language, str) and (language == wanted or language.startswith(narrower))

    return test


def _within(period: Period) -> Callable[[datetime | None], bool]:
    before, after = period.before, period.after

    def test(at: datetime | None) -> bool:
        if at is None:
            return False
        return (before is None or at < before) and (after is None or at > after)

    return test
