"""Credential checks per provider (`Provider.check` and `credential_checks.check`), against
the same local FCM and APNs servers as the adapters' tests: taken, refused, no verdict."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.core.credential_checks import check, verdict
from services.core.credentials import (
    CredentialStatus,
    FCMCredentials,
    WebPushCredentials,
)
from services.core.providers.apns import CHECK_TOKEN, APNsProvider, APNSSettings
from services.core.providers.base import Result
from services.core.providers.classify import ErrorClass
from services.core.providers.fcm import CHECK_TOPIC, FCMSettings
from services.core.providers.webpush import WebPushSettings
from services.sandbox.emulators.tls import TLSFiles, certificates
from tests.unit.providers.apns_server import FakeAPNs, start_apns
from tests.unit.providers.fcm_server import Answer, FakeFCM, fcm_error, running_fcm
from tests.unit.providers.keys import vapid_pair
from tests.unit.providers.test_apns import credentials as apns_credentials

AT = datetime(2026, 12, 5, tzinfo=UTC)


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def fcm(rsa_key: rsa.RSAPrivateKey) -> Iterator[FakeFCM]:
    with running_fcm(rsa_key) as fake:
        yield fake


def fcm_settings(fcm: FakeFCM) -> dict[str, FCMSettings]:
    return {"fcm": FCMSettings(endpoint=fcm.base_url)}


async def test_fcm_takes_the_service_account_with_a_token_and_a_dry_run(fcm: FakeFCM) -> None:
    credentials = FCMCredentials(service_account=fcm.service_account())
    status = await check("fcm", credentials, fcm_settings(fcm))
    assert status.valid is True
    assert status.last_error is None
    # One OAuth token, then one validate-only send that addresses a topic, no device.
    assert len(fcm.token_requests) == 1
    assert fcm.sends == [{"message": {"topic": CHECK_TOPIC}, "validate_only": True}]
    assert fcm.paths == ["/v1/projects/pushline-test/messages:send"]


async def test_fcm_refusing_the_key_or_the_project_is_invalid(fcm: FakeFCM) -> None:
    credentials = FCMCredentials(service_account=fcm.service_account())
    fcm.token_answer = Answer(
        400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
    )
    status = await check("fcm", credentials, fcm_settings(fcm))
    assert status.valid is False
    assert status.last_error is not None
    assert status.last_error.startswith("TokenRefresh: ")
    assert "Invalid JWT Signature." in status.last_error
    assert fcm.sends == []

    fcm.token_answer = None
    fcm.answers[f"/topics/{CHECK_TOPIC}"] = [
        fcm_error(403, "PERMISSION_DENIED", message="Permission denied on the project.")
    ]
    status = await check("fcm", credentials, fcm_settings(fcm))
    assert (status.valid, status.last_error) == (
        False,
        "PERMISSION_DENIED (403): Permission denied on the project.",
    )


async def test_fcm_unavailable_or_unreachable_gives_no_verdict(fcm: FakeFCM) -> None:
    credentials = FCMCredentials(service_account=fcm.service_account())
    fcm.answers[f"/topics/{CHECK_TOPIC}"] = [fcm_error(503, "UNAVAILABLE", message="down")]
    taken = CredentialStatus(valid=True, checked_at=AT)
    status = await check("fcm", credentials, fcm_settings(fcm), taken)
    assert (status.valid, status.last_error) == (True, "UNAVAILABLE (503): down")

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    unreachable = {"fcm": FCMSettings(endpoint=f"http://127.0.0.1:{closed}")}
    status = await check("fcm", credentials, unreachable)
    assert status.valid is None
    assert status.last_error is not None
    assert status.last_error.startswith("ConnectError")


async def test_fcm_refuses_a_service_account_firebase_admin_cannot_read() -> None:
    credentials = FCMCredentials(
        service_account={
            "type": "service_account",
            "project_id": "p",
            "client_email": "a@p.iam.gserviceaccount.com",
            "private_key": "SECRET-NOT-A-KEY",
            "token_uri": "https://oauth2.googleapis.com/token",
        }
    )
    status = await check("fcm", credentials, {})
    assert status.valid is False
    assert status.last_error == "BadServiceAccount: firebase-admin refused the service account"
    assert "SECRET-NOT-A-KEY" not in status.model_dump_json()


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return certificates(tmp_path_factory.mktemp("apns-tls"))


@pytest.fixture(scope="session")
def p8() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
async def apns(p8: ec.EllipticCurvePrivateKey, tls: TLSFiles) -> AsyncIterator[FakeAPNs]:
    fake = FakeAPNs(key=p8)
    server = await start_apns(fake, tls)
    try:
        yield fake
    finally:
        server.close()
        await server.wait_closed()


def apns_settings(apns: FakeAPNs, tls: TLSFiles) -> dict[str, APNSSettings]:
    return {"apns": APNSSettings(endpoint=f"https://127.0.0.1:{apns.port}", ca_file=tls.ca_file)}


async def test_apns_past_the_jwt_and_topic_answers_bad_device_token(
    apns: FakeAPNs, p8: ec.EllipticCurvePrivateKey, tls: TLSFiles
) -> None:
    apns.answers[CHECK_TOKEN] = (400, {"reason": "BadDeviceToken"})
    provider = APNsProvider(apns_credentials(p8), apns_settings(apns, tls)["apns"])
    try:
        result = await provider.check()
    finally:
        await provider.aclose()
    assert (result.outcome, result.reason) == ("invalid_token", "BadDeviceToken")
    [request] = apns.received
    assert request.headers[":path"] == f"/3/device/{CHECK_TOKEN}"
    assert request.headers["apns-topic"] == "com.example.app"
    assert (request.headers["apns-push-type"], request.headers["apns-priority"]) == (
        "background",
        "5",
    )
    assert request.body == {"aps": {"content-available": 1}}
    assert request.jwt_claims is not None
    assert request.jwt_claims["iss"] == "TEAM123456"
    assert request.jwt_header is not None
    assert request.jwt_header["kid"] == "KEY1234567"

    status = await check("apns", apns_credentials(p8), apns_settings(apns, tls))
    assert (status.valid, status.last_error) == (True, None)


@pytest.mark.parametrize(
    ("status", "reason"),
    [(403, "InvalidProviderToken"), (403, "ExpiredProviderToken"), (400, "DeviceTokenNotForTopic")],
)
async def test_apns_refusing_the_key_or_topic_is_invalid(
    apns: FakeAPNs, p8: ec.EllipticCurvePrivateKey, tls: TLSFiles, status: int, reason: str
) -> None:
    apns.answers[CHECK_TOKEN] = (status, {"reason": reason})
    checked = await check("apns", apns_credentials(p8), apns_settings(apns, tls))
    assert (checked.valid, checked.last_error) == (False, f"{reason} ({status})")


async def test_apns_throttling_gives_no_verdict(
    apns: FakeAPNs, p8: ec.EllipticCurvePrivateKey, tls: TLSFiles
) -> None:
    apns.answers[CHECK_TOKEN] = (429, {"reason": "TooManyRequests"})
    refused = CredentialStatus(valid=False, checked_at=AT, last_error="InvalidProviderToken (403)")
    checked = await check("apns", apns_credentials(p8), apns_settings(apns, tls), refused)
    assert (checked.valid, checked.last_error) == (False, "TooManyRequests (429)")


async def test_web_push_takes_a_matching_vapid_pair_and_refuses_another() -> None:
    one, other = vapid_pair(), vapid_pair()

    def credentials(private: str, public: str) -> WebPushCredentials:
        return WebPushCredentials(
            vapid_private_key=private, vapid_public_key=public, subject="mailto:ops@example.com"
        )

    settings = {"webpush": WebPushSettings()}
    taken = await check("webpush", credentials(one.private, one.public), settings)
    assert (taken.valid, taken.last_error) == (True, None)
    refused = await check("webpush", credentials(one.private, other.public), settings)
    assert refused.valid is False
    assert refused.last_error == (
        "VapidKeyMismatch: the VAPID public key does not belong to the private key"
    )
    assert one.private not in refused.model_dump_json()


def test_the_verdict_of_each_kind_of_answer() -> None:
    refused = Result.failure("apns", ErrorClass.AUTH_CONFIG, reason="Forbidden", status=403)
    retry = Result.failure("fcm", ErrorClass.RETRYABLE, reason="INTERNAL", status=500)
    quota = Result.failure("fcm", ErrorClass.QUOTA, reason="QUOTA_EXCEEDED", status=429)
    bad_token = Result.failure("apns", ErrorClass.INVALID_TOKEN, reason="BadDeviceToken")
    taken = CredentialStatus(valid=True, checked_at=AT)
    assert verdict(Result.success("x"), None, AT) == CredentialStatus(valid=True, checked_at=AT)
    assert verdict(bad_token, None, AT).valid is True
    assert verdict(refused, taken, AT) == CredentialStatus(
        valid=False, checked_at=AT, last_error="Forbidden (403)"
    )
    # No verdict keeps the last one, and says why.
    assert verdict(retry, taken, AT) == CredentialStatus(
        valid=True, checked_at=AT, last_error="INTERNAL (500)"
    )
    assert verdict(quota, None, AT).valid is None
    # A provider that offers no check has no verdict.
    assert verdict(None, taken, AT) == CredentialStatus(valid=None, checked_at=AT)
