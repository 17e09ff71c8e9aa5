"""The Web Push emulator driven by pywebpush 2.5, the library the sender uses."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from py_vapid import Vapid02
from pywebpush import WebPusher, WebPushException, webpush

from services.sandbox.emulators.runner import EmulatorThread
from services.sandbox.emulators.state import TokenState
from services.sandbox.emulators.webpush import WebPushEmulator, b64url
from tests.integration.emulators.forgery import tampered

SUBJECT = "mailto:ops@example.com"


@pytest.fixture
def push() -> Iterator[WebPushEmulator]:
    emulator = WebPushEmulator()
    with EmulatorThread(emulator):
        yield emulator


@pytest.fixture
def vapid() -> Vapid02:
    key = Vapid02()
    key.generate_keys()
    return key


def _public(vapid: Vapid02) -> str:
    """The VAPID public key as a page passes it to `pushManager.subscribe()`."""
    raw = vapid.public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return b64url(raw)


def _send(subscription: dict[str, Any], data: bytes, vapid: Vapid02, **claims: Any) -> Any:
    # webpush() mutates the claims it is given, so each call gets a fresh dict.
    return webpush(
        subscription,
        data,
        vapid_private_key=vapid,
        vapid_claims={"sub": SUBJECT, **claims},
        ttl=60,
    )


def _status(subscription: dict[str, Any], data: bytes, vapid: Vapid02, **claims: Any) -> int:
    with pytest.raises(WebPushException) as raised:
        _send(subscription, data, vapid, **claims)
    assert raised.value.response is not None
    return int(raised.value.response.status_code)


def test_the_plaintext_is_decrypted_and_recorded(push: WebPushEmulator, vapid: Vapid02) -> None:
    subscription = push.subscribe()
    data = json.dumps({"title": "Hi", "body": "ünïcode"}).encode()
    response = _send(subscription, data, vapid)
    assert response.status_code == 201
    assert response.headers["Location"].startswith(push.url)
    (record,) = push.controls.records()
    assert record.target == subscription["endpoint"]
    assert record.plaintext == data
    assert record.payload == {"title": "Hi", "body": "ünïcode"}
    assert record.headers["ttl"] == "60"
    assert record.headers["content-encoding"] == "aes128gcm"


async def test_webpusher_encode_with_an_async_client(push: WebPushEmulator, vapid: Vapid02) -> None:
    """The sender's path: encrypt with WebPusher, sign VAPID once, post with httpx."""
    subscription = push.subscribe(application_server_key=_public(vapid))
    data = b"\x00binary\xffpayload"
    encoded = WebPusher(subscription).encode(data, "aes128gcm")
    headers = vapid.sign({"sub": SUBJECT, "aud": push.url, "exp": int(time.time()) + 3600})
    async with httpx.AsyncClient() as client:
        response = await client.post(
            subscription["endpoint"],
            content=encoded["body"],
            headers={**headers, "TTL": "30", "Urgency": "high", "Content-Encoding": "aes128gcm"},
        )
    assert response.status_code == 201
    (record,) = push.controls.records()
    assert record.plaintext == data
    assert record.payload is None
    assert record.headers["urgency"] == "high"


def test_gone_unknown_and_invalid_subscriptions(push: WebPushEmulator, vapid: Vapid02) -> None:
    gone, invalid = push.subscribe(), push.subscribe()
    push.controls.mark([gone["endpoint"]], TokenState.UNREGISTERED)
    push.controls.mark([invalid["endpoint"]], TokenState.INVALID)
    assert _status(gone, b"x", vapid) == 410
    assert _status(invalid, b"x", vapid) == 404
    forged = {**gone, "endpoint": gone["endpoint"][:-4] + "AAAA"}
    assert _status(forged, b"x", vapid) == 404
    assert [(r.status, r.reason) for r in push.controls.records()] == [
        (410, "103"),
        (404, "102"),
        (404, "102"),
    ]


def test_error_bodies_are_the_push_services(push: WebPushEmulator, vapid: Vapid02) -> None:
    subscription = push.subscribe()
    push.controls.mark([subscription["endpoint"]], TokenState.UNREGISTERED)
    with pytest.raises(WebPushException) as raised:
        _send(subscription, b"x", vapid)
    assert raised.value.response.json() == {
        "code": 410,
        "errno": 103,
        "error": "Gone",
        "message": "Request did not validate subscription expired",
        "more_info": "https://mozilla-services.github.io/autopush-rs/errors.html",
    }


def test_a_body_over_4096_bytes_is_too_large(push: WebPushEmulator, vapid: Vapid02) -> None:
    subscription = push.subscribe()
    # 3993 bytes of plaintext is the most that fits: 86 header + 1 pad + 16 tag.
    assert _send(subscription, b"a" * 3993, vapid).status_code == 201
    assert _status(subscription, b"a" * 3994, vapid) == 413


def test_vapid_is_verified(push: WebPushEmulator, vapid: Vapid02) -> None:
    subscription = push.subscribe()
    assert _status(subscription, b"x", vapid, aud="https://elsewhere.example") == 401
    too_late = int(time.time()) + 25 * 3600
    assert _status(subscription, b"x", vapid, exp=too_late) == 401
    with pytest.raises(WebPushException) as raised:
        webpush(subscription, b"x", ttl=0)
    assert raised.value.response.status_code == 401
    bound = push.subscribe(application_server_key=_public(vapid))
    other = Vapid02()
    other.generate_keys()
    assert _status(bound, b"x", other) == 403
    assert _send(bound, b"x", vapid).status_code == 201


def test_faults_answer_429_with_retry_after(push: WebPushEmulator, vapid: Vapid02) -> None:
    subscription = push.subscribe()
    push.controls.fail(429, count=1, retry_after=7)
    with pytest.raises(WebPushException) as raised:
        _send(subscription, b"x", vapid)
    assert raised.value.response.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "7"
    assert _send(subscription, b"x", vapid).status_code == 201


def test_latency_slows_each_answer(push: WebPushEmulator, vapid: Vapid02) -> None:
    subscription = push.subscribe()
    push.controls.slow_down(0.3)
    started = time.monotonic()
    _send(subscription, b"x", vapid)
    assert time.monotonic() - started >= 0.3


def test_a_restarted_emulator_with_the_same_secret_still_decrypts(vapid: Vapid02) -> None:
    first = WebPushEmulator(subscription_secret=b"s" * 32)
    with EmulatorThread(first):
        subscription = first.subscribe()
        port = int(first.url.rsplit(":", 1)[1])
    second = WebPushEmulator(subscription_secret=b"s" * 32)
    with EmulatorThread(second, ports=[port]):
        assert _send(subscription, b"still here", vapid).status_code == 201
        assert [r.plaintext for r in second.controls.records()] == [b"still here"]


async def test_the_control_api(push: WebPushEmulator, vapid: Vapid02) -> None:
    async with httpx.AsyncClient(base_url=push.url) as control:
        created = await control.post("/_emulator/subscriptions", json={})
        assert created.status_code == 201
        subscription = created.json()
        assert set(subscription["keys"]) == {"p256dh", "auth"}
        await control.post("/_emulator/latency", json={"seconds": 0})
        async with httpx.AsyncClient() as client:
            encoded = WebPusher(subscription).encode(b"hello", "aes128gcm")
            headers = vapid.sign({"sub": SUBJECT, "aud": push.url, "exp": int(time.time()) + 60})
            answer = await client.post(
                subscription["endpoint"],
                content=encoded["body"],
                headers={**headers, "TTL": "0", "Content-Encoding": "aes128gcm"},
            )
            assert answer.status_code == 201
        (record,) = (await control.get("/_emulator/records")).json()["records"]
        assert base64.b64decode(record["plaintext"]) == b"hello"
        assert record["target"] == subscription["endpoint"]
        assert (await control.delete("/_emulator/records")).json() == {"cleared": 1}
        assert (await control.get("/_emulator/records")).json() == {"records": []}
        missing = await control.post("/_emulator/nothing", json={})
        assert missing.status_code == 404


def _post(subscription: dict[str, Any], authorization: str) -> int:
    """Push to `subscription` with exactly this Authorization header."""
    body = WebPusher(subscription).encode(b"x")["body"]
    headers = {"Authorization": authorization, "TTL": "60", "Content-Encoding": "aes128gcm"}
    return httpx.post(subscription["endpoint"], content=body, headers=headers).status_code


def _vapid_header(push: WebPushEmulator, vapid: Vapid02, **claims: Any) -> str:
    header: str = vapid.sign({"sub": SUBJECT, "aud": push.url, **claims})["Authorization"]
    return header


def test_a_verified_vapid_token_still_expires(push: WebPushEmulator, vapid: Vapid02) -> None:
    subscription = push.subscribe()
    expires = int(time.time()) + 3
    header = _vapid_header(push, vapid, exp=expires)
    assert [_post(subscription, header) for _ in range(2)] == [201, 201]
    time.sleep(max(0.0, expires + 0.2 - time.time()))
    assert _post(subscription, header) == 401


def test_only_the_exact_verified_vapid_token_skips_verification(
    push: WebPushEmulator, vapid: Vapid02
) -> None:
    subscription = push.subscribe()
    good = _vapid_header(push, vapid)
    token = good.partition("t=")[2].partition(",")[0]
    forged = good.replace(token, tampered(token))
    other = Vapid02()
    other.generate_keys()
    # Signed by `vapid`, presented with another key's `k`.
    wrong_key = good.replace(good.partition("k=")[2], _public(other))
    assert [_post(subscription, h) for h in (good, forged, wrong_key, good)] == [
        201,
        401,
        401,
        201,
    ]
    # A verified token is still checked against each subscription's binding.
    bound_elsewhere = push.subscribe(application_server_key=_public(other))
    assert _post(bound_elsewhere, good) == 403
