"""Key material for provider tests, generated per test session."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_public(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


@dataclass(frozen=True)
class VapidPair:
    private: str  # raw 32-byte scalar, base64url, as web-push tooling prints it
    public: str  # uncompressed point, base64url


def vapid_pair() -> VapidPair:
    key = ec.generate_private_key(ec.SECP256R1())
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    return VapidPair(private=b64url(scalar), public=b64url(raw_public(key)))


@dataclass(frozen=True)
class Subscriber:
    """A browser's push subscription keys (what `PushSubscription.toJSON()` gives)."""

    key: ec.EllipticCurvePrivateKey
    auth: bytes

    @property
    def p256dh(self) -> str:
        return b64url(raw_public(self.key))

    @property
    def auth_b64(self) -> str:
        return b64url(self.auth)


def subscriber() -> Subscriber:
    return Subscriber(key=ec.generate_private_key(ec.SECP256R1()), auth=os.urandom(16))
