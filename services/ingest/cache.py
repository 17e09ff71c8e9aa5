"""A short memory of store lookups: what the ingest found for an API key or an app, kept
for a few seconds so that a busy caller does not cost two store queries per request.

The bound is the time since the value was read from the store, not since it was last
used: a change in the store (a key removed, an app changed or deleted) is seen at most that
many seconds later. Only what was found is kept; a miss asks the store every time, so a
key or app created a moment ago works at once.
"""

from __future__ import annotations

import time
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """Values remembered for `seconds` after they were put, `size` of them at most (the
    oldest put goes first). `seconds=0` remembers nothing."""

    def __init__(self, seconds: float, size: int) -> None:
        self._seconds = seconds
        self._size = size
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        """The value put under `key` less than `seconds` ago, or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if time.monotonic() >= expires:
            del self._entries[key]
            return None
        return value

    def put(self, key: K, value: V) -> None:
        """Remember `value` under `key` for the next `seconds`."""
        if self._seconds <= 0:
            return
        # Re-inserted at the end, so the dict's order stays the order of expiry.
        self._entries.pop(key, None)
        if len(self._entries) >= self._size:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (time.monotonic() + self._seconds, value)
