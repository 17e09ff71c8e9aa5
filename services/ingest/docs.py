"""The ingest's OpenAPI document and its `/docs` page.

The document declares how each API authenticates (so that "Try it out" can send a key) and
lists only answers the ingest gives. `/docs` is Swagger UI served whole from this process,
with the assets of the `swagger-ui-bundle-v2` package, so it works on a machine without
internet access (FastAPI's own page loads them from a CDN).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPBearer
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

OPENAPI = "/openapi.json"
ASSETS = "/docs/assets"

# Declarations for the document only: each route checks the credential itself, in its
# dialect's words, so these never refuse a request.
API_KEY = HTTPBearer(
    scheme_name="apiKey",
    description=(
        "An account's API key (`pushline admin` or the admin API issue them): a secret key"
        " may do everything; a publishable key registers devices, cleans them up and reports"
        " interaction events for the apps it names, and is answered 403 for anything else."
    ),
    auto_error=False,
)
ADMIN_TOKEN = HTTPBearer(
    scheme_name="adminToken", description="The ingest's `PUSHLINE_ADMIN_TOKEN`.", auto_error=False
)

# FastAPI's answer to parameters it validates itself, which the ingest answers in each
# dialect's 400 instead.
_VALIDATION = ("HTTPValidationError", "ValidationError")


class Ingest(FastAPI):
    """FastAPI whose OpenAPI document lists none of FastAPI's own 422s: the ingest answers
    those as the dialect's 400. A 422 a route declares itself (problem+json) stays."""

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI document, without FastAPI's 422 answers and their schemas."""
        document = super().openapi()
        for operation in _operations(document.get("paths", {})):
            responses = operation.get("responses", {})
            if "HTTPValidationError" in str(responses.get("422", "")):
                del responses["422"]
        schemas = document.get("components", {}).get("schemas", {})
        for name in _VALIDATION:
            schemas.pop(name, None)
        return document


def _operations(paths: dict[str, Any]) -> list[dict[str, Any]]:
    """Every operation of `paths`, and of the callbacks they declare (the calls Pushline
    makes, whose receiver's answers FastAPI documents as if they were routes of ours)."""
    found = []
    for operations in paths.values():
        for operation in operations.values():
            found.append(operation)
            for callback in operation.get("callbacks", {}).values():
                found.extend(_operations(callback))
    return found


def serve(app: FastAPI) -> None:
    """Add `/docs`, Swagger UI over the app's document, and its assets under `ASSETS`."""
    app.mount(ASSETS, StaticFiles(directory=swagger_ui_path), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=OPENAPI,
            title=f"{app.title} - API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )
