"""RFC 9457 problem details, the error shape of the native and admin APIs."""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.ingest.bodies import Problem, error_responses

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


def problem(status: int, detail: str, problems: Sequence[Problem] = ()) -> JSONResponse:
    """A problem+json response; `errors` lists each field's problem when there are any."""
    body: dict[str, object] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if problems:
        body["errors"] = [{"field": p.field, "message": p.message} for p in problems]
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def invalid(problems: Sequence[Problem]) -> JSONResponse:
    """400 for a body that failed validation."""
    return problem(400, "; ".join(str(p) for p in problems), problems)
