from __future__ import annotations

from services.ingest.cache import TTLCache


def test_the_oldest_put_goes_first_when_full() -> None:
    cache: TTLCache[str, int] = TTLCache(60.0, size=2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 3)  # put again: now the newest
    cache.put("c", 4)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (3, None, 4)


def test_zero_seconds_keeps_nothing() -> None:
    cache: TTLCache[str, int] = TTLCache(0.0, size=10)
    cache.put("a", 1)
    assert cache.get("a") is None
