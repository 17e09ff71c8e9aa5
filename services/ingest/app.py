"""The ingest's two ASGI apps, each served on a listener of its own (services/ingest/__main__.py).

The public app: health, readiness, metrics, the dialects' API routers. The admin app: the
admin API (`/admin/v1/...`), its own `/healthz` and OpenAPI document, and its own access log;
the public listener never serves an admin path. Both answer requests that no route takes
(no such path, wrong method) in the dialect's own shape: problem+json on the admin app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.routing import Match

from services.core import eventloop, kafka
from services.core.errors import KafkaUnavailableError
from services.core.health import Readiness
from services.core.secrets import Vault
from services.core.settings import Settings
from services.core.store import client as store
from services.core.store.apps import Apps
from services.core.store.indexes import ensure_indexes
from services.ingest import (
    access,
    cij,
    docs,
    listing,
    masiv,
    native,
    notifications,
    problems,
    routee,
)
from services.ingest import admin as admin_api
from services.ingest.access import Access
from services.ingest.auth import Tenants
from services.ingest.limits import Limits
from services.ingest.refusals import Dialects, Refusal
from services.ingest.registrations import Registrations
from services.ingest.sending import Sends
from services.ingest.throttle import Throttle

# What a 405's Allow may name.
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def create_app(settings: Settings) -> FastAPI:
    """The public ingest app. Kafka topics, the producer and the store connect on start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        eventloop.report()
        await kafka.ensure_topics(settings)
        mongo = store.connect(settings)
        db = store.database(mongo)
        await ensure_indexes(db)
        producer = kafka.producer(settings, client_id="pushline-ingest")
        await producer.start()
        admin = kafka.admin_client(settings)
        await admin.start()
        app.state.tenants = Tenants(
            db,
            Apps(db, Vault(settings.master_key)),
            cache_seconds=settings.ingest_cache_seconds,
        )
        app.state.registrations = Registrations(db, producer, settings)
        app.state.sends = Sends(db, producer, settings)
        app.state.throttle = Throttle(db, settings)
        app.state.listings = listing.Listings(db)
        app.state.readiness = Readiness(db, admin)
        try:
            yield
        finally:
            await app.state.readiness.close()
            await producer.stop()
            await mongo.close()

    app = docs.Ingest(
        title="Pushline ingest",
        version="1",
        lifespan=lifespan,
        openapi_url=docs.OPENAPI,
        docs_url=None,
        redoc_url=None,
    )
    # Native paths, and any path of no dialect (an admin path among them), answer in
    # problem+json.
    _answer_refusals(
        app,
        Dialects([routee.DIALECT, cij.DIALECT, masiv.DIALECT], problems.refused),
        settings,
        access.log,
    )
    api_key = [Security(docs.API_KEY)]
    app.include_router(native.router, dependencies=api_key)
    app.include_router(notifications.router, dependencies=api_key)
    app.include_router(listing.router, dependencies=api_key)
    app.include_router(routee.router, dependencies=api_key)
    # Customer Insights carries its ApiToken in the body.
    app.include_router(cij.router)
    app.include_router(masiv.router, dependencies=api_key)
    docs.serve(app)
    _healthz(app)

    @app.get(
        "/readyz",
        tags=["operations"],
        responses={503: {"description": "The store or Kafka does not answer"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        """Ready to take traffic: the store and Kafka both answer."""
        checks = await request.app.state.readiness.check()
        ready = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "unready", **checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def create_admin_app(settings: Settings) -> FastAPI:
    """The admin app, for the admin listener: it needs the store only."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        mongo = store.connect(settings)
        db = store.database(mongo)
        await ensure_indexes(db)
        # The admin API writes; nothing it reads is served from the cache.
        app.state.tenants = Tenants(db, Apps(db, Vault(settings.master_key)), cache_seconds=0)
        try:
            yield
        finally:
            await mongo.close()

    app = docs.Ingest(
        title="Pushline admin",
        version="1",
        lifespan=lifespan,
        openapi_url=docs.OPENAPI,
        docs_url=None,
        redoc_url=None,
    )
    _answer_refusals(app, Dialects([], problems.refused), settings, access.ADMIN_LOG)
    app.include_router(admin_api.routes(settings), dependencies=[Security(docs.ADMIN_TOKEN)])
    docs.serve(app)
    _healthz(app)
    return app


def _answer_refusals(
    app: FastAPI, dialects: Dialects, settings: Settings, log: logging.Logger
) -> None:
    """Answer every refusal in the shape of the dialect of its path, within the ingest's
    limits, and log every request on `log`."""

    async def refused(request: Request, exc: Exception) -> Response:
        response = dialects.answer(request.url.path, _refusal(request, exc))
        if isinstance(exc, HTTPException):
            response.headers.update(exc.headers or {})
            if exc.status_code == 405:
                response.headers["Allow"] = _allowed(request)
        return response

    # Added first, so it runs inside Access: its refusals are counted and logged too.
    app.add_middleware(
        Limits,
        dialects=dialects,
        max_body=settings.max_body_bytes,
        max_in_flight=settings.ingest_max_in_flight,
    )
    app.add_middleware(Access, log=log)
    for refusals in (Refusal, KafkaUnavailableError, HTTPException, RequestValidationError):
        app.add_exception_handler(refusals, refused)


def _healthz(app: FastAPI) -> None:
    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}


def _refusal(request: Request, exc: Exception) -> Refusal:
    """What an exception that reached the app refuses, in words the dialect will shape."""
    if isinstance(exc, Refusal):
        return exc
    if isinstance(exc, KafkaUnavailableError):
        # Nothing was accepted: the caller may retry the whole request.
        return Refusal(503, "the pipeline is unavailable; retry later")
    if isinstance(exc, RequestValidationError):
        # A path or query parameter FastAPI validates is bad input like a bad body: the
        # dialect's 400, never FastAPI's 422 (which the OpenAPI document does not list).
        return Refusal(400, "; ".join(_parameter(error) for error in exc.errors()))
    # Starlette's refusals (no route has this path, or none takes this method) in the
    # shape of the dialect the path belongs to, not in FastAPI's {"detail": ...}.
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if exc.status_code == 404:
        return Refusal(404, f"no route matches {path}")
    if exc.status_code == 405:
        return Refusal(405, f"{request.method} is not allowed on {path}")
    return Refusal(exc.status_code, str(exc.detail))


def _parameter(error: Any) -> str:
    return f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"


def _allowed(request: Request) -> str:
    # Starlette's Allow names the methods of the first route with the path only, and a
    # path may have several (GET and PATCH /admin/v1/apps/{app_id}).
    def takes(method: str) -> bool:
        probe = {**request.scope, "method": method}
        return any(route.matches(probe)[0] is Match.FULL for route in request.app.router.routes)

    return ", ".join(filter(takes, _METHODS))
