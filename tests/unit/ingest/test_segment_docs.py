"""The OpenAPI document shows tags, language, device patches, the tag listing filter and
segments."""

from __future__ import annotations

from services.core.settings import Settings
from services.ingest.app import create_app


def test_segments_are_documented() -> None:
    schema = create_app(Settings()).openapi()
    device = schema["paths"]["/v1/apps/{app_id}/devices/{device_id}"]
    patch = device["patch"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(patch["properties"]) == {"tags", "language"}
    listing = schema["paths"]["/v1/apps/{app_id}/devices"]["get"]["parameters"]
    assert "tag" in {parameter["name"] for parameter in listing}
    send = schema["paths"]["/v1/notifications"]["post"]["requestBody"]
    target = send["content"]["application/json"]["schema"]["properties"]["to"]
    filters = str(target["properties"]["filters"])
    for kind in ("and", "or", "tag", "platform", "language", "registered", "last_active"):
        assert f"'{kind}'" in filters
    register = schema["paths"]["/v1/apps/{app_id}/devices"]["post"]["requestBody"]
    properties = register["content"]["application/json"]["schema"]["properties"]
    assert {"tags", "language"} <= set(properties)
