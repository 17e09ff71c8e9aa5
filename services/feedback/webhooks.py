"""Webhook delivery: one POST per call, retried with backoff, never to private addresses."""

from __future__ import annotations

import asyncio
import logging
import random

import httpx

from services.core import metrics
from services.core.errors import OutboundRefusedError
from services.core.events import WebhookCall
from services.core.outbound import check_target

log = logging.getLogger(__name__)

ATTEMPTS = 4
BASE_DELAY = 0.5
# Headers a caller may not set: they would lie about the request or the body.
_RESERVED = {"host", "content-length", "content-type", "transfer-encoding", "connection"}


class WebhookSender:
    """Delivers webhook calls with one shared HTTP client."""

    def __init__(self, client: httpx.AsyncClient, *, allow_private: bool) -> None:
        self._client = client
        self._allow_private = allow_private

    async def deliver(self, call: WebhookCall) -> str:
        """POST the call's JSON body; return the outcome: delivered, failed or refused.

        A 2xx answer delivers. Connection errors, 408, 429 and 5xx are retried up to
        ATTEMPTS times with exponential backoff and jitter; other answers fail at once.
        Redirects are not followed.
        """
        outcome = await self._attempt_all(call)
        metrics.WEBHOOKS.labels(outcome).inc()
        log.info("webhook finished", extra={"webhook_id": call.webhook_id, "outcome": outcome})
        return outcome

    async def _attempt_all(self, call: WebhookCall) -> str:
        try:
            await check_target(call.url, allow_private=self._allow_private)
        except OutboundRefusedError as exc:
            log.warning("webhook refused", extra={"webhook_id": call.webhook_id, "why": str(exc)})
            return "refused"
        headers = {k: v for k, v in call.headers.items() if k.lower() not in _RESERVED}
        for attempt in range(ATTEMPTS):
            if attempt:
                await asyncio.sleep(BASE_DELAY * 2 ** (attempt - 1) * (0.5 + random.random()))  # noqa: S311
            try:
                response = await self._client.post(
                    call.url, json=call.body, headers=headers, follow_redirects=False
                )
            except httpx.HTTPError:
                continue
            if response.is_success:
                return "delivered"
            if response.status_code not in (408, 429) and response.status_code < 500:
                return "failed"
        return "failed"
