"""A provider Pushline does not ship, added the way a deployment adds one: this module and
`PUSHLINE_EXTRA_PROVIDERS=dummy=tests.integration.dummy:DummyProvider`.

It claims Android devices whose token starts `dummy:` and posts each job as JSON to
`{PUSHLINE_DUMMY_ENDPOINT}/send`: a real HTTP exchange the test's server records.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, ClassVar

import aiohttp
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.core.credentials import ProviderCredentials
from services.core.errors import MessageInvalidError
from services.core.events import PushJob, WebPushSubscription
from services.core.fields import Platform
from services.core.providers.base import Claim, Provider, ProviderSettings, Result, TokenProblem
from services.core.providers.payload import CallPayloads
from services.core.providers.transport import UNANSWERED, unanswered

PREFIX = "dummy:"


class DummySettings(ProviderSettings):
    """`PUSHLINE_DUMMY_ENDPOINT`: where the dummy push service listens."""

    model_config = SettingsConfigDict(env_prefix="PUSHLINE_DUMMY_", frozen=True, extra="ignore")

    endpoint: str = "http://127.0.0.1:9"


class DummyCredentials(ProviderCredentials):
    """An account at the dummy push service and its secret."""

    account: str
    secret: str = Field(repr=False)

    def shown(self) -> dict[str, Any]:
        return {"account": self.account}


class DummyProvider(Provider):
    """Posts each job to the dummy push service; 2xx is delivered, 410 a gone token."""

    name: ClassVar = "dummy"
    title: ClassVar = "Dummy"
    credentials_model: ClassVar = DummyCredentials
    settings_model: ClassVar = DummySettings
    token_limit: ClassVar = 100
    payload_limit: ClassVar = 1000

    @classmethod
    def claim(cls, platform: Platform, token: str, *, web_subscription: bool) -> Claim | None:
        return "preferred" if platform == "android" and token.startswith(PREFIX) else None

    @classmethod
    def token_problem(
        cls, token: str, subscription: WebPushSubscription | None, *, allow_http: bool
    ) -> TokenProblem | None:
        if not token.startswith(PREFIX):
            return TokenProblem("FailedToStoreDevice", f"a dummy token starts {PREFIX}")
        return None

    def __init__(self, credentials: DummyCredentials, settings: DummySettings) -> None:
        self._credentials = credentials
        self._url = f"{settings.endpoint}/send"
        self._session: aiohttp.ClientSession | None = None

    async def send(self, jobs: Sequence[PushJob]) -> list[Result]:
        payloads = CallPayloads(DummyProvider)
        return list(await asyncio.gather(*(self._send_one(job, payloads) for job in jobs)))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _send_one(self, job: PushJob, payloads: CallPayloads) -> Result:
        payload = payloads.of(job)
        if isinstance(payload, MessageInvalidError):
            return Result.from_error(payload)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        body = {
            "account": self._credentials.account,
            "kind": job.kind,
            "token": job.token,
            "payload": payload.document,
        }
        try:
            async with self._session.post(self._url, json=body) as response:
                status = response.status
        except UNANSWERED as exc:
            return unanswered(self.name, exc)
        if 200 <= status < 300:
            return Result.success(None, status=status)
        return Result.failure(self.name, self.classify(status), reason=str(status), status=status)
