from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from services.core.settings import Settings
from services.ingest.app import create_admin_app, create_app


@pytest.mark.parametrize("listener", [create_app, create_admin_app])
def test_every_body_taking_route_documents_its_body(
    listener: Callable[[Settings], FastAPI],
) -> None:
    schema = listener(Settings(admin_token=SecretStr("t"))).openapi()
    bodies = {
        (method, path): operation["requestBody"]
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    }
    body_less = {("post", "/admin/v1/accounts/{account_id}/api-keys/{key_id}/revoke")}
    expected = {
        (method, path)
        for path, operations in schema["paths"].items()
        for method in operations
        if method in ("post", "put", "patch")
    } - body_less
    assert bodies
    assert set(bodies) == expected
    # References would point into $defs that OpenAPI does not have.
    assert "$ref" not in str(bodies)
    # Issuing and rotating a key take a body, and do without one.
    optional = {path for (_, path), body in bodies.items() if not body["required"]}
    assert optional == (
        {
            "/admin/v1/accounts/{account_id}/api-keys",
            "/admin/v1/accounts/{account_id}/api-keys/{key_id}/rotate",
        }
        if listener is create_admin_app
        else set()
    )


def test_the_native_bodies_document_their_fields() -> None:
    schema = create_app(Settings()).openapi()
    routee = schema["paths"]["/messages/{device_type}"]["post"]["requestBody"]
    properties = routee["content"]["application/json"]["schema"]["properties"]
    assert set(properties) == {"routeeContactId", "token", "implementationId"}


def test_each_listener_documents_its_own_paths_only() -> None:
    settings = Settings(admin_token=SecretStr("t"))
    public = create_app(settings).openapi()
    assert public["info"]["title"] == "Pushline ingest"
    assert not [path for path in public["paths"] if path.startswith("/admin")]
    admin = create_admin_app(settings).openapi()
    assert admin["info"]["title"] == "Pushline admin"
    assert set(admin["paths"]) == {
        "/healthz",
        "/admin/v1/accounts",
        "/admin/v1/accounts/{account_id}/api-keys",
        "/admin/v1/accounts/{account_id}/api-keys/{key_id}/revoke",
        "/admin/v1/accounts/{account_id}/api-keys/{key_id}/rotate",
        "/admin/v1/accounts/{account_id}/limits",
        "/admin/v1/apps",
        "/admin/v1/apps/{app_id}",
    }


def test_admin_api_is_absent_without_an_admin_token() -> None:
    paths = create_admin_app(Settings()).openapi()["paths"]
    assert list(paths) == ["/healthz"]


def test_the_send_documents_the_message_options_and_overrides_by_the_providers_names() -> None:
    schema = create_app(Settings()).openapi()
    body = schema["paths"]["/v1/notifications"]["post"]["requestBody"]
    options = body["content"]["application/json"]["schema"]["properties"]["options"]
    properties = options["properties"]
    assert {"click_url", "tag", "title_loc_key", "body_loc_args"} <= set(properties)

    def fields(option: str, *path: str) -> set[str]:
        node = properties[option]
        for part in path:
            [node] = [each for each in node["anyOf"] if each.get("type") != "null"]
            node = node["properties"][part]
        [node] = [each for each in node["anyOf"] if each.get("type") != "null"]
        return set(node["properties"]) - {"v"}

    assert fields("apns", "headers") == {
        "apns-priority",
        "apns-expiration",
        "apns-collapse-id",
        "apns-push-type",
    }
    assert {"thread-id", "interruption-level", "alert"} <= fields("apns", "aps")
    assert {"loc-key", "title-loc-args"} <= fields("apns", "aps", "alert")
    assert fields("fcm") == {"android", "data"}
    assert {"channel_id", "notification_priority"} <= fields("fcm", "android", "notification")
    assert fields("webpush", "headers") == {"TTL", "Urgency", "Topic"}
    assert "requireInteraction" in fields("webpush", "notification")


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


def test_the_admin_app_answers_document_the_credentials_status() -> None:
    paths = create_admin_app(Settings(admin_token=SecretStr("t"))).openapi()["paths"]
    answers = [
        paths["/admin/v1/apps"]["post"]["responses"]["201"],
        paths["/admin/v1/apps/{app_id}"]["get"]["responses"]["200"],
        paths["/admin/v1/apps/{app_id}"]["patch"]["responses"]["200"],
    ]
    for answer in answers:
        app = answer["content"]["application/json"]["schema"]
        status = app["properties"]["credentials_status"]["additionalProperties"]
        assert set(status["properties"]) == {"valid", "checked_at", "last_error"}
        assert "$ref" not in str(app)
