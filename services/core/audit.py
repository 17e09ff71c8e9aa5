"""The audit log: one JSON line for every administrative action (an account created, an API
key issued, revoked or rotated, an account's rate limits changed, an app created or changed,
provider credentials changed) and for every refused credential.

The lines go to this module's logger with an `audit` field naming the action, so that an
operator can route them apart from the other logs and keep them longer. They say who and
what (ids, the client's address, names of fields and providers), never a key, a token or a
secret. The admin API and the admin CLI both write them here.
"""

from __future__ import annotations

import logging
from typing import Literal

from services.core.providers import registry

log = logging.getLogger(__name__)

Action = Literal[
    "account_created",
    "api_key_issued",
    "api_key_revoked",
    "api_key_rotated",
    "app_created",
    "app_changed",
    "credentials_changed",
    "api_key_refused",
    "admin_token_refused",
    "account_limits_changed",
]
# How the action came: `admin_api`, `admin_cli`, or `api` (an API key of a dialect).
Via = Literal["admin_api", "admin_cli", "api"]


def record(action: Action, *, via: Via, **context: str | list[str] | None) -> None:
    """Write the audit line of `action`; `context` names who and what, never a secret.

    A refused credential is a warning: a run of them is someone guessing.
    """
    level = logging.WARNING if action.endswith("_refused") else logging.INFO
    known = {name: value for name, value in context.items() if value is not None}
    log.log(level, "audit: %s", action, extra={"audit": action, "via": via, **known})


def _providers_in(fields: set[str]) -> list[str]:
    """The providers whose credentials a create or change of an app with `fields` sets."""
    # An app's fields named after a provider hold its secrets: given (or set to null),
    # they change them.
    return sorted(fields & set(registry.names()))


def app_created(
    fields: set[str], *, via: Via, account_id: str, app_id: str, **context: str | None
) -> None:
    """The audit line of a new app given `fields`, naming the providers it has credentials
    for."""
    record(
        "app_created",
        via=via,
        account_id=account_id,
        app_id=app_id,
        providers=_providers_in(fields),
        **context,
    )


def app_changed(
    fields: set[str], *, via: Via, account_id: str, app_id: str, **context: str | None
) -> None:
    """The audit lines of an app change: `app_changed` naming the fields, and
    `credentials_changed` naming the providers when the change touched their secrets."""
    ids = {"account_id": account_id, "app_id": app_id, **context}
    record("app_changed", via=via, fields=sorted(fields), **ids)
    if providers := _providers_in(fields):
        record("credentials_changed", via=via, providers=providers, **ids)
