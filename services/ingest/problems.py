"""RFC 9457 problem details, the error shape of the native and admin APIs."""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus

from fastapi.responses import JSONResponse

from services.ingest.bodies import Problem

MEDIA_TYPE = "application/problem+json"


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
