from __future__ import annotations

from pydantic import SecretStr

from services.core.settings import Settings
from services.ingest.app import create_app


def test_every_body_taking_route_documents_its_body() -> None:
    schema = create_app(Settings(admin_token=SecretStr("t"))).openapi()
    bodies = {
        (method, path): operation["requestBody"]
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    }
    body_less = {("post", "/admin/v1/accounts/{account_id}/api-keys")}
    expected = {
        (method, path)
        for path, operations in schema["paths"].items()
        for method in operations
        if method in ("post", "patch")
    } - body_less
    assert set(bodies) == expected
    routee = schema["paths"]["/messages/{device_type}"]["post"]["requestBody"]
    properties = routee["content"]["application/json"]["schema"]["properties"]
    assert set(properties) == {"routeeContactId", "token", "implementationId"}
    # References would point into $defs that OpenAPI does not have.
    assert "$ref" not in str(bodies)


def test_admin_api_is_absent_without_an_admin_token() -> None:
    paths = create_app(Settings()).openapi()["paths"]
    assert not [path for path in paths if path.startswith("/admin")]
