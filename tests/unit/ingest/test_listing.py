"""Cursors of the listings: opaque, round-trip, and refused when no page gave them; a
device shown without its token."""

from __future__ import annotations

import pytest

from services.core.events import utc_now
from services.core.tokens import hash_token
from services.ingest.listing import decode_cursor, device_view, encode_cursor
from services.ingest.refusals import Invalid


@pytest.mark.parametrize("last", ["app-1:" + "ab" * 32, "7f0c-uuid", "ü/:+="])
def test_a_cursor_names_the_last_id_in_url_safe_characters(last: str) -> None:
    cursor = encode_cursor(last)
    assert cursor.replace("-", "").replace("_", "").isalnum()
    assert decode_cursor(cursor) == last


@pytest.mark.parametrize("cursor", ["", "%%%", "_w", "a b", "YQ=x"])
def test_a_cursor_no_page_gave_is_refused(cursor: str) -> None:
    with pytest.raises(Invalid) as refused:
        decode_cursor(cursor)
    assert [problem.field for problem in refused.value.problems] == ["cursor"]


def test_no_cursor_is_the_first_page() -> None:
    assert decode_cursor(None) is None


def test_a_device_is_shown_by_its_token_hash_never_its_token() -> None:
    token = "fcm/secret:token"
    shown = device_view(
        {
            "_id": f"app-1:{hash_token(token)}",
            "token": token,
            "token_hash": hash_token(token),
            "subscription": {"endpoint": "https://push.example/x", "keys": {"auth": "k"}},
            "platform": "android",
            "status": "active",
            "created": utc_now(),
        }
    )
    assert shown["id"] == hash_token(token)
    assert token not in str(shown)
    assert "push.example" not in str(shown)
    assert shown["invalid_at"] is None
