"""RFC 9457 problem details, the error shape of the native and admin APIs and of any
path outside the dialects."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.ingest.bodies import error_responses
from services.ingest.refusals import Refusal

MEDIA_TYPE = "application/problem+json"


class FieldProblem(BaseModel):
    """One field's problem in a 400."""

    field: str
    message: str


class ProblemDetails(BaseModel):
    """RFC 9457 problem details, as the native and admin APIs answer errors."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] | None = None


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of a native or admin route."""
    return error_responses(ProblemDetails, statuses, MEDIA_TYPE)


def refused(path: str, refusal: Refusal) -> JSONResponse:
    """A refusal as problem+json; `errors` lists each field's problem when there are any."""
    body: dict[str, object] = {
        "type": "about:blank",
        "title": HTTPStatus(refusal.status).phrase,
        "status": refusal.status,
        "detail": refusal.message,
    }
    if refusal.problems:
        body["errors"] = [{"field": p.field, "message": p.message} for p in refusal.problems]
    headers = {"WWW-Authenticate": "Bearer"} if refusal.status == 401 else None
    return JSONResponse(body, status_code=refusal.status, media_type=MEDIA_TYPE, headers=headers)
