"""The fanout scenario's segment: a valid `to.filters` that every benchmark device is in,
so that it produces as many jobs as `to.all`."""

from __future__ import annotations

from bench.fanout import SEGMENT
from services.core.events import Audience, utc_now
from services.resolver.segments import compile_filter


def test_the_segment_takes_every_device() -> None:
    segment = Audience.model_validate({"filters": SEGMENT}).filters
    assert segment is not None
    test = compile_filter(segment)
    for platform in ("android", "ios", "web"):
        assert test({"platform": platform, "registered_at": utc_now()})
