"""Segment filters: what the native API and Kafka accept as `to.filters`, and the test
of a device document the resolver compiles from one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from services.core.events import Audience, RegisterDevice, SendRequest, UpdateDevice
from services.core.filters import Filter
from services.core.store.client import Document
from services.resolver.segments import compile_filter, last_active

FILTERS: TypeAdapter[Filter] = TypeAdapter(Filter)
T0 = datetime(2026, 6, 1, tzinfo=UTC)


def device(**fields: Any) -> Document:
    return {"_id": "app:h", "platform": "android", "registered_at": T0, **fields}


def matches(node: dict[str, Any], document: Document) -> bool:
    return compile_filter(FILTERS.validate_python(node))(document)


@pytest.mark.parametrize(
    ("node", "tags", "expected"),
    [
        ({"tag": "plan", "eq": "pro"}, {"plan": "pro"}, True),
        ({"tag": "plan", "eq": "pro"}, {"plan": "free"}, False),
        ({"tag": "plan", "eq": "pro"}, {}, False),
        # A string never equals a number, either way round; 1 is 1.0.
        ({"tag": "age", "eq": 18}, {"age": "18"}, False),
        ({"tag": "age", "eq": "18"}, {"age": 18}, False),
        ({"tag": "age", "eq": 18}, {"age": 18.0}, True),
        ({"tag": "plan", "in": ["pro", "team"]}, {"plan": "team"}, True),
        ({"tag": "plan", "in": ["pro", "team"]}, {"plan": "free"}, False),
        ({"tag": "level", "in": [1, "one"]}, {"level": 1}, True),
        ({"tag": "level", "in": [1, "one"]}, {"level": "1"}, False),
        ({"tag": "beta", "exists": True}, {"beta": 0}, True),
        ({"tag": "beta", "exists": True}, {"other": 1}, False),
        ({"tag": "beta", "exists": False}, {"other": 1}, True),
        ({"tag": "beta", "exists": False}, {"beta": "yes"}, False),
        ({"tag": "age", "gte": 18}, {"age": 18}, True),
        ({"tag": "age", "gt": 18}, {"age": 18}, False),
        ({"tag": "age", "gt": 17.5}, {"age": 18}, True),
        ({"tag": "age", "lt": 18}, {"age": 17.9}, True),
        ({"tag": "age", "lte": 18}, {"age": 18.1}, False),
        ({"tag": "age", "gte": 18, "lt": 65}, {"age": 40}, True),
        ({"tag": "age", "gte": 18, "lt": 65}, {"age": 65}, False),
        # Only numbers compare: a string that reads as one does not.
        ({"tag": "age", "gte": 18}, {"age": "40"}, False),
        ({"tag": "age", "gte": 18}, {}, False),
        # A stored boolean is no number (only older or foreign writers could leave one).
        ({"tag": "age", "gte": 0}, {"age": True}, False),
        ({"tag": "age", "eq": 1}, {"age": True}, False),
    ],
)
def test_tag_conditions(node: dict[str, Any], tags: dict[str, Any], expected: bool) -> None:
    assert matches(node, device(tags=tags)) is expected


def test_a_device_without_tags_has_none() -> None:
    assert matches({"tag": "plan", "exists": False}, device())
    assert not matches({"tag": "plan", "exists": True}, device(tags=None))


@pytest.mark.parametrize(
    ("wanted", "language", "expected"),
    [
        ("pt", "pt", True),
        ("pt", "pt-br", True),
        ("pt-BR", "pt-br", True),
        ("pt-br", "pt", False),
        ("pt", "ptx", False),
        ("en", None, False),
    ],
)
def test_language_takes_itself_and_narrower_tags(
    wanted: str, language: str | None, expected: bool
) -> None:
    assert matches({"language": wanted}, device(language=language)) is expected


def test_platform() -> None:
    assert matches({"platform": "ios"}, device(platform="ios"))
    assert not matches({"platform": "ios"}, device(platform="web"))


def test_registered_before_and_after_are_exclusive() -> None:
    at = T0.isoformat()
    assert matches({"registered": {"after": "2026-05-31T23:59:59Z"}}, device())
    assert not matches({"registered": {"after": at}}, device())
    assert not matches({"registered": {"before": at}}, device())
    between = {"registered": {"after": "2026-05-01T00:00:00Z", "before": "2026-07-01T00:00:00Z"}}
    assert matches(between, device())
    assert not matches({"registered": {"before": at}}, {"_id": "app:h"})


def test_last_active_is_the_later_of_registration_and_interaction() -> None:
    later = T0 + timedelta(days=10)
    assert last_active(device()) == T0
    assert last_active(device(last_active_at=later)) == later
    assert last_active(device(last_active_at=T0 - timedelta(days=1))) == T0
    assert last_active({"_id": "app:h"}) is None
    since = {"last_active": {"after": (T0 + timedelta(days=5)).isoformat()}}
    assert matches(since, device(last_active_at=later))
    assert not matches(since, device())
    # Offsets are honoured: 02:00+02:00 is midnight UTC.
    assert matches({"last_active": {"before": "2026-06-01T02:00:01+02:00"}}, device())


def test_and_or_and_nesting() -> None:
    pro_ios = {"and": [{"tag": "plan", "eq": "pro"}, {"platform": "ios"}]}
    either = {"or": [pro_ios, {"language": "pt"}]}
    assert matches(pro_ios, device(platform="ios", tags={"plan": "pro"}))
    assert not matches(pro_ios, device(platform="android", tags={"plan": "pro"}))
    assert matches(either, device(language="pt-br"))
    assert matches(either, device(platform="ios", tags={"plan": "pro"}))
    assert not matches(either, device(platform="ios", tags={"plan": "free"}, language="en"))
    both = {
        "and": [{"or": [{"platform": "ios"}, {"platform": "web"}]}, {"tag": "beta", "exists": True}]
    }
    assert matches(both, device(platform="web", tags={"beta": 1}))
    assert not matches(both, device(platform="android", tags={"beta": 1}))


@pytest.mark.parametrize(
    "node",
    [
        {},
        {"nope": 1},
        {"tag": "plan"},
        {"tag": "plan", "eq": "pro", "in": ["pro"]},
        {"tag": "plan", "eq": "pro", "gt": 1},
        {"tag": "Plan", "eq": "pro"},
        {"tag": "a.b", "eq": "pro"},
        {"tag": "plan", "eq": True},
        {"tag": "plan", "eq": None},
        {"tag": "plan", "in": []},
        {"tag": "plan", "in": list(range(101))},
        {"tag": "plan", "eq": "x" * 257},
        {"tag": "age", "gt": "18"},
        {"tag": "plan", "eq": "pro", "unknown": 1},
        {"platform": "windows"},
        {"language": "not a language"},
        {"registered": {}},
        {"registered": {"before": "2026-01-01T00:00:00"}},
        {"registered": {"after": "2026-02-01T00:00:00Z", "before": "2026-01-01T00:00:00Z"}},
        {"and": []},
        {"and": [{"platform": "ios"}], "or": [{"platform": "ios"}]},
        {"and": [{"platform": "ios"}] * 21},
        # Groups nest two deep at most.
        {"or": [{"and": [{"or": [{"platform": "ios"}]}]}]},
    ],
)
def test_refused_filters(node: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        FILTERS.validate_python(node)


def test_a_filter_survives_kafka_as_it_was_given() -> None:
    node = {
        "or": [
            {"and": [{"tag": "plan", "in": ["pro", 2]}, {"platform": "ios"}]},
            {"registered": {"before": "2026-01-01T00:00:00Z"}},
        ]
    }
    request = SendRequest(
        notification_id="n",
        account_id="acc",
        app_id="app",
        to=Audience(filters=FILTERS.validate_python(node)),
    )
    again = SendRequest.model_validate_json(request.model_dump_json(exclude_none=True))
    assert again == request
    assert '"in":["pro",2]' in request.model_dump_json(exclude_none=True)


@pytest.mark.parametrize(
    ("to", "app_id", "send_to", "message"),
    [
        ({"all": True, "filters": {"platform": "ios"}}, "app", None, "takes no to.filters"),
        ({"filters": {"platform": "ios"}}, None, None, "needs the app_id"),
        ({"filters": {"platform": "ios"}, "tokens": ["t"]}, "app", None, "takes no tokens"),
        ({"filters": {"platform": "ios"}}, "app", "latest", "send_to latest"),
    ],
)
def test_filters_stand_alone_on_an_app(
    to: dict[str, Any], app_id: str | None, send_to: str | None, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        SendRequest.model_validate(
            {
                "notification_id": "n",
                "account_id": "acc",
                "app_id": app_id,
                "to": to,
                "notification": {"title": "x"},
                "options": {"send_to": send_to},
            }
        )


def test_registration_tags_and_language() -> None:
    base = {"request_id": "r", "account_id": "a", "app_id": "p", "platform": "ios", "token": "t"}
    command = RegisterDevice.model_validate(
        {**base, "tags": {"plan": "pro", "age": 30, "score": 1.5}, "language": "pt-BR"}
    )
    assert command.language == "pt-br"
    assert command.tags == {"plan": "pro", "age": 30, "score": 1.5}
    for bad in (
        {"tags": {f"k{i}": i for i in range(51)}},
        {"tags": {"k": "v" * 257}},
        {"tags": {"K": "v"}},
        {"tags": {"k": True}},
        {"tags": {"k": 2**53 + 1}},
        {"tags": {"k": None}},
        {"language": "e"},
        {"language": "en_US"},
    ):
        with pytest.raises(ValidationError):
            RegisterDevice.model_validate({**base, **bad})


def test_an_update_sets_or_removes() -> None:
    base = {"request_id": "r", "account_id": "a", "app_id": "p", "token": "t"}
    with pytest.raises(ValidationError, match="not both"):
        UpdateDevice.model_validate({**base, "language": "en", "remove_language": True})
    with pytest.raises(ValidationError, match="not both"):
        UpdateDevice.model_validate({**base, "tags": {"a": 1}, "removed_tags": ["a"]})
