"""What a key may do, from its kind, apps and revocation time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.core.store.keys import ApiKey, KeyKind

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def key(kind: KeyKind, apps: tuple[str, ...] = (), revoked_at: datetime | None = None) -> ApiKey:
    return ApiKey(
        id="key_1",
        account_id="acme",
        name="k",
        kind=kind,
        apps=apps,
        created_at=NOW,
        revoked_at=revoked_at,
    )


def test_a_secret_key_acts_for_every_app_and_for_none_in_particular() -> None:
    secret = key("secret")
    assert secret.permits("any-app")
    assert secret.permits(None)


def test_a_publishable_key_acts_for_the_apps_it_names_only() -> None:
    publishable = key("publishable", ("a", "b"))
    assert publishable.permits("a")
    assert publishable.permits("b")
    assert not publishable.permits("c")
    # An account-wide notification belongs to no app the key names.
    assert not publishable.permits(None)


def test_a_key_is_refused_from_its_revocation_time_on() -> None:
    assert not key("secret").revoked(NOW)
    ahead = key("secret", revoked_at=NOW + timedelta(seconds=1))
    assert not ahead.revoked(NOW)
    assert ahead.revoked(NOW + timedelta(seconds=1))
    assert key("secret", revoked_at=NOW).revoked(NOW)
