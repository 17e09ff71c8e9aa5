"""The cache of verified provider tokens."""

from __future__ import annotations

from services.sandbox.emulators.verified import VerifiedTokens


def test_a_verified_token_is_found_until_it_expires() -> None:
    verified = VerifiedTokens()
    verified.put("token", {"iat": 1_000}, expires=4_600.0)
    assert verified.get("token", 4_599.9) == {"iat": 1_000}
    assert verified.get("token", 4_600.0) is None
    # Gone, not only hidden: a clock that goes back does not bring it back.
    assert verified.get("token", 1_000.0) is None
    assert len(verified) == 0


def test_only_the_exact_text_is_found() -> None:
    verified = VerifiedTokens()
    verified.put("header.claims.signature", {"iat": 1}, expires=10.0)
    assert verified.get("header.claims.signaturE", 0.0) is None
    assert verified.get("header.claims.signature ", 0.0) is None


def test_the_least_recently_used_token_goes_when_full() -> None:
    verified = VerifiedTokens(capacity=2)
    verified.put("a", {}, expires=10.0)
    verified.put("b", {}, expires=10.0)
    assert verified.get("a", 0.0) == {}
    verified.put("c", {}, expires=10.0)
    assert verified.get("b", 0.0) is None
    assert verified.get("a", 0.0) == {}
    assert verified.get("c", 0.0) == {}
    assert len(verified) == 2
