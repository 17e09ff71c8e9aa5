"""The admin API's view of an account's rate limits: `GET` and `PUT
/admin/v1/accounts/{account_id}/limits` (services.core.store.limits).

`PUT` replaces the account's limits: a field left out or null takes the operator's default
(`PUSHLINE_RATE_*`). Both answer what is set (`limits`) and what the account is held to
(`effective`). The ingest processes see a change within `PUSHLINE_INGEST_CACHE_SECONDS`,
the resolver at the account's next send.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.core import audit
from services.core.errors import NotFoundError
from services.core.settings import Settings
from services.core.store.limits import Limits, view
from services.ingest.access import origin
from services.ingest.auth import tenants_of
from services.ingest.bodies import answered, documented, parse
from services.ingest.refusals import Refusal


class Effective(BaseModel):
    """The limits an account is held to, defaults filled in."""

    requests_per_second: float
    requests_burst: float
    app_sends_per_second: float
    app_sends_burst: float
    notifications_per_second: float


class LimitsView(BaseModel):
    """An account's limits as set (null: the default) and as they apply."""

    account_id: str
    limits: Limits
    effective: Effective


def add_routes(router: APIRouter, guarded: list[Any], settings: Settings) -> None:
    """Mount the limits routes on the admin router, behind its `guarded` dependencies."""
    shown = answered(LimitsView, 200, "The account's limits, as set and as they apply")

    @router.get("/accounts/{account_id}/limits", dependencies=guarded, responses=shown)
    async def get_limits(account_id: str, request: Request) -> Response:
        """The account's rate limits."""
        found = await tenants_of(request).limits.get(account_id)
        if found is None:
            raise _not_found(account_id)
        return JSONResponse(view(account_id, found, settings))

    @router.put(
        "/accounts/{account_id}/limits",
        dependencies=guarded,
        openapi_extra=documented(Limits),
        responses=shown,
    )
    async def set_limits(account_id: str, request: Request) -> Response:
        """Replace the account's rate limits; a field left out or null takes the default."""
        limits = parse(Limits, await request.body())
        try:
            await tenants_of(request).limits.set(account_id, limits)
        except NotFoundError as exc:
            raise _not_found(account_id) from exc
        audit.record(
            "account_limits_changed", via="admin_api", account_id=account_id, **origin(request)
        )
        return JSONResponse(view(account_id, limits, settings))


def _not_found(account_id: str) -> Refusal:
    return Refusal(404, f"account {account_id} not found")
