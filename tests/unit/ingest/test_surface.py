"""What the ingest answers outside its routes: no such path, a wrong method, a parameter
FastAPI rejects (each in the shape of the dialect the path belongs to, never FastAPI's
`{"detail": ...}`), and `/docs`, served whole from the ingest."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from services.core.settings import Settings
from services.ingest.app import create_admin_app, create_app
from tests import dialects

CIJ = "/api/v1.0/orgs/o-1/pushdeviceregistration"


def ingest() -> FastAPI:
    """The public app without its lifespan: nothing here reaches Kafka or the store."""
    return create_app(Settings(admin_token=SecretStr("t")))


def admin_app() -> FastAPI:
    """The admin app without its lifespan."""
    return create_admin_app(Settings(admin_token=SecretStr("t")))


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=ingest())
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:
        yield http


@pytest.fixture
async def admin() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=admin_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as http:
        yield http


@pytest.mark.parametrize(
    ("method", "path", "status", "allow", "shape"),
    [
        ("GET", "/nothing/here", 404, None, dialects.problem_json),
        ("GET", "/v1/nothing", 404, None, dialects.problem_json),
        ("PUT", "/v1/apps/a-1/devices", 405, "GET, POST", dialects.problem_json),
        # The admin API is the admin listener's only, whatever the method.
        ("GET", "/admin/v1/apps/a-1", 404, None, dialects.problem_json),
        ("POST", "/admin/v1/accounts", 404, None, dialects.problem_json),
        ("PUT", "/admin/v1/apps/a-1", 404, None, dialects.problem_json),
        ("GET", "/messages/android", 405, "POST", dialects.routee),
        ("GET", "/messages/android/more", 404, None, dialects.routee),
        ("GET", f"{CIJ}/devices", 405, "POST", dialects.cij),
        ("POST", f"{CIJ}/nothing", 404, None, dialects.cij),
        ("GET", "/v1/association/create", 405, "POST", dialects.masiv),
        ("POST", "/v1/notification/nothing", 404, None, dialects.masiv),
        ("DELETE", "/healthz", 405, "GET", dialects.problem_json),
        ("GET", "/docs/assets/nothing.js", 404, None, dialects.problem_json),
    ],
)
async def test_no_route_answers_in_the_dialects_shape(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    status: int,
    allow: str | None,
    shape: dialects.Shape,
) -> None:
    response = await client.request(method, path)
    assert response.status_code == status
    shape(response, path)
    assert response.headers.get("allow") == allow


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("PUT", "/admin/v1/apps/a-1", 405, "GET, PATCH"),
        ("GET", "/admin/v1/nothing", 404, None),
        ("POST", "/v1/notifications", 404, None),
        ("GET", "/readyz", 404, None),
        ("GET", "/metrics", 404, None),
        ("DELETE", "/healthz", 405, "GET"),
    ],
)
async def test_the_admin_listener_answers_no_route_in_problem_json(
    admin: httpx.AsyncClient, method: str, path: str, status: int, allow: str | None
) -> None:
    response = await admin.request(method, path)
    assert response.status_code == status
    dialects.problem_json(response, path)
    assert response.headers.get("allow") == allow


async def test_the_admin_listener_has_its_own_health(admin: httpx.AsyncClient) -> None:
    response = await admin.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_a_parameter_fastapi_rejects_is_the_dialects_400() -> None:
    app = ingest()

    @app.get("/v1/counted/{count}")
    async def counted(count: int) -> dict[str, int]:
        return {"count": count}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:
        response = await http.get("/v1/counted/many")
    assert response.status_code == 400
    dialects.problem_json(response, "/v1/counted/many")
    assert "count" in response.json()["detail"]


@pytest.mark.parametrize("listener", [ingest, admin_app])
async def test_docs_load_every_asset_from_the_ingest(listener: Callable[[], FastAPI]) -> None:
    transport = httpx.ASGITransport(app=listener())
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
        await _docs_load_every_asset(client)


async def _docs_load_every_asset(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    # No URL of another host (`https://...` or `//host/...`).
    assert "//" not in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(assets) == 3  # the script, the style sheet, the icon
    for asset in assets:
        answer = await client.get(asset)
        assert answer.status_code == 200, asset
        assert answer.content
    assert "url: '/openapi.json'" in page.text
    assert (await client.get("/openapi.json")).status_code == 200


def test_the_document_declares_each_apis_credential_and_no_422_that_never_happens() -> None:
    document = ingest().openapi()
    schemes = document["components"]["securitySchemes"]
    assert schemes == {
        "apiKey": {
            "type": "http",
            "scheme": "bearer",
            "description": schemes["apiKey"]["description"],
        },
    }
    admin = admin_app().openapi()
    assert admin["components"]["securitySchemes"] == {
        "adminToken": {
            "type": "http",
            "scheme": "bearer",
            "description": "The ingest's `PUSHLINE_ADMIN_TOKEN`.",
        },
    }
    for path, operations in admin["paths"].items():
        for operation in operations.values():
            declared = operation.get("security")
            assert declared == (None if path == "/healthz" else [{"adminToken": []}]), path
    assert "HTTPValidationError" not in str(admin)
    security = {
        (method, path): operation.get("security")
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    for (_, path), declared in security.items():
        if path.startswith(("/v1/", "/messages/")):
            assert declared == [{"apiKey": []}], path
        else:  # Customer Insights (the token is in the body), health and readiness
            assert declared is None, path
    # The one 422 there is: an Idempotency-Key reused for another body.
    unprocessable = [
        (method, path)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if "422" in operation["responses"]
    ]
    assert unprocessable == [("post", "/v1/notifications")]
    assert "HTTPValidationError" not in str(document)
    assert document["paths"]["/readyz"]["get"]["responses"].keys() == {"200", "503"}
