"""Provider tokens whose signature an emulator has already verified, by their exact text.

Apple asks providers to sign one token and reuse it for up to an hour, and a VAPID JWT is
reused by a push service's clients until near its `exp`, so a server sees few distinct tokens
and verifies each once (an ES256 verification costs about as much as the rest of a request).
Only tokens that passed verification are kept, so a forged, tampered or wrong-key token is
never found here and is verified, and refused, every time. Each entry ends when its token
does; the checks that depend on the current time are still made by the caller on every
request.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

# Distinct live tokens a busy emulator sees: one per signing key and hour (APNs), one per
# application server key and push service (VAPID). Far more than that is a client that
# signs per request, which then simply pays the verification each time.
CAPACITY = 1024


class VerifiedTokens:
    """A bounded map from a token's exact text to its verified claims, dropping the least
    recently used entry when full and an entry whose token has expired when it is read.

    Not thread-safe: an emulator reads and writes it from its own event loop.
    """

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    def get(self, token: str, now: float) -> dict[str, Any] | None:
        """The claims `token` was verified with, or None when it was not or has expired."""
        entry = self._entries.get(token)
        if entry is None:
            return None
        expires, claims = entry
        if now >= expires:
            del self._entries[token]
            return None
        self._entries.move_to_end(token)
        return claims

    def put(self, token: str, claims: dict[str, Any], expires: float) -> None:
        """Remember that `token` verified, with `claims`, until `expires` (epoch seconds)."""
        self._entries[token] = (expires, claims)
        self._entries.move_to_end(token)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
