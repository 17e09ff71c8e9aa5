"""Web Push emulator: a push service (RFC 8030) that checks VAPID (RFC 8292) and decrypts
each aes128gcm body (RFC 8291, RFC 8188) with the subscriber's keys.

It mints subscriptions as a browser would (endpoint, p256dh, auth). A subscription's keys are
derived from the emulator's secret and the subscription id, so no table grows and a
restarted emulator with the same secret still decrypts for the subscriptions it handed out.
Error bodies are those of Mozilla's push service (autopush):
https://mozilla-services.github.io/autopush-rs/errors.html
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

import http_ece
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict

from services.sandbox.emulators.emulator import ControlRoute
from services.sandbox.emulators.httpserver import HTTPEmulator
from services.sandbox.emulators.keys import secret
from services.sandbox.emulators.state import RECORD_LIMIT, Record, TokenState
from services.sandbox.emulators.verified import VerifiedTokens

# The largest body a push service must accept (RFC 8030 section 7.2).
MAX_BODY = 4096
# RFC 8292: the JWT's `exp` must be no more than 24 hours ahead.
VAPID_MAX_LIFETIME = 24 * 3600
MORE_INFO = "https://mozilla-services.github.io/autopush-rs/errors.html"
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_NONCE, _BINDING, _MAC = 16, 8, 10
_RECORDED_HEADERS = ("ttl", "urgency", "topic", "content-encoding")


def b64url(data: bytes) -> str:
    """Base64url without padding, as Web Push writes keys."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _raw_public(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


@functools.lru_cache(maxsize=4096)
def _subscription_keys(
    subscription_secret: bytes, seed: bytes
) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A subscription's private key and auth secret. Derived, not stored; kept for the
    subscriptions in use, since deriving the key costs as much as decrypting a body."""
    wide = hmac.new(subscription_secret, b"p256dh" + seed, hashlib.sha512).digest()
    scalar = int.from_bytes(wide, "big") % (_P256_ORDER - 1) + 1
    auth = hmac.new(subscription_secret, b"auth" + seed, hashlib.sha256).digest()[:16]
    return ec.derive_private_key(scalar, ec.SECP256R1()), auth


class _RefusalError(Exception):
    def __init__(self, code: int, errno: int, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.code = code
        self.errno = errno
        self.message = message
        self.retry_after = retry_after


_ERROR_NAMES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    410: "Gone",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class _Subscribe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    application_server_key: str | None = None


class WebPushEmulator(HTTPEmulator):
    """A push service handing out endpoints `{url}/push/{id}`.

    Marks (`controls.mark`) and record targets use the subscription's endpoint URL, the
    token a Web Push device is known by.
    """

    provider = "webpush"

    # (errno, message) of each injected fault.
    FAULTS: ClassVar[dict[int, tuple[int, str]]] = {
        429: (201, "Use exponential back-off for retries"),
        500: (999, "An unknown error occurred"),
        503: (201, "Use exponential back-off for retries"),
    }

    def __init__(
        self, *, subscription_secret: bytes | None = None, record_limit: int = RECORD_LIMIT
    ) -> None:
        super().__init__(record_limit=record_limit)
        self._secret = subscription_secret or secret()
        # VAPID tokens verified once each: clients reuse one until near its `exp`.
        self._verified = VerifiedTokens()

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/push/{id}", self._push)]

    def client_config(self) -> dict[str, Any]:
        return {"endpoint": self.url, "subscribe": f"{self.url}/_emulator/subscriptions"}

    def extra_control_routes(self) -> Mapping[tuple[str, str], ControlRoute]:
        def subscribe(document: Any) -> tuple[int, Any]:
            body = _Subscribe.model_validate(document or {})
            return 201, self.subscribe(body.application_server_key)

        return {("POST", "subscriptions"): subscribe}

    def subscribe(self, application_server_key: str | None = None) -> dict[str, Any]:
        """A new subscription as `PushSubscription.toJSON()` gives it.

        With `application_server_key` (the VAPID public key, base64url), only pushes signed
        by that key are accepted, as browsers bind subscriptions.
        Raises ValueError for a key that is not a P-256 point.
        """
        binding = bytes(_BINDING)
        if application_server_key is not None:
            raw = _unb64url(application_server_key)
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
            binding = hashlib.sha256(raw).digest()[:_BINDING]
        seed = secrets.token_bytes(_NONCE) + binding
        subscription_id = b64url(seed + self._mac(seed))
        private, auth = _subscription_keys(self._secret, seed)
        return {
            "endpoint": f"{self.url}/push/{subscription_id}",
            "expirationTime": None,
            "keys": {"p256dh": b64url(_raw_public(private.public_key())), "auth": b64url(auth)},
        }

    def _mac(self, seed: bytes) -> bytes:
        return hmac.new(self._secret, b"id" + seed, hashlib.sha256).digest()[:_MAC]

    def _seed(self, subscription_id: str) -> bytes | None:
        """The seed behind a subscription id this emulator minted, else None."""
        try:
            raw = _unb64url(subscription_id)
        except ValueError:
            return None
        seed, mac = raw[: _NONCE + _BINDING], raw[_NONCE + _BINDING :]
        if len(raw) != _NONCE + _BINDING + _MAC or not hmac.compare_digest(mac, self._mac(seed)):
            return None
        return seed

    async def _push(self, request: web.Request) -> web.Response:
        body = await request.read()
        await self.pause()
        endpoint = f"{self.url}/push/{request.match_info['id']}"
        plaintext: bytes | None = None
        reason: str | None
        try:
            plaintext = self._accept(request, body)
        except _RefusalError as refusal:
            status, reason = refusal.code, str(refusal.errno)
            headers = {}
            if refusal.retry_after is not None:
                headers["Retry-After"] = str(refusal.retry_after)
            response = web.json_response(
                {
                    "code": refusal.code,
                    "errno": refusal.errno,
                    "error": _ERROR_NAMES[refusal.code],
                    "message": refusal.message,
                    "more_info": MORE_INFO,
                },
                status=refusal.code,
                headers=headers,
            )
        else:
            status, reason = 201, None
            response = web.Response(
                status=201,
                headers={
                    "Location": f"{self.url}/m/{uuid.uuid4().hex}",
                    "TTL": request.headers.get("TTL", "0"),
                },
            )
        self.controls.add(
            Record(
                provider=self.provider,
                target=endpoint,
                status=status,
                reason=reason,
                headers={k: request.headers[k] for k in _RECORDED_HEADERS if k in request.headers},
                payload=_json_or_none(plaintext),
                received_at=time.time(),
                plaintext=plaintext,
            )
        )
        return response

    def _accept(self, request: web.Request, body: bytes) -> bytes:
        """The decrypted plaintext; raises _RefusalError with the push service's answer."""
        seed = self._seed(request.match_info["id"])
        if seed is None:
            raise _RefusalError(404, 102, "Request did not validate invalid token")
        state, _ = self.controls.token_state(f"{self.url}/push/{request.match_info['id']}")
        if state is TokenState.UNREGISTERED:
            raise _RefusalError(410, 103, "Request did not validate subscription expired")
        if state is TokenState.INVALID:
            raise _RefusalError(404, 102, "Request did not validate invalid token")
        self._check_vapid(request.headers.get("Authorization", ""), seed[_NONCE:])
        ttl = request.headers.get("TTL")
        if ttl is None:
            raise _RefusalError(400, 111, "Missing TTL header")
        if not ttl.isdigit():
            raise _RefusalError(400, 112, "Invalid TTL header")
        if len(body) > MAX_BODY:
            raise _RefusalError(413, 104, "Data payload too large")
        fault = self.controls.draw_fault()
        if fault is not None:
            errno, message = self.FAULTS[fault.status]
            raise _RefusalError(fault.status, errno, message, fault.retry_after)
        if not body:
            return b""
        if request.headers.get("Content-Encoding", "").lower() != "aes128gcm":
            raise _RefusalError(400, 110, "Invalid Content-Encoding; expected aes128gcm")
        private, auth = _subscription_keys(self._secret, seed)
        try:
            return bytes(
                http_ece.decrypt(body, private_key=private, auth_secret=auth, version="aes128gcm")
            )
        except Exception as exc:
            # http_ece raises bare ECE or cryptography errors for a body it cannot open.
            raise _RefusalError(
                400, 110, f"Invalid crypto: the body does not decrypt ({exc})"
            ) from exc

    def _check_vapid(self, authorization: str, binding: bytes) -> None:
        scheme, _, rest = authorization.partition(" ")
        if scheme.lower() != "vapid":
            raise _RefusalError(401, 109, "Missing or invalid VAPID Authorization header")
        now = time.time()
        # Keyed on what the token is checked against: its audience, and `t` and `k` as sent.
        key = f"{self.url} {rest}"
        verified = self._verified.get(key, now)
        if verified is None:
            verified = self._verify_vapid(rest)
            self._verified.put(key, verified, expires=verified["exp"])
        if verified["exp"] > now + VAPID_MAX_LIFETIME:
            raise _RefusalError(401, 109, "Invalid VAPID credentials: exp more than 24 hours ahead")
        if binding != bytes(_BINDING) and verified["binding"] != binding:
            raise _RefusalError(403, 109, "VAPID key does not match the subscription's key")

    def _verify_vapid(self, parameters: str) -> dict[str, Any]:
        """{"exp", "binding"} of a VAPID `t=..., k=...` whose JWT is signed with `k` for this
        push service; raises _RefusalError."""
        parts = dict(
            part.strip().split("=", 1) for part in parameters.split(",") if "=" in part.strip()
        )
        try:
            raw_key = _unb64url(parts["k"])
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw_key)
            claims = jwt.decode(
                parts["t"],
                public,
                algorithms=["ES256"],
                audience=self.url,
                options={"require": ["aud", "exp", "sub"]},
            )
            expires = int(claims["exp"])
        except (KeyError, TypeError, ValueError, jwt.PyJWTError) as exc:
            raise _RefusalError(401, 109, f"Invalid VAPID credentials: {exc}") from exc
        if not str(claims["sub"]).startswith(("mailto:", "https:")):
            raise _RefusalError(
                401, 109, "Invalid VAPID credentials: sub must be mailto: or https:"
            )
        return {"exp": expires, "binding": hashlib.sha256(raw_key).digest()[:_BINDING]}


def _json_or_none(plaintext: bytes | None) -> Any:
    if not plaintext:
        return None
    try:
        return json.loads(plaintext)
    except ValueError:
        return None
