"""Device token identity: the hash that stands for a token in keys, logs and indexes."""

from __future__ import annotations

import hashlib


def hash_token(token: str) -> str:
    """SHA-256 of the token (for Web Push, of the subscription endpoint), hex encoded."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def redact(token: str) -> str:
    """What a log line may show of a token: a short prefix of its hash."""
    return "tok:" + hash_token(token)[:12]
