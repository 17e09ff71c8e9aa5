"""Each dialect's error shape, as tests check an answer against it."""

from __future__ import annotations

from collections.abc import Callable

import httpx

Shape = Callable[[httpx.Response, str], None]


def problem_json(response: httpx.Response, path: str) -> None:
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == response.status_code


def routee(response: httpx.Response, path: str) -> None:
    body = response.json()
    assert body.keys() == {"routeeContactId", "error", "details"}
    assert body["error"] == "error occured"
    assert isinstance(body["routeeContactId"], str)


def cij(response: httpx.Response, path: str) -> None:
    body = response.json()
    assert {"type", "title", "status", "errors"} <= body.keys()
    assert body["status"] == response.status_code
    assert all(isinstance(v, list) for v in body["errors"].values())


def masiv(response: httpx.Response, path: str) -> None:
    body = response.json()
    assert body.keys() == {"timestamp", "status", "error", "message", "path"}
    assert body["status"] == response.status_code
    assert body["path"] == path
