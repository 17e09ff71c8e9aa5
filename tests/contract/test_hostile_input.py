"""Hostile input to every dialect's endpoints: random and oversized bodies, deep JSON,
wrong types, invalid UTF-8 and other content types. Each is answered with a 4xx in the
dialect's own error shape (413 for a body over the limit), and nothing reaches Kafka or
the store."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo.asynchronous.database import AsyncDatabase

from services.core.settings import Settings
from services.core.store.client import Document
from tests.contract.conftest import Tenant, TenantFactory
from tests.dialects import Shape, cij, masiv, problem_json, routee
from tests.registrations import Tap

pytestmark = pytest.mark.integration

# Small, so that oversized bodies are quick to build and send.
MAX_BODY = 64 * 1024
EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass(frozen=True)
class Endpoint:
    """A POST route, a body it would accept, and the string fields that body has."""

    path: str
    shape: Shape
    body: Callable[[Tenant], Any]
    fields: tuple[str, ...]
    bearer: bool = True


def _cij_device(t: Tenant) -> dict[str, str]:
    return {
        "MobileAppId": t.app.id,
        "UserId": "u-1",
        "ApiToken": t.api_key,
        "FcmDeviceToken": "tok-1",
    }


def _cij_cleanup(t: Tenant) -> dict[str, str]:
    return {"MobileAppId": t.app.id, "ApiToken": t.api_key, "UserId": "u-1"}


CIJ = "/api/v1.0/orgs/{org}/pushdeviceregistration"
ENDPOINTS = [
    Endpoint(
        "/v1/apps/{app}/devices",
        problem_json,
        lambda t: {"platform": "android", "token": "tok-1"},
        ("platform", "token"),
    ),
    Endpoint(
        "/v1/apps/{app}/devices:batch",
        problem_json,
        lambda t: {"devices": [{"platform": "android", "token": "tok-1"}]},
        ("devices",),
    ),
    Endpoint(
        "/v1/apps/{app}/devices:cleanup",
        problem_json,
        lambda t: {"contact_id": "c-1"},
        ("contact_id",),
    ),
    Endpoint(
        "/v1/notifications",
        problem_json,
        lambda t: {"app_id": t.app.id, "to": {"tokens": ["tok-1"]}, "notification": {"title": "x"}},
        ("app_id", "to", "notification"),
    ),
    Endpoint(
        "/v1/events",
        problem_json,
        lambda t: {"notification_id": "n-1", "token": "tok-1", "type": "opened"},
        ("notification_id", "token", "type"),
    ),
    Endpoint(
        "/messages/android",
        routee,
        lambda t: {"routeeContactId": "c-1", "token": "tok-1", "implementationId": t.app.id},
        ("routeeContactId", "token", "implementationId"),
    ),
    Endpoint(
        CIJ + "/devices",
        cij,
        _cij_device,
        ("MobileAppId", "UserId", "FcmDeviceToken"),
        bearer=False,
    ),
    Endpoint(
        CIJ + "/devices/batch",
        cij,
        lambda t: [_cij_device(t)],
        ("MobileAppId", "UserId", "FcmDeviceToken"),
        bearer=False,
    ),
    Endpoint(
        CIJ + "/devices/status/",
        cij,
        lambda t: {"RegistrationRequestIds": ["r-1"], "MobileAppId": t.app.id, "ApiToken": "x"},
        ("RegistrationRequestIds", "MobileAppId"),
        bearer=False,
    ),
    Endpoint(
        CIJ + "/devices/cleanup",
        cij,
        _cij_cleanup,
        ("MobileAppId", "UserId"),
        bearer=False,
    ),
    Endpoint(
        CIJ + "/devices/cleanup/batch",
        cij,
        lambda t: [_cij_cleanup(t)],
        ("MobileAppId", "UserId"),
        bearer=False,
    ),
    Endpoint(
        "/v1/association/create",
        masiv,
        lambda t: {"token": "tok-1", "association": {"cellphone": "573141234567"}},
        ("token", "association"),
    ),
    Endpoint(
        "/v1/notification/sendToList",
        masiv,
        lambda t: {"tokens": ["tok-1"], "notification": {"title": "a", "message": "b"}},
        ("tokens", "notification"),
    ),
]


@dataclass
class Target:
    """The ingest, one tenant, and what was published and stored."""

    client: httpx.AsyncClient
    tenant: Tenant
    tap: Tap
    db: AsyncDatabase[Document]

    async def post(
        self,
        endpoint: Endpoint,
        content: bytes | AsyncIterator[bytes],
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        path = endpoint.path.format(app=self.tenant.app.id, org=self.tenant.account_id)
        sent = {"Content-Type": content_type, **(headers or {})}
        if endpoint.bearer:
            sent["Authorization"] = f"Bearer {self.tenant.api_key}"
        response = await self.client.post(path, content=content, headers=sent)
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text)
        endpoint.shape(response, path)
        return response

    async def nothing_taken(self) -> None:
        assert await self.tap.drain(self.tenant.app.id) == []
        for collection in ("devices", "registrations", "notifications", "idempotency"):
            assert await self.db[collection].count_documents({}) == 0, collection


@pytest.fixture
def ingest_settings(ingest_settings: Settings) -> Settings:
    return ingest_settings.model_copy(update={"max_body_bytes": MAX_BODY})


@pytest.fixture
async def target(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> AsyncIterator[Target]:
    found = Target(client, await tenants.make(), tap, db)
    yield found
    await found.nothing_taken()


endpoints = st.sampled_from(ENDPOINTS)


@EXAMPLES
@given(endpoint=endpoints, body=st.binary(max_size=2048))
async def test_random_bytes(target: Target, endpoint: Endpoint, body: bytes) -> None:
    await target.post(endpoint, body)


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=12,
    )


@EXAMPLES
@given(endpoint=endpoints, document=_json_values())
async def test_random_json(target: Target, endpoint: Endpoint, document: Any) -> None:
    await target.post(endpoint, json.dumps(document).encode())


def _nested(depth: int, opener: str) -> str:
    closer = {"[": "]", '{"a":': "}"}[opener]
    return opener * depth + "1" + closer * depth


@EXAMPLES
@given(
    endpoint=endpoints,
    depth=st.integers(min_value=64, max_value=30_000),
    opener=st.sampled_from(["[", '{"a":']),
    whole=st.booleans(),
)
async def test_deeply_nested_json(
    target: Target, endpoint: Endpoint, depth: int, opener: str, whole: bool
) -> None:
    deep = _nested(depth, opener)
    if whole:
        raw = deep
    else:
        body = endpoint.body(target.tenant)
        item = body[0] if isinstance(body, list) else body
        item[endpoint.fields[0]] = "@@DEEP@@"
        raw = json.dumps(body).replace('"@@DEEP@@"', deep)
    await target.post(endpoint, raw.encode())


wrong_types = (
    st.integers()
    | st.floats(allow_nan=False)
    | st.booleans()
    | st.lists(st.integers(), max_size=3)
    | st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)
)


@EXAMPLES
@given(endpoint=endpoints, data=st.data())
async def test_wrong_types(target: Target, endpoint: Endpoint, data: st.DataObject) -> None:
    body = endpoint.body(target.tenant)
    item = body[0] if isinstance(body, list) else body
    field = data.draw(st.sampled_from(endpoint.fields))
    item[field] = data.draw(wrong_types)
    await target.post(endpoint, json.dumps(body).encode())


INVALID_UTF8 = [
    b"\xff",
    b"\xc3(",
    b"\xed\xa0\x80",
    b"\xf8\x88\x80\x80\x80",
    b"\x80",
    b"\xe2\x28\xa1",
]


@EXAMPLES
@given(
    endpoint=endpoints,
    data=st.data(),
    bad=st.sampled_from(INVALID_UTF8),
    around=st.text(max_size=5),
)
async def test_invalid_utf8(
    target: Target, endpoint: Endpoint, data: st.DataObject, bad: bytes, around: str
) -> None:
    raw = json.dumps(endpoint.body(target.tenant)).encode()
    # Any string of the body, a key or a value, gets the bad bytes.
    strings = list(re.finditer(rb'"([^"]*)"', raw))
    chosen = data.draw(st.sampled_from(strings))
    inside = json.dumps(around).encode()[1:-1] + bad
    raw = raw[: chosen.start(1)] + inside + raw[chosen.end(1) :]
    await target.post(endpoint, raw)


OTHER_TYPES = [
    ("application/x-www-form-urlencoded", b"token=tok-1&platform=android"),
    ("application/xml", b"<device><token>tok-1</token></device>"),
    ("text/plain", b"tok-1"),
    (
        "multipart/form-data; boundary=x",
        b'--x\r\nContent-Disposition: form-data; name="t"\r\n\r\n1\r\n--x--\r\n',
    ),
    ("application/octet-stream", b"\x00\x01\x02"),
]


@EXAMPLES
@given(endpoint=endpoints, other=st.sampled_from(OTHER_TYPES))
async def test_other_content_types(
    target: Target, endpoint: Endpoint, other: tuple[str, bytes]
) -> None:
    await target.post(endpoint, other[1], content_type=other[0])


def _padded(target: Target, endpoint: Endpoint, size: int) -> bytes:
    # A body the route would accept, but for its size: unknown fields are ignored.
    body = endpoint.body(target.tenant)
    item = body[0] if isinstance(body, list) else body
    item["padding"] = "x" * size
    return json.dumps(body).encode()


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.path)
async def test_bodies_over_the_limit_are_refused_in_the_dialects_shape(
    target: Target, endpoint: Endpoint
) -> None:
    raw = _padded(target, endpoint, MAX_BODY)
    response = await target.post(endpoint, raw)
    assert response.status_code == 413

    async def chunked() -> AsyncIterator[bytes]:
        # No Content-Length: the limit is found while reading, and reading stops there.
        for start in range(0, len(raw), 4096):
            yield raw[start : start + 4096]

    response = await target.post(endpoint, chunked())
    assert response.status_code == 413


async def test_a_body_at_the_limit_is_read(target: Target) -> None:
    endpoint = ENDPOINTS[0]
    raw = _padded(target, endpoint, 0)
    raw = _padded(target, endpoint, MAX_BODY - len(raw))
    assert len(raw) == MAX_BODY
    path = endpoint.path.format(app=target.tenant.app.id)
    response = await target.client.post(
        path, content=raw, headers={"Authorization": f"Bearer {target.tenant.api_key}"}
    )
    assert response.status_code == 202
    # It was published and recorded Pending: the fixture's check that nothing was taken
    # applies once that record is gone.
    assert len(await target.tap.drain(target.tenant.app.id)) == 1
    pending = {"_id": response.json()["registration_id"], "status": "Pending"}
    assert (await target.db.registrations.delete_one(pending)).deleted_count == 1


@pytest.mark.parametrize(
    "value", [_nested(50_000, "["), _nested(50_000, '{"a":'), "{not json", '["a"]', '{"k": 1}']
)
async def test_cij_callback_headers_that_are_not_an_object_of_strings(
    target: Target, value: str
) -> None:
    endpoint = ENDPOINTS[6]
    body = json.dumps(endpoint.body(target.tenant)).encode()
    headers = {"x-ms-callback-url": "https://example.com/cb", "x-ms-callback-url-headers": value}
    response = await target.post(endpoint, body, headers=headers)
    assert response.status_code == 400
