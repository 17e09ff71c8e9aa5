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


def test_a_send_documents_its_callback_and_what_the_callback_receives() -> None:
    schema = create_app(Settings()).openapi()
    send = schema["paths"]["/v1/notifications"]["post"]
    properties = send["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert {"callback_url", "callback_events"} <= set(properties)
    (callback,) = send["callbacks"].values()
    posted = callback["{$request.body#/callback_url}"]["post"]
    body = posted["requestBody"]["content"]["application/json"]["schema"]
    assert {ref["$ref"] for ref in body["anyOf"]} == {
        "#/components/schemas/SendEnded",
        "#/components/schemas/DeviceEvents",
    }
    assert set(posted["responses"]) == {"200"}
    ended = schema["components"]["schemas"]["SendEnded"]["properties"]
    assert {"state", "counters", "signature"} <= set(ended)
