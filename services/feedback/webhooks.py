"""Webhook delivery: one POST per call, retried with backoff, never to private addresses."""

from __future__ import annotations

import asyncio
import logging
import random

import httpx

from services.core import metrics
from services.core.errors import OutboundRefusedError
from services.core.events import WebhookCall
from services.core.logging import url_origin

log = logging.getLogger(__name__)

ATTEMPTS = 4
BASE_DELAY = 0.5
# Headers a caller may not set: they would lie about the request or the body.
_RESERVED = {"host", "content-length", "content-type", "transfer-encoding", "connection"}


class WebhookSender:
    """Delivers webhook calls with one shared HTTP client.

    The client is `services.core.outbound.client`'s: it refuses private targets when it
    connects (OutboundRefusedError) and follows no redirect.
    """

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def deliver(self, call: WebhookCall) -> str:
        """POST the call's JSON body; return the outcome: delivered, failed or refused.

        A 2xx answer delivers. Connection errors, 408, 429 and 5xx are retried up to
        ATTEMPTS times with exponential backoff and jitter; other answers fail at once.
        Redirects are not followed; a target the outbound policy refuses is `refused`.
        The log line says why a call did not deliver, and names the URL by scheme and host.
        """
        outcome, why = await self._attempt_all(call)
        metrics.WEBHOOKS.labels(outcome).inc()
        log.log(
            logging.INFO if outcome == "delivered" else logging.WARNING,
            "webhook finished",
            extra={
                "webhook_id": call.webhook_id,
                "target": url_origin(call.url),
                "outcome": outcome,
                "why": why,
            },
        )
        return outcome

    async def _attempt_all(self, call: WebhookCall) -> tuple[str, str | None]:
        headers = {k: v for k, v in call.headers.items() if k.lower() not in _RESERVED}
        why: str | None = None
        for attempt in range(ATTEMPTS):
            if attempt:
                await asyncio.sleep(BASE_DELAY * 2 ** (attempt - 1) * (0.5 + random.random()))  # noqa: S311
            try:
                response = await self._client.post(
                    call.url, json=call.body, headers=headers, follow_redirects=False
                )
            except OutboundRefusedError as exc:
                return "refused", str(exc)
            except (httpx.LocalProtocolError, UnicodeEncodeError):
                # Headers HTTP cannot carry (the ingest refuses them; an upstream system may
                # have published them): no attempt can succeed.
                return "failed", "the callback headers are not valid HTTP header fields"
            except httpx.HTTPError as exc:
                # The class only: httpx's messages may quote the URL or a header value.
                why = type(exc).__name__
                continue
            if response.is_success:
                return "delivered", None
            why = f"HTTP {response.status_code}"
            if response.status_code not in (408, 429) and response.status_code < 500:
                return "failed", why
        return "failed", why
