"""Webhook delivery: one POST per call, retried with backoff, never to private addresses."""

from __future__ import annotations

import asyncio
import logging
import random

import httpx

from services.core import metrics
from services.core.errors import OutboundRefusedError
from services.core.events import WebhookCall

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
        """
        outcome = await self._attempt_all(call)
        metrics.WEBHOOKS.labels(outcome).inc()
        log.info("webhook finished", extra={"webhook_id": call.webhook_id, "outcome": outcome})
        return outcome

    async def _attempt_all(self, call: WebhookCall) -> str:
        headers = {k: v for k, v in call.headers.items() if k.lower() not in _RESERVED}
        for attempt in range(ATTEMPTS):
            if attempt:
                await asyncio.sleep(BASE_DELAY * 2 ** (attempt - 1) * (0.5 + random.random()))  # noqa: S311
            try:
                response = await self._client.post(
                    call.url, json=call.body, headers=headers, follow_redirects=False
                )
            except OutboundRefusedError as exc:
                why = str(exc)
                log.warning("webhook refused", extra={"webhook_id": call.webhook_id, "why": why})
                return "refused"
            except httpx.HTTPError:
                continue
            if response.is_success:
                return "delivered"
            if response.status_code not in (408, 429) and response.status_code < 500:
                return "failed"
        return "failed"
